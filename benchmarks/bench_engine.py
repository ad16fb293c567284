"""Engine overhead: tokens/s of scalingkit's training run against a bare PyTorch loop on the same model and data.

Both loops train the same 2-layer GPT (width 128, context 50, batch 64, vocabulary 1,000: ER 1,000 nodes / 5,000
edges) from the same initialisation on the same sampled walks, in this process, alternating, best of REPEATS. The
engine also evaluates on its held-out set at its log-spaced points: the figure is reported with and without that
time (the bare loop does no evaluation). Target: ratio >= 0.95 for the training loop.

    .venv/bin/python benchmarks/bench_engine.py [--steps 300] [--repeats 3]
"""
import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from scalingkit.families import build_family
from scalingkit.model.gpt import GPTConfig, build_model
from scalingkit.train.engine import Batches, RunConfig, TrainSettings, learning_rate, train

FAMILY = {"kind": "er", "nodes": 1000, "edges": 5000, "seed": 0}


def bare_loop(family, cfg: RunConfig) -> float:
    """The plainest loop that does the same work: sample, forward, backward, clip, AdamW step, schedule."""
    s = cfg.settings
    model, param = build_model(GPTConfig(vocab_size=family.vocab_size, n_layer=cfg.n_layer, d_model=cfg.d_model,
                                         context=s.context), cfg.param, cfg.seed)
    opt = torch.optim.AdamW(param.param_groups(model, cfg.lr, s.weight_decay), lr=cfg.lr, betas=s.betas, eps=s.eps)
    batches = Batches(family, s.batch, s.context, cfg.seed, torch.device("cpu"))
    start = time.perf_counter()
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = learning_rate(step, cfg.steps, cfg.lr, s.warmup_fraction)
        x, y = batches.next()
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
        opt.step()
    assert math.isfinite(loss.item())
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    family = build_family("er1k", FAMILY)
    settings = TrainSettings(context=50, batch=64, eval_points=24, eval_sequences=256)
    cfg = RunConfig("er1k", "sp", 2, 128, tokens=64 * 50 * args.steps, lr=3e-3, seed=0, settings=settings)
    tokens = cfg.steps * 64 * 50
    bare, full, loop = [], [], []
    train(RunConfig("er1k", "sp", 2, 128, tokens=64 * 50 * 5, lr=3e-3, seed=0, settings=settings), family)  # warm-up
    for _ in range(args.repeats):
        bare.append(bare_loop(family, cfg))
        result = train(cfg, family)
        full.append(result.wall_seconds)
        loop.append(result.wall_seconds - result.eval_seconds)
    b, f, l = min(bare), min(full), min(loop)
    print(f"machine: {torch.get_num_threads()} torch threads; {cfg.steps} steps of 64 x 50 tokens, width 128, V=1000")
    print(f"bare PyTorch loop          : {tokens / b:10,.0f} tokens/s ({cfg.steps / b:.2f} steps/s)")
    print(f"scalingkit engine, training: {tokens / l:10,.0f} tokens/s  ratio {b / l:.3f}  (target >= 0.95)")
    print(f"scalingkit engine, with its 24 evaluations of 256 sequences: {tokens / f:10,.0f} tokens/s  ratio {b / f:.3f}")
    print("all timings (s): bare", np.round(bare, 2), "engine", np.round(full, 2), "engine w/o eval", np.round(loop, 2))


if __name__ == "__main__":
    main()
