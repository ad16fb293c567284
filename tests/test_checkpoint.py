"""Checkpoint and resume: a run (or a batch of variants) interrupted after a checkpoint and resumed from it ends with
the curve of the uninterrupted run, bit for bit on the CPU; a checkpoint that is not the run's is ignored with a
warning, never used.

The GPU side (bf16 autocast, fused AdamW) cannot be tested here: there the resumed curve agrees within the run-to-run
nondeterminism of CUDA kernels, not bit for bit."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import REPO, write_random_words
from scalingkit.config import RunConfig, TrainSettings
from scalingkit.families import build_family
from scalingkit.train.batched import train_batch
from scalingkit.train.checkpoint import CheckpointIgnored, CheckpointNotSaved, CheckpointSpec
from scalingkit.train.engine import eval_steps, train

ER = {"kind": "er", "nodes": 64, "edges": 256, "seed": 1}
SETTINGS = TrainSettings(batch=16, context=20, eval_points=8, eval_sequences=32, device="cpu")
CURVES = ("steps", "tokens", "train_loss", "eval_loss", "lr_now", "eval_loss_se", "excess_loss", "exact_loss",
          "exact_loss_se")


class Interrupted(Exception):
    """Stands for a kill right after a checkpoint was saved."""


def stop_after_save_at(*steps):
    def hook(step):
        if step in steps:
            raise Interrupted(step)
    return hook


def assert_identical(resumed, full):
    assert (resumed.status, resumed.message) == (full.status, full.message)
    for name in CURVES:
        a, b = getattr(resumed, name), getattr(full, name)
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), name  # exact, not allclose


@pytest.fixture(scope="module")
def family():
    return build_family("er64", ER)


def run_cfg(steps=40, lr=1e-2, seed=0, width=16, param="sp", settings=SETTINGS):
    return RunConfig("er64", param, 2, width, tokens=16 * 20 * steps, lr=lr, seed=seed, settings=settings)


def test_interrupted_twice_then_resumed_equals_the_uninterrupted_run(family, tmp_path):
    """Interrupted between evaluation points (the training-loss accumulator is half full, the schedule mid-way),
    resumed, interrupted again, resumed: the same curve to the last bit."""
    cfg = run_cfg(param="mup")
    full = train(cfg, family)
    path = tmp_path / "ckpt" / "run.pt"
    points = list(eval_steps(cfg.steps, SETTINGS.eval_points))
    assert 17 not in points and 29 not in points
    with pytest.raises(Interrupted):
        train(cfg, family, checkpoint=CheckpointSpec(path, 0, after_save=stop_after_save_at(17)))
    with pytest.raises(Interrupted):
        train(cfg, family, checkpoint=CheckpointSpec(path, 0, after_save=stop_after_save_at(29)))
    saved = torch.load(path, weights_only=True)
    assert saved["step"] == 29 and saved["resumed_at"] == [17] and saved["since_last"] == 29 - max(
        p for p in points if p < 29)  # the accumulator holds the steps since the last point
    seen = []
    resumed = train(cfg, family, on_point=lambda r: seen.append(len(r.steps)),
                    checkpoint=CheckpointSpec(path, 1e9))
    assert resumed.resumed_at == (17, 29) and full.resumed_at == ()
    assert seen == [8]  # the one point left (40) reports the whole curve: the 7 saved points and itself
    assert_identical(resumed, full)


def test_a_requested_save_happens_after_the_step_in_progress(family, tmp_path):
    """every_seconds far away; request() (what a preemption signal's handler calls) saves at once."""
    cfg = run_cfg(steps=12)
    spec = CheckpointSpec(tmp_path / "run.pt", 1e9, after_save=stop_after_save_at(5))
    with pytest.raises(Interrupted):
        train(cfg, family, on_point=lambda r: spec.request() if r.steps[-1] == 5 else None, checkpoint=spec)
    assert torch.load(tmp_path / "run.pt", weights_only=True)["step"] == 5
    assert_identical(train(cfg, family, checkpoint=CheckpointSpec(tmp_path / "run.pt")), train(cfg, family))


def test_a_killed_process_resumes_where_its_last_checkpoint_was(family, tmp_path):
    """A real SIGKILL of a training process saving after every step: whatever step it died at, the file is a whole
    checkpoint and the resumed curve is the uninterrupted one."""
    cfg = run_cfg(steps=150)
    path = tmp_path / "run.pt"
    script = textwrap.dedent(f"""
        import time, torch
        torch.set_num_threads(1)
        from scalingkit.config import RunConfig, TrainSettings
        from scalingkit.families import build_family
        from scalingkit.train.checkpoint import CheckpointSpec
        from scalingkit.train.engine import train
        cfg = {cfg!r}
        train(cfg, build_family("er64", {ER!r}),
              checkpoint=CheckpointSpec({str(path)!r}, 0, after_save=lambda step: time.sleep(0.02)))
        """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not path.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    resumed = train(cfg, family, checkpoint=CheckpointSpec(path, 1e9))
    assert len(resumed.resumed_at) == 1 and 0 < resumed.resumed_at[0] < cfg.steps
    assert not list(tmp_path.glob(".run.pt.tmp-*"))  # a save cut short by the kill is cleaned up
    assert_identical(resumed, train(cfg, family))


def test_a_batch_resumes_with_its_live_variants_streams_and_optimiser(family, tmp_path):
    """Three variants, the middle one diverged before the checkpoint: the stack saved with two live variants, the
    stacked AdamW's moments and step, three data streams; every variant's result is the uninterrupted batch's."""
    settings = replace(SETTINGS, grad_clip=0.0, warmup_fraction=0.0)
    cfgs = [run_cfg(lr=lr, seed=seed, settings=settings) for lr, seed in ((1e-2, 0), (1e8, 1), (3e-3, 2))]
    full = train_batch(cfgs, family)
    assert [r.status for r in full] == ["done", "diverged", "done"]
    path = tmp_path / "batch.pt"
    with pytest.raises(Interrupted):
        train_batch(cfgs, family, checkpoint=CheckpointSpec(path, 0, after_save=stop_after_save_at(27)))
    saved = torch.load(path, weights_only=True)
    assert saved["live"] == [0, 2] and saved["optimiser"]["steps"] == 27 and saved["ends"][1][0] == "diverged"
    assert [s["drawn"] for s in saved["streams"]][::2] == [27, 27]
    resumed = train_batch(cfgs, family, checkpoint=CheckpointSpec(path, 1e9))
    for a, b in zip(resumed, full):
        assert a.resumed_at == (27,)
        assert_identical(a, b)


def test_a_family_that_restores_its_own_stream_is_not_replayed(family, tmp_path):
    """A family with stream_state/restore_stream gets its state back directly; others are replayed (above)."""

    class Restoring:
        def __init__(self, inner):
            self.inner, self.vocab_size, self.calls = inner, inner.vocab_size, 0

        def spec(self):
            return self.inner.spec()

        def next_token_law(self, seqs, context):
            return self.inner.next_token_law(seqs, context)

        def sample(self, n, length, rng):
            self.calls += 1
            return self.inner.sample(n, length, rng)

        def eval_sample(self, n, length, rng):
            return self.inner.sample(n, length, rng)

        def stream_state(self, rng):
            return {"own": True}

        def restore_stream(self, rng, state):
            assert state == {"own": True}

    cfg = run_cfg(steps=20)
    fam = Restoring(family)
    with pytest.raises(Interrupted):
        train(cfg, fam, checkpoint=CheckpointSpec(tmp_path / "run.pt", 0, after_save=stop_after_save_at(11)))
    fam.calls = 0
    resumed = train(cfg, fam, checkpoint=CheckpointSpec(tmp_path / "run.pt"))
    assert fam.calls == 20 - 11  # no batch drawn twice
    assert_identical(resumed, train(cfg, family))


def test_natural_text_resumes_its_window_order_across_passes(tmp_path, monkeypatch):
    """The text family keeps each run's window order and cursor itself, and draws a new order per pass: replaying
    the stream puts both back (restoring the Generator alone would start a new order)."""
    from scalingkit.families import embedded
    from scalingkit.families.text import build_text

    monkeypatch.setenv("SCALINGKIT_CORPUS", str(embedded.corpus_dir()))
    monkeypatch.setenv("SCALINGKIT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "words").mkdir()
    words = write_random_words(tmp_path / "words", seed=0, vocabulary=200, documents=20, words_each=40)
    fam = build_text("words", {"kind": "text", "corpus": str(words), "tokenizer": {"bpe": 300}, "repeats": 3,
                               "held_out": 0.25})
    windows = len(fam.train) // 21
    steps = (2 * windows) // 16 + 3  # into a third pass
    settings = replace(SETTINGS, eval_sequences=8)
    cfg = RunConfig("words", "sp", 2, 16, tokens=16 * 20 * steps, lr=1e-2, seed=0, settings=settings)
    full = train(cfg, fam)
    stop = windows // 16 + 2  # in the second pass
    with pytest.raises(Interrupted):
        train(cfg, fam, checkpoint=CheckpointSpec(tmp_path / "run.pt", 0, after_save=stop_after_save_at(stop)))
    assert_identical(train(cfg, fam, checkpoint=CheckpointSpec(tmp_path / "run.pt")), full)


@pytest.fixture(scope="module")
def short(family):
    """A short run, its uninterrupted result, and a checkpoint of it at step 6 to spoil."""
    cfg = run_cfg(steps=12)
    return cfg, train(cfg, family)


def interrupted_checkpoint(cfgs, family, path, batch=False):
    spec = CheckpointSpec(path, 0, after_save=stop_after_save_at(6))
    with pytest.raises(Interrupted):
        train_batch(cfgs, family, checkpoint=spec) if batch else train(cfgs[0], family, checkpoint=spec)
    return path


def fresh_with_warning(cfg, family, path, match):
    with pytest.warns(CheckpointIgnored, match=match) as record:
        result = train(cfg, family, checkpoint=CheckpointSpec(path, 1e9))
    # ours is the only warning: torch's own about a file that looks like a pickle of another protocol (random
    # bytes starting 0x80 0x0a) is not passed on
    assert [type(w.message) for w in record] == [CheckpointIgnored], [str(w.message) for w in record]
    assert str(path) in str(record[0].message)
    assert result.resumed_at == ()
    return result


def test_another_runs_checkpoint_is_ignored_with_a_warning(family, short, tmp_path):
    cfg, full = short
    path = interrupted_checkpoint([replace(cfg, lr=3e-3)], family, tmp_path / "run.pt")
    assert_identical(fresh_with_warning(cfg, family, path, "belongs to another run .*config hash"), full)


def test_a_batch_checkpoint_is_not_a_runs_nor_another_orders(family, short, tmp_path):
    cfg, full = short
    other = replace(cfg, lr=3e-3, seed=1)
    path = interrupted_checkpoint([cfg, other], family, tmp_path / "batch.pt", batch=True)
    assert_identical(fresh_with_warning(cfg, family, path, "a batch of 2.*this run: one run"), full)
    path = interrupted_checkpoint([cfg, other], family, tmp_path / "batch2.pt", batch=True)
    with pytest.warns(CheckpointIgnored, match="another run"):
        swapped = train_batch([other, cfg], family, checkpoint=CheckpointSpec(path, 1e9))
    assert swapped[1].resumed_at == ()
    assert_identical(swapped[1], train_batch([cfg], family)[0])


@pytest.mark.parametrize("spoil", ["garbage", "truncated", "foreign"])
def test_an_unreadable_or_foreign_file_is_ignored_with_a_warning(family, short, tmp_path, spoil):
    cfg, full = short
    path = interrupted_checkpoint([cfg], family, tmp_path / "run.pt")
    if spoil == "garbage":  # random bytes after a pickle-protocol-10 header: torch warns of it, then fails
        path.write_bytes(b"\x80\x0a" + os.urandom(4094))
    elif spoil == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        torch.save({"model": {}, "step": 6}, path)
    match = "not a scalingkit checkpoint" if spoil == "foreign" else "cannot be read"
    assert_identical(fresh_with_warning(cfg, family, path, match), full)


def test_a_family_that_no_longer_samples_the_same_is_not_resumed(family, short, tmp_path):
    """Same config hash, but the stream does not replay to the saved Generator state (the family's sampler changed
    between the save and the resume): ignored, not resumed on other data."""
    cfg, full = short
    path = interrupted_checkpoint([cfg], family, tmp_path / "run.pt")

    class Changed:
        vocab_size = family.vocab_size
        spec, next_token_law = family.spec, family.next_token_law

        def sample(self, n, length, rng):
            rng.random()  # one more draw per batch than the sampler that saved the checkpoint
            return family.sample(n, length, rng)

    with pytest.warns(CheckpointIgnored, match="does not replay"):
        result = train(cfg, Changed(), checkpoint=CheckpointSpec(path, 1e9))
    assert result.resumed_at == () and result.status == "done"


def test_a_save_that_fails_warns_and_training_goes_on(family, short, tmp_path):
    cfg, full = short
    (tmp_path / "not-a-folder").write_text("")
    with pytest.warns(CheckpointNotSaved, match="could not save checkpoint"):
        result = train(cfg, family, checkpoint=CheckpointSpec(tmp_path / "not-a-folder" / "run.pt", 0))
    assert_identical(result, full)


def test_the_checkpoint_setting_leaves_the_config_hash_alone():
    a = RunConfig("er64", "sp", 2, 16, 6400, 1e-2, 0, TrainSettings())
    b = replace(a, settings=TrainSettings(checkpoint_minutes=1.5))
    assert TrainSettings().checkpoint_minutes == 10.0
    assert a.config_hash({"kind": "er"}) == b.config_hash({"kind": "er"})
