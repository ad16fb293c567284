"""The exact excess loss: KL from a family's true next-token law to the model, on the held-out contexts.

Closed forms: a model that outputs the true law has excess 0; a uniform model has excess log V minus the mean entropy
of the law over the held-out contexts; the TnL generator scored on its own text has excess 0. And in real runs: the
exact loss never falls below the floor, is far less noisy than the sampled loss, batched variants measure what solo
runs measure, and a store written before the exact loss existed opens, reads NaN there, and is not retrained.
"""
import json
import math
import shutil
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli, tiny_sweep_text, write_random_words
from scalingkit import store
from scalingkit.config import RunConfig, TrainSettings
from scalingkit.families import build_family
from scalingkit.families.bigram import build_bigram
from scalingkit.families.generated import build_generated
from scalingkit.model.gpt import GPTConfig, build_model
from scalingkit.train.batched import train_batch
from scalingkit.train.engine import train
from scalingkit.train.evaluation import HeldOut, held_out_set

pytestmark = pytest.mark.usefixtures("private_cache")
CPU = torch.device("cpu")


class LawModel(torch.nn.Module):
    """Logits = log of a Markov law's row for the previous token: the ideal predictor."""

    def __init__(self, law):
        super().__init__()
        P = law.P.toarray()
        P[np.diff(law.P.indptr) == 0] = law.M
        with np.errstate(divide="ignore"):
            self.logp = torch.from_numpy(np.log(P)).float()

    def forward(self, x):
        return self.logp[x]


