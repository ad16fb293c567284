"""The TnL family: a generator trained on the corpus, its cached-decoding sampler, deterministic pools."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import write_random_words
from scalingkit.errors import UserError
from scalingkit.families import build_family
from scalingkit.families.generated import PrefixDecoder, build_generated
from scalingkit.model.gpt import GPTConfig, build_model

CONTEXT = 16


# Caches under pytest's temporary folder, set before any of this module's fixtures builds a family.
pytestmark = pytest.mark.usefixtures("private_cache")


@pytest.fixture(scope="module")
def words(tmp_path_factory):
    return write_random_words(tmp_path_factory.mktemp("gen-words"), seed=1, vocabulary=300, documents=60,
                              words_each=80)


def tiny(words, **keys):
    return {"kind": "generated", "corpus": str(words), "tokenizer": {"bpe": 300}, "layers": 1, "width": 16,
            "generator_tokens": 16_000, "batch": 16, "context": CONTEXT, "pool_tokens": 4_000, "eval_sequences": 40,
            "held_out": 0.2, **keys}


def test_cached_decoding_gives_the_model_logits():
    model, _ = build_model(GPTConfig(vocab_size=97, n_layer=2, d_model=32, context=12), "sp", 0)
    seqs = torch.randint(0, 97, (5, 12))
    decoder = PrefixDecoder(model, 5)
    with torch.no_grad():
        for t in range(12):
            torch.testing.assert_close(decoder.step(seqs[:, t]), model(seqs[:, :t + 1])[:, -1], atol=1e-5, rtol=1e-5)


def test_pool_tokens_in_range_and_deterministic_for_a_seed(words, tmp_path):
    fam = build_generated("t1l", tiny(words))
    for pool in (fam.train, fam.held_out):
        assert pool.min() >= 0 and pool.max() < fam.vocab_size == 300
    assert len(fam.train) == -(-4_000 // (CONTEXT + 1)) * (CONTEXT + 1) and len(fam.held_out) == 40 * (CONTEXT + 1)
    spec = fam.spec()
    assert spec["generator_train_loss"] < np.log(300) and spec["loss_floor_estimate"] > 0
    # the same settings in a fresh process with an empty cache: the very same pool
    code = ("import json, sys; from scalingkit.families.generated import build_generated; "
            "f = build_generated('t1l', json.loads(sys.argv[1])); print(f.meta['sha256']['train'])")
    env = {**os.environ, "SCALINGKIT_CACHE": str(tmp_path / "other-cache")}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(tiny(words))], capture_output=True, text=True,
                         env=env, check=True)
    assert out.stdout.strip() == fam.meta["sha256"]["train"]
    # another seed, another generator and pool
    assert build_generated("t1l-s1", tiny(words, seed=1)).meta["sha256"]["train"] != fam.meta["sha256"]["train"]


def test_generator_and_pool_are_reused(words, tmp_path_factory):
    fam = build_generated("t1l", tiny(words))
    folder = tmp_path_factory.getbasetemp() / "cache" / "generators" / fam.meta["key"]
    stamp = (folder / "meta.json").stat().st_mtime_ns
    again = build_family("another-label", tiny(words))  # through the registry, under another name
    assert again.meta["key"] == fam.meta["key"] and (folder / "meta.json").stat().st_mtime_ns == stamp
    assert (folder / "model.pt").exists()


def test_runs_read_the_pool_once_and_check_the_length(words):
    fam = build_generated("t1l", tiny(words))
    n = len(fam.train) // (CONTEXT + 1)
    seqs = fam.sample(n, CONTEXT + 1, np.random.default_rng(0))
    assert len(np.unique(seqs, axis=0)) == len(np.unique(np.asarray(fam.train).reshape(n, -1), axis=0))
    with pytest.raises(UserError, match="repeats"):
        fam.sample(n + 1, CONTEXT + 1, np.random.default_rng(1))  # one more than the pool holds
    with pytest.raises(UserError, match="'context'"):
        fam.sample(4, CONTEXT, np.random.default_rng(0))
    with pytest.raises(UserError, match="'eval_sequences'"):
        fam.eval_sample(41, CONTEXT + 1, np.random.default_rng(0))


@pytest.mark.parametrize("bad, key", [({"layers": 0}, "layers"), ({"width": 10}, "width"), ({"lr": 0}, "lr"),
                                      ({"generator_tokens": 10}, "generator_tokens"), ({"prune": 5}, "prune")])
def test_bad_keys_are_user_errors_naming_the_key(words, bad, key):
    with pytest.raises(UserError, match=f"'{key}'"):
        build_generated("bad", tiny(words, **bad))


def test_cube_records_the_estimated_entropy_for_the_exponent_figure(words, tmp_path):
    from scalingkit import store
    from scalingkit.store import family_entropy
    from scalingkit.sweep import plan
    from scalingkit.sweep import spec as sweep

    table = {"name": "gen", "families": {"t1l": tiny(words)},
             "grid": {"widths": [16], "tokens": [1_600], "lrs": [0.01], "seeds": [0]},
             "training": {"batch": 4, "context": CONTEXT, "eval_points": 2, "eval_sequences": 8}}
    path = tmp_path / "cube.zarr"
    plan.prepare(path, sweep.from_table(table))
    estimate = build_generated("t1l", tiny(words)).spec()["loss_floor_estimate"]
    assert family_entropy(store.open_cube(path), "t1l") == (pytest.approx(estimate), "estimate")
