"""The engine on real (tiny) graph walks: schedule, evaluation grid, learning, determinism, divergence."""
import math

import numpy as np
import pytest

from scalingkit.families import build_family
from scalingkit.train.engine import RunConfig, TrainSettings, eval_steps, learning_rate, run_facts, train

ER = {"kind": "er", "nodes": 64, "edges": 256, "seed": 1}
SETTINGS = TrainSettings(batch=16, context=20, eval_points=8, eval_sequences=64)


def test_schedule_warmup_then_cosine_to_zero():
    total, peak = 1000, 1e-2
    lrs = np.array([learning_rate(s, total, peak, 0.02) for s in range(total)])
    assert lrs[0] == pytest.approx(peak / 20)
    assert lrs[19] == pytest.approx(peak)  # warm-up is the first 2% = 20 steps
    assert lrs.max() == pytest.approx(peak)
    assert np.all(np.diff(lrs[20:]) <= 0)
    assert lrs[-1] < 1e-4 * peak
    assert lrs[(20 + 1000) // 2] == pytest.approx(peak / 2, rel=0.01)


def test_eval_grid_is_log_spaced_and_ends_at_the_last_step():
    steps = eval_steps(5000, 24)
    assert steps[0] == 1 and steps[-1] == 5000 and len(steps) == 24
    ratios = steps[1:] / steps[:-1]
    assert np.allclose(ratios[5:], ratios[-1], rtol=0.05)
    assert list(eval_steps(3, 24)) == [1, 2, 3]


def test_tiny_run_learns_below_the_unigram_entropy():
    family = build_family("er64", ER)
    pi = family.stationary()
    unigram_entropy = -np.sum(pi[pi > 0] * np.log(pi[pi > 0]))
    cfg = RunConfig("er64", "sp", 2, 32, tokens=16 * 20 * 400, lr=1e-2, seed=0, settings=SETTINGS)
    result = train(cfg, family)
    assert result.status == "done"
    assert result.eval_loss[-1] < unigram_entropy - 0.2, (result.eval_loss[-1], unigram_entropy)
    assert result.eval_loss[-1] > family.entropy_rate() - 0.05  # never below the exact floor (up to noise)
    assert result.eval_loss[-1] < result.eval_loss[0]
    assert list(result.steps) == list(eval_steps(400, 8))


def test_same_seed_same_curve_and_other_seed_differs():
    family = build_family("er64", ER)
    cfg = RunConfig("er64", "sp", 2, 16, tokens=16 * 20 * 30, lr=1e-2, seed=3, settings=SETTINGS)
    a, b = train(cfg, family), train(cfg, family)
    assert np.array_equal(a.eval_loss, b.eval_loss) and np.array_equal(a.train_loss, b.train_loss)
    c = train(RunConfig("er64", "sp", 2, 16, tokens=16 * 20 * 30, lr=1e-2, seed=4, settings=SETTINGS), family)
    assert not np.array_equal(a.train_loss, c.train_loss)


def test_divergence_is_reported_not_raised():
    family = build_family("er64", ER)
    settings = TrainSettings(batch=16, context=20, eval_points=8, eval_sequences=32, grad_clip=0.0, warmup_fraction=0.0)
    cfg = RunConfig("er64", "sp", 2, 16, tokens=16 * 20 * 200, lr=1e8, seed=0, settings=settings)
    result = train(cfg, family)
    assert result.status == "diverged", result
    assert "became" in result.message
    assert math.isnan(result.final_eval_loss)


def test_run_facts_count_flops_both_ways():
    cfg = RunConfig("er64", "sp", 2, 32, tokens=10_000, lr=1e-2, seed=0, settings=SETTINGS)
    facts = run_facts(cfg, vocab_size=64)
    assert facts["tokens_trained"] == (10_000 // 320) * 320
    assert facts["flops_6nd"] == 6 * facts["n_params_total"] * facts["tokens_trained"]
    assert 0.5 < facts["flops_exact"] / facts["flops_6nd"] < 2
