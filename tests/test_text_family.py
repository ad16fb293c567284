"""The natural-text family: one epoch of windows without repeats, the held-out split, clear errors."""
import numpy as np
import pytest

from conftest import write_random_words
from scalingkit.config import TrainSettings
from scalingkit.errors import UserError
from scalingkit.families import build_family
from scalingkit.families.shuffle import permute
from scalingkit.families.text import build_text
from scalingkit.train.engine import held_out_set

L = 17  # window length (context 16)


# Caches under pytest's temporary folder, set before any of this module's fixtures builds a family.
pytestmark = pytest.mark.usefixtures("private_cache")


@pytest.fixture(scope="module")
def words(tmp_path_factory):
    """80 documents of random words: every window of the token stream is distinct, so windows identify positions."""
    return write_random_words(tmp_path_factory.mktemp("words"), seed=0, vocabulary=400, documents=80, words_each=60)


def make(words, **keys):
    return build_text("words", {"kind": "text", "corpus": str(words), "tokenizer": {"bpe": 600}, **keys})


def window_ids(fam, windows):
    """Which window of the training stream each sampled row is (-1: none)."""
    n = len(fam.train) // L
    table = {bytes(np.asarray(fam.train[i * L:(i + 1) * L], np.int64)): i for i in range(n)}
    assert len(table) == n, "test corpus has repeated windows"
    return np.array([table.get(bytes(row), -1) for row in windows])


def test_one_epoch_uses_every_window_once_then_errors(words):
    fam = make(words)
    n = len(fam.train) // L
    rng = np.random.default_rng([1, 0])
    sizes = [7, 64, 1, n - 7 - 64 - 1]  # uneven batches end exactly at the end of the epoch
    windows = np.concatenate([fam.sample(k, L, rng) for k in sizes])
    ids = window_ids(fam, windows)
    assert np.array_equal(np.sort(ids), np.arange(n))  # every window exactly once: no token position repeats
    assert not np.array_equal(ids, np.arange(n))  # in a shuffled order
    with pytest.raises(UserError, match=rf"{len(fam.train):,} tokens.*repeats = k"):
        fam.sample(1, L, rng)


def test_order_is_a_function_of_the_seed(words):
    fam = make(words)
    a = fam.sample(50, L, np.random.default_rng([1, 3]))
    again = fam.sample(50, L, np.random.default_rng([1, 3]))  # a new run with the same seed
    other = fam.sample(50, L, np.random.default_rng([1, 4]))
    assert np.array_equal(a, again) and not np.array_equal(a, other)
    # interleaved runs keep their own cursors
    r1, r2 = np.random.default_rng([1, 3]), np.random.default_rng([1, 4])
    mixed = [fam.sample(25, L, r1), fam.sample(50, L, r2), fam.sample(25, L, r1)]
    assert np.array_equal(np.concatenate([mixed[0], mixed[2]]), a) and np.array_equal(mixed[1], other)


def test_repeats_allowed_and_recorded(words):
    fam = make(words, repeats=1)
    assert fam.spec()["repeats"] == 1 and fam.spec()["train_tokens"] == len(fam.train)
    n = len(fam.train) // L
    rng = np.random.default_rng(5)
    ids = window_ids(fam, fam.sample(2 * n, L, rng))
    assert np.array_equal(np.bincount(ids, minlength=n), np.full(n, 2))  # two passes, each complete
    assert not np.array_equal(ids[:n], ids[n:])  # the second pass in a fresh order
    assert fam.passes(2 * n * (L - 1), L - 1) == 2 and fam.passes(n * (L - 1), L - 1) == 1
    with pytest.raises(UserError, match="2 times"):
        fam.sample(1, L, rng)


def test_evaluation_windows_come_from_held_out_documents(words):
    fam = make(words, held_out=0.3)
    settings = TrainSettings(context=L - 1, eval_sequences=20, eval_seed=0)
    held = held_out_set(fam, settings)  # the engine's held-out set uses eval_sample
    assert held.shape == (20, L)
    stream = np.asarray(fam.held_out, np.int64)
    starts = [np.flatnonzero(np.all(np.lib.stride_tricks.sliding_window_view(stream, L) == row, axis=1))
              for row in held]
    assert all(len(s) and s[0] % L == 0 for s in starts)  # each is a whole window of the held-out stream
    assert len({int(s[0]) for s in starts}) == 20
    assert np.array_equal(held, held_out_set(fam, settings))  # every run evaluates on the same set
    with pytest.raises(UserError, match="held_out"):
        fam.eval_sample(len(stream), L, np.random.default_rng(0))


