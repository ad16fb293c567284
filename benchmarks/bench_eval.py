"""Evaluation: what the exact excess loss costs, and how much noise it removes.

1. Time: the held-out evaluation as it was (forward pass and sampled cross-entropy only) against today's (also the
   KL to the family's law, per-sequence bookkeeping for the standard errors), same model, same held-out set, best
   of several repeats; ratio new / old (target <= 1.3). Families: the demo's ER walk (256 tokens), a bigram walk
   with a 1,024-token BPE (their laws are gathered as sparse rows), and TnL text (a cached table of the generator's
   log-probabilities, dense).
2. Noise: width-32 models of an ER 128-node / 768-edge walk trained to adjacent budgets (D, 2D, 4D, 8D); the standard
   error over held-out sequences of the difference between adjacent budgets (paired: the same held-out set), for the
   sampled loss and for the exact loss, and the exact loss's absolute standard error.

    python benchmarks/bench_eval.py [--quick]
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from scalingkit.config import RunConfig, TrainSettings
from scalingkit.families import build_family, embedded
from scalingkit.model.gpt import GPTConfig, build_model
from scalingkit.train.evaluation import HeldOut, _per_sequence, token_scores

torch.set_num_threads(1)
CPU = torch.device("cpu")


@torch.no_grad()
def old_evaluate(model, seqs: torch.Tensor, batch: int) -> float:
    """The evaluation before the exact loss existed: summed sampled cross-entropy, nothing else."""
    total, count = 0.0, 0
    for i in range(0, len(seqs), batch):
        chunk = seqs[i:i + batch]
        logits = model(chunk[:, :-1])
        total += F.cross_entropy(logits.float().flatten(0, 1), chunk[:, 1:].flatten(), reduction="sum").item()
        count += chunk[:, 1:].numel()
    return total / count


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def time_family(label, family, width, settings, repeats):
    held = HeldOut(family, settings, CPU, max(settings.batch, 64))
    model, _ = build_model(GPTConfig(family.vocab_size, 2, width, settings.context), "sp", 0)
    model.eval()
    old = best_of(lambda: old_evaluate(model, held.seqs, max(settings.batch, 64)), repeats)
    new = best_of(lambda: held.evaluate(model, nullcontext), repeats)
    kind = type(held.law).__name__
    print(f"  {label:<34} V={family.vocab_size:<5} width {width:<4} law {kind:<26} old {old * 1e3:7.1f} ms   "
          f"new {new * 1e3:7.1f} ms   ratio {new / old:.2f}")
    return new / old


def per_sequence(held: HeldOut, model) -> tuple[np.ndarray, np.ndarray]:
    """Each held-out sequence's mean sampled loss and mean KL (what the standard errors are taken over)."""
    ce, kl = [], []
    with torch.no_grad():
        for rows, law in held.chunks:
            chunk = held.seqs[rows]
            c, k = token_scores(model(chunk[:, :-1]), chunk[:, 1:].reshape(-1), law)
            ce.append(_per_sequence(c, len(chunk)))
            kl.append(_per_sequence(k, len(chunk)))
    return np.concatenate(ce), np.concatenate(kl)


def noise(quick: bool):
    family = build_family("er128", {"kind": "er", "nodes": 128, "edges": 768, "seed": 0})
    settings = TrainSettings(context=50, batch=8, eval_points=4, eval_sequences=256 if quick else 1024)
    budgets = [100_000, 200_000] if quick else [100_000, 200_000, 400_000, 800_000]
    held = HeldOut(family, settings, CPU, 64)
    print(f"\nnoise: ER 128 nodes / 768 edges (floor {held.floor:.4f}), width 32, batch 8, lr 3e-2, "
          f"{settings.eval_sequences} held-out sequences of {settings.context + 1} tokens")
    rows = []
    for D in budgets:
        cfg = RunConfig(family="er128", param="sp", n_layer=2, d_model=32, tokens=D, lr=3e-2, seed=0,
                        settings=settings)
        ce, kl = per_sequence(held, trained_model(cfg, family))
        rows.append((D, ce, kl))
        n = len(ce)
        print(f"  D={D:>8,}  sampled {ce.mean():.5f} +- {ce.std(ddof=1) / math.sqrt(n):.2e}   "
              f"exact {held.floor + kl.mean():.5f} +- {kl.std(ddof=1) / math.sqrt(n):.2e}")
    for (d1, ce1, kl1), (d2, ce2, kl2) in zip(rows, rows[1:]):
        n = len(ce1)
        se_s = (ce2 - ce1).std(ddof=1) / math.sqrt(n)
        se_e = (kl2 - kl1).std(ddof=1) / math.sqrt(n)
        diff = kl1.mean() - kl2.mean()
        print(f"  {d1:>8,} -> {d2:>8,}: drop {diff:.5f}; s.e. of the difference: sampled {se_s:.2e} "
              f"({se_s / abs(diff):.1%} of it), exact {se_e:.2e}; ratio {se_s / se_e:.1f}x")


def trained_model(cfg, family):
    """A model trained by engine.train itself, kept (the engine returns only curves: its build_model is wrapped)."""
    from scalingkit.train import engine

    holder = {}
    real_build = engine.build_model

    def build_and_keep(*a, **k):
        model, par = real_build(*a, **k)
        holder["model"] = model
        return model, par
    engine.build_model = build_and_keep
    try:
        engine.train(cfg, family)
    finally:
        engine.build_model = real_build
    return holder["model"].eval()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, two budgets, smaller held-out set")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; one torch thread")
    print("evaluation time, old (sampled only) against new (sampled + exact excess + standard errors):")
    demo = TrainSettings(context=50, batch=32, eval_sequences=192)
    er = build_family("er256", {"kind": "er", "nodes": 256, "edges": 1536, "seed": 0})
    ratios = [time_family("ER 256 (the demo)", er, w, demo, repeats) for w in (16, 64)]
    cache = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    os.environ.setdefault("SCALINGKIT_CORPUS", str(embedded.corpus_dir()))
    os.environ["SCALINGKIT_CACHE"] = str(cache)
    try:
        plays = cache / "plays"
        plays.mkdir()
        for play in ("hamlet", "macbeth", "tempest", "othello"):
            shutil.copy(embedded.corpus_dir() / "shakespeare" / f"{play}.txt", plays)
        bigram = build_family("bigram", {"kind": "bigram", "corpus": str(plays), "tokenizer": {"bpe": 1024},
                                         "prune": 5})
        lang = TrainSettings(context=50, batch=32, eval_sequences=256)
        ratios.append(time_family("bigram, BPE 1,024", bigram, 64, lang, repeats))
        tnl = build_family("t1l", {"kind": "generated", "corpus": str(plays), "tokenizer": {"bpe": 1024},
                                   "layers": 1, "width": 32, "generator_tokens": 200_000, "batch": 32,
                                   "context": 50, "pool_tokens": 60_000, "eval_sequences": 256, "held_out": 0.5})
        ratios.append(time_family("T1L text, BPE 1,024", tnl, 64, lang, repeats))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print(f"  worst ratio {max(ratios):.2f} (target <= 1.3)")
    noise(args.quick)


if __name__ == "__main__":
    main()
