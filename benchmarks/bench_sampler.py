"""Walk-sampler throughput on ER 8192 nodes / 53,292 edges, against what training consumes.

Usage: .venv/bin/python benchmarks/bench_sampler.py
Training at width 128 takes about 7 steps/s x 64 sequences x 50 tokens = 22,400 tokens/s on the reference CPU;
the sampler should be far ahead of that so data never limits a run.
"""
import time

import numpy as np

from scalingkit.families import build_family

TRAINING_TOKENS_PER_S = 7 * 64 * 50
SHAPES = [(64, 51), (100, 51), (1000, 51), (10_000, 51)]
FAMILIES = {
    "er8k unbiased": {"kind": "er", "nodes": 8192, "edges": 53292, "seed": 0},
    "er8k kappa=1": {"kind": "er", "nodes": 8192, "edges": 53292, "seed": 0, "kappa": 1.0},
}


def tokens_per_second(fam, n_seq, length, rng, min_time=1.0):
    """Best of three timed blocks, each at least min_time/3 seconds of repeated calls."""
    best = 0.0
    for _ in range(3):
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < min_time / 3:
            fam.sample(n_seq, length, rng)
            calls += 1
        best = max(best, calls * n_seq * length / elapsed)
    return best


def main():
    rng = np.random.default_rng(0)
    print(f"training consumes ~{TRAINING_TOKENS_PER_S:,} tokens/s (width 128: 7 steps/s x 64 x 50)")
    for label, spec in FAMILIES.items():
        start = time.perf_counter()
        fam = build_family(label, spec)
        fam.sample(1, 1, rng)  # builds the alias tables
        print(f"\n{label}: build + tables {time.perf_counter() - start:.3f} s, "
              f"entropy rate {fam.entropy_rate():.4f} nats")
        for n_seq, length in SHAPES:
            rate = tokens_per_second(fam, n_seq, length, rng)
            print(f"  {n_seq:>6} x {length}: {rate / 1e6:6.1f} M tokens/s  = {rate / TRAINING_TOKENS_PER_S:6.0f}x training")


if __name__ == "__main__":
    main()