def test_too_small_corpus_errors_clearly(tmp_path):
    (tmp_path / "tiny.txt").write_text("just a few words")
    fam = build_text("tiny", {"kind": "text", "corpus": str(tmp_path / "tiny.txt"), "tokenizer": "gpt2"})
    with pytest.raises(UserError, match="not one window of 51"):
        fam.sample(1, 51, np.random.default_rng(0))


def test_permutation_is_a_bijection():
    for n in (1, 2, 3, 97, 1000, 4097):
        for key in (0, 12345, 2**80):
            assert np.array_equal(np.sort(permute(np.arange(n), n, key)), np.arange(n))


def test_embedded_corpus_with_gpt2():
    fam = build_family("shakespeare-kjv-austen", {"kind": "text"})
    spec = fam.spec()
    assert spec["vocab_size"] == 50_257 and spec["train_tokens"] > 3_000_000
    assert spec["train_documents"] + spec["held_out_documents"] == 1500
    assert fam.entropy_rate() is None and fam.loss_floor(50) is None
    batch = fam.sample(8, 51, np.random.default_rng(0))
    assert batch.shape == (8, 51) and batch.dtype == np.int64 and batch.max() < 50_257
    assert fam.unigram_rank()[0] > fam.unigram_rank()[100] and fam.bigram_rank().sum() == pytest.approx(1.0)


@pytest.mark.parametrize("bad, key", [
    ({"held_out": 0}, "held_out"), ({"held_out": 1.5}, "held_out"), ({"repeats": -1}, "repeats"),
    ({"repeats": True}, "repeats"), ({"prune": 5}, "prune"), ({"tokenizer": {"bpe": "big"}}, "tokenizer"),
    ({"text_field": 3}, "text_field"),
])
def test_bad_keys_are_user_errors_naming_the_key(bad, key):
    with pytest.raises(UserError, match=f"key '{key}'"):
        build_family("t", {"kind": "text", **bad})



@pytest.mark.parametrize("flag", [[], ["--no-progress"]])
def test_no_progress_silences_the_tokenising_bar(words, tmp_path, flag):
    """`train --no-progress` silences the bars of family builds too (here the corpus is tokenised: an empty cache),
    in the coordinator and in the worker processes, which inherit SCALINGKIT_NO_PROGRESS."""
    import os

    from conftest import run_cli

    sweep = tmp_path / "sweep.toml"
    sweep.write_text(f"""name = "words"
[families.words]
kind = "text"
corpus = "{words}"
tokenizer = {{bpe = 600}}
[grid]
widths = [16]
tokens = [1600]
lrs = [0.01]
seeds = [0]
[training]
batch = 4
context = 16
eval_points = 2
eval_sequences = 8
""")
    env = {k: v for k, v in os.environ.items() if k != "SCALINGKIT_NO_PROGRESS"}
    proc = run_cli("train", sweep, "--fill-missing", "--store", tmp_path / "cube.zarr", *flag,
                   env={**env, "SCALINGKIT_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    assert "1 done" in proc.stdout, proc.stdout
    assert ("tokenising" in proc.stderr) is not bool(flag), proc.stderr


def test_plot_leaves_out_a_family_whose_corpus_is_gone_and_says_so(words, tmp_path):
    """The rank figure rebuilds every family; one that cannot be rebuilt here (its corpus folder was removed) is
    left out with a line saying why, the other figures are still written, and the store is untouched."""
    import shutil

    from conftest import run_cli
    from scalingkit import store
    from scalingkit.sweep import plan
    from scalingkit.sweep import spec as sweep

    corpus = tmp_path / "corpus"
    shutil.copytree(words, corpus)
    table = {"name": "gone", "families": {"words": {"kind": "text", "corpus": str(corpus), "tokenizer": {"bpe": 600}},
                                          "er": {"kind": "er", "nodes": 32, "edges": 64}},
             "grid": {"widths": [16], "tokens": [1600], "lrs": [0.01], "seeds": [0]},
             "training": {"batch": 4, "context": 16, "eval_points": 2, "eval_sequences": 8}}
    path = tmp_path / "cube.zarr"
    plan.prepare(path, sweep.from_table(table))
    before = store.attrs(path)
    shutil.rmtree(corpus)
    proc = run_cli("plot", "--store", path, "--out", tmp_path / "fig")
    assert proc.returncode == 0, proc.stderr
    assert "ranks: left out words:" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "fig" / "ranks.png").exists()  # the graph family still plots
    assert "exponents: no figure: the cube has no finished runs" in proc.stderr
    assert store.attrs(path) == before
