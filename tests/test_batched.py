"""Batched variants: K learning-rate/seed variants trained together give each variant the curve it gets alone.

Tolerance: curves agree to 1e-4 nats (measured: within 1.5e-6). Batched and single runs do the same arithmetic in
a different order (bmm against mm, one norm over a stack), so they agree only to float rounding, and training
amplifies rounding where it is chaotic: at a high learning rate even engine.train itself differs by ~1e-2 nats
between 1 and 2 BLAS threads after a few dozen steps. The cases here use learning rates where it is not chaotic.
"""
import math

import numpy as np
import pytest
import torch

from scalingkit.families import build_family
from scalingkit.model.gpt import GPTConfig, build_model
from scalingkit.train import batched, engine
from scalingkit.train.batched import train_batch
from scalingkit.train.engine import RunConfig, TrainSettings, train
from scalingkit.train.stacked import StackedGPT

ER = {"kind": "er", "nodes": 64, "edges": 256, "seed": 1}
SETTINGS = TrainSettings(batch=16, context=20, eval_points=8, eval_sequences=48)
ATOL = 1e-4


@pytest.fixture(scope="module")
def family():
    return build_family("er64", ER)


def configs(param, variants, steps=40, settings=SETTINGS, width=32):
    return [RunConfig("er64", param, 2, width, tokens=16 * 20 * steps, lr=lr, seed=seed, settings=settings)
            for lr, seed in variants]


def assert_same_curve(a, b, atol=ATOL):
    assert a.status == b.status and a.message == b.message
    assert np.array_equal(a.steps, b.steps) and np.array_equal(a.tokens, b.tokens)
    assert np.array_equal(a.lr_now, b.lr_now)  # the schedule is computed exactly as engine.train does
    np.testing.assert_allclose(a.train_loss, b.train_loss, rtol=0, atol=atol)
    np.testing.assert_allclose(a.eval_loss, b.eval_loss, rtol=0, atol=atol)


def test_stacked_forward_is_each_variants_module(family):
    cfg = GPTConfig(vocab_size=64, n_layer=2, d_model=32, context=20)
    for param in ("sp", "mup"):
        models = [build_model(cfg, param, seed, base_width=16)[0] for seed in (0, 1, 2)]
        stack = StackedGPT(models, torch.device("cpu"))
        idx = torch.randint(0, 64, (3, 5, 20), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            logits = stack(idx)
            for k, model in enumerate(models):
                torch.testing.assert_close(logits[k], model(idx[k]), rtol=0, atol=1e-5)


@pytest.mark.parametrize("param", ["sp", "mup"])
def test_batched_equals_unbatched(family, param):
    """Three variants with their own learning rates and seeds (so their own init and data), one batch."""
    cfgs = configs(param, [(1e-2, 0), (3e-3, 1), (2e-2, 2)] if param == "sp" else [(3e-3, 0), (1e-3, 1), (2e-3, 2)])
    together = train_batch(cfgs, family)
    for cfg, result in zip(cfgs, together):
        assert_same_curve(result, train(cfg, family))
    assert together[0].final_eval_loss != together[1].final_eval_loss  # really different variants


def test_divergence_of_one_variant_is_isolated(family):
    """The middle variant blows up; it is finished as `diverged` where engine.train stops it, the others go on."""
    settings = TrainSettings(batch=16, context=20, eval_points=8, eval_sequences=32, grad_clip=0.0,
                             warmup_fraction=0.0)
    cfgs = configs("sp", [(1e-2, 0), (1e8, 1), (3e-3, 2)], steps=60, settings=settings, width=16)
    together = train_batch(cfgs, family)
    assert [r.status for r in together] == ["done", "diverged", "done"]
    assert "became" in together[1].message and math.isnan(together[1].final_eval_loss)
    for cfg, result in zip(cfgs, together):
        assert_same_curve(result, train(cfg, family))
    assert len(together[1].steps) < len(together[0].steps) == 8


def test_partial_curves_reported_per_variant(family):
    seen = {}
    cfgs = configs("sp", [(1e-2, 0), (3e-3, 1)], steps=10, width=16)
    results = train_batch(cfgs, family, on_point=lambda i, r: seen.setdefault(i, []).append(len(r.steps)))
    assert seen == {0: list(range(1, 9)), 1: list(range(1, 9))}
    assert sum(r.wall_seconds for r in results) > 0 and results[0].wall_seconds == results[1].wall_seconds


def test_only_lr_and_seed_may_differ(family):
    cfgs = configs("sp", [(1e-2, 0)]) + configs("sp", [(1e-2, 1)], width=16)
    with pytest.raises(ValueError, match="only lr and seed"):
        train_batch(cfgs, family)


def test_autocast_path_runs_on_the_cpu(family, monkeypatch):
    """The CUDA path trains under bf16 autocast; CPU bf16 autocast stands in for it so the code path is exercised
    here (same casts: matmuls in bf16, the loss and the rotation in fp32). bf16 rounding: agreement to 0.05 nats
    (measured: within 0.007)."""
    cpu_bf16 = lambda device: (lambda: torch.autocast("cpu", dtype=torch.bfloat16))  # noqa: E731
    monkeypatch.setattr(engine, "autocast_for", cpu_bf16)
    monkeypatch.setattr(batched, "autocast_for", cpu_bf16)
    cfgs = configs("mup", [(3e-3, 0), (1e-3, 1)], steps=20, width=16)
    together = train_batch(cfgs, family)
    for cfg, result in zip(cfgs, together):
        alone = train(cfg, family)
        assert result.status == "done" and np.isfinite(result.eval_loss).all()
        np.testing.assert_allclose(result.eval_loss, alone.eval_loss, rtol=0, atol=0.05)