class Uniform(torch.nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab

    def forward(self, x):
        return torch.zeros(*x.shape, self.vocab)


def _closed_forms(family, settings):
    held = HeldOut(family, settings, CPU, chunk=24)
    ideal = held.evaluate(LawModel(held.law), nullcontext)
    uniform = held.evaluate(Uniform(family.vocab_size), nullcontext)
    seqs = held_out_set(family, settings)
    mean_entropy = float(held.law.row_entropy[seqs[:, :-1]].mean())
    assert abs(ideal.excess_loss) < 1e-6 and ideal.excess_loss_se < 1e-6
    assert uniform.excess_loss == pytest.approx(math.log(family.vocab_size) - mean_entropy, abs=1e-6)
    assert ideal.exact_loss == pytest.approx(family.loss_floor(settings.context), abs=1e-6)
    return ideal, uniform


def test_closed_forms_on_a_biased_walk():
    family = build_family("er-k1", {"kind": "er", "nodes": 48, "edges": 200, "seed": 3, "kappa": 1.0})
    _closed_forms(family, TrainSettings(context=12, eval_sequences=70))


def test_closed_forms_on_a_bigram_family(tmp_path_factory):
    words = write_random_words(tmp_path_factory.mktemp("bigram-words"), seed=4, vocabulary=120, documents=30,
                               words_each=200)
    family = build_bigram("bg", {"kind": "bigram", "corpus": str(words), "tokenizer": {"bpe": 300}, "prune": 1})
    assert (np.diff(family.P.indptr) == 0).any()  # rows that restart from M are part of the law
    ideal, _ = _closed_forms(family, TrainSettings(context=10, eval_sequences=50))
    # the sampled loss of the ideal predictor is the floor up to sampling noise, which the exact loss does not have
    assert abs(ideal.eval_loss - ideal.exact_loss) < 4 * ideal.eval_loss_se


def test_the_generator_has_no_excess_on_its_own_text(tmp_path_factory):
    words = write_random_words(tmp_path_factory.mktemp("tnl-words"), seed=1, vocabulary=200, documents=40,
                               words_each=60)
    spec = {"kind": "generated", "corpus": str(words), "tokenizer": {"bpe": 260}, "layers": 1, "width": 16,
            "generator_tokens": 8_000, "batch": 16, "context": 12, "pool_tokens": 2_000, "eval_sequences": 30,
            "held_out": 0.2}
    family = build_generated("t1l", spec)
    settings = TrainSettings(context=12, eval_sequences=30)
    held = HeldOut(family, settings, CPU, chunk=16)
    saved = torch.load(Path(held.law.logp.filename).parent / "model.pt", weights_only=True)
    generator, _ = build_model(GPTConfig(**saved["config"]), "sp", 0)
    generator.load_state_dict(saved["state_dict"])
    scores = held.evaluate(generator, nullcontext)
    assert abs(scores.excess_loss) < 1e-6
    assert held.law.floor_kind == "estimate" and scores.floor == family.spec()["loss_floor_estimate"]
    # a model that is not the generator has a positive excess, and the cached table is reused as it is
    other, _ = build_model(GPTConfig(vocab_size=family.vocab_size, n_layer=1, d_model=16, context=12), "sp", 5)
    assert held.evaluate(other, nullcontext).excess_loss > 0.01
    assert np.array_equal(HeldOut(family, settings, CPU, chunk=16).law.logp, held.law.logp)


def _config(**kw):
    settings = TrainSettings(context=16, batch=8, eval_points=6, eval_sequences=64)
    return RunConfig(family="er", param="sp", n_layer=2, d_model=16, tokens=kw.pop("tokens", 16 * 8 * 60),
                     lr=kw.pop("lr", 1e-2), seed=kw.pop("seed", 0), settings=settings)


def test_a_run_measures_both_losses_and_the_exact_one_never_falls_below_the_floor():
    family = build_family("er", {"kind": "er", "nodes": 16, "edges": 48, "seed": 0})
    result = train(_config(tokens=16 * 8 * 300, lr=3e-2), family)
    floor = family.loss_floor(16)
    assert np.all(result.excess_loss >= -1e-7) and np.all(result.exact_loss >= floor - 1e-7)
    assert np.allclose(result.exact_loss, floor + result.excess_loss)
    # near the floor, where a scaling law lives, the exact loss's noise is far below the sampled loss's (far from
    # it the KL itself varies across contexts as much as the sampled loss does)
    assert result.excess_loss[-1] < 0.1 and result.exact_loss_se[-1] < result.eval_loss_se[-1] / 5
    # both measure the same expected loss: they agree within the sampled loss's noise
    assert np.all(np.abs(result.eval_loss - result.exact_loss) < 5 * result.eval_loss_se)


def test_batched_variants_measure_what_solo_runs_measure():
    family = build_family("er", {"kind": "er", "nodes": 32, "edges": 96, "seed": 0})
    cfgs = [_config(lr=1e-2, seed=0), _config(lr=3e-2, seed=1)]
    together = train_batch(cfgs, family)
    for cfg, got in zip(cfgs, together):
        alone = train(cfg, family)
        for name in ("eval_loss", "eval_loss_se", "excess_loss", "exact_loss", "exact_loss_se"):
            np.testing.assert_allclose(getattr(got, name), getattr(alone, name), rtol=1e-4, atol=1e-6,
                                       err_msg=name)


def test_natural_text_has_only_the_sampled_loss(tmp_path_factory):
    words = write_random_words(tmp_path_factory.mktemp("text-words"), seed=2, vocabulary=100, documents=40,
                               words_each=100)
    family = build_family("text", {"kind": "text", "corpus": str(words), "tokenizer": {"bpe": 260}})
    held = HeldOut(family, TrainSettings(context=12, eval_sequences=16), CPU, chunk=16)
    model, _ = build_model(GPTConfig(vocab_size=family.vocab_size, n_layer=1, d_model=16, context=12), "sp", 0)
    scores = held.evaluate(model, nullcontext)
    assert held.law is None and math.isfinite(scores.eval_loss) and math.isfinite(scores.eval_loss_se)
    assert math.isnan(scores.excess_loss) and math.isnan(scores.exact_loss)


def _as_schema_1(path: Path):
    """What a store written before schema 2 looks like: the same layout without the exact-law arrays (nor those of
    later schemas)."""
    for name in (v for since, names in store.cube.ADDED_IN.items() for v in names):
        shutil.rmtree(path / name)
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["schema_version"] = 1
    (path / "zarr.json").write_text(json.dumps(meta))


def test_a_store_from_before_the_exact_loss_opens_and_is_not_retrained(write_sweep, tmp_path):
    sweep = write_sweep(tiny_sweep_text(widths=(16,), tokens=(3200, 6400)))
    cube = tmp_path / "cube.zarr"
    assert run_cli("train", sweep, "--fill-missing", "--store", cube, "--workers", "0", "--no-progress").returncode == 0
    before = store.open_cube(cube)
    assert np.isfinite(before["final_exact_loss"]).all()
    _as_schema_1(cube)
    old = store.open_cube(cube)
    assert old["exact_loss"].isnull().all() and old["final_exact_loss"].isnull().all()
    np.testing.assert_array_equal(old["final_eval_loss"], before["final_eval_loss"])
    for command in (("status",), ("table",)):
        assert run_cli(*command, "--store", cube).returncode == 0
    again = run_cli("train", sweep, "--fill-missing", "--store", cube, "--workers", "0", "--no-progress")
    assert again.returncode == 0 and "trained" not in again.stdout.replace("nothing to train", ""), again.stdout
    upgraded = store.open_cube(cube)
    assert store.attrs(cube)["schema_version"] == store.SCHEMA_VERSION
    np.testing.assert_array_equal(upgraded["final_eval_loss"], before["final_eval_loss"])  # nothing retrained
    assert upgraded["final_exact_loss"].isnull().all()
