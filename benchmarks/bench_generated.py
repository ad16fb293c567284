"""TnL sampling: tokens/s of the generated family's sampler for the CPU presets' generators (1, 2, 4 layers).

Usage: .venv/bin/python benchmarks/bench_generated.py
The sampler feeds one position at a time through a key/value cache for a whole batch of sequences; the baseline,
measured in the same run, is the plain loop that re-runs the model on the whole prefix at every position. The
generator's shape follows sweeps/t*l_cpu.toml (width 64, BPE vocabulary 1,024, context 50); sampling speed does
not depend on the weights, so the generators are freshly initialised. One torch thread, as the workers use.
"""
import time

import numpy as np
import torch

from scalingkit.families.generated import ROWS, generate
from scalingkit.model.gpt import GPTConfig, build_model

VOCAB, WIDTH, CONTEXT = 1024, 64, 50
N_SEQ = 2 * ROWS


def prefix_loop(model, n_seq, first, seed):
    """The baseline: the whole prefix through the model at every position."""
    generator = torch.Generator().manual_seed(seed)
    seqs = torch.multinomial(torch.as_tensor(first), n_seq, replacement=True, generator=generator)[:, None]
    with torch.no_grad():
        for _ in range(CONTEXT):
            probs = torch.softmax(model(seqs)[:, -1].float(), dim=-1)
            seqs = torch.cat([seqs, torch.multinomial(probs, 1, generator=generator)], dim=1)
    return seqs


def rate(fn, tokens, repeats=2):
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = max(best, tokens / (time.perf_counter() - start))
    return best


def main():
    torch.set_num_threads(1)
    first = np.full(VOCAB, 1.0 / VOCAB)
    tokens = N_SEQ * (CONTEXT + 1)
    print(f"generators: width {WIDTH}, vocabulary {VOCAB}, context {CONTEXT}; {N_SEQ} sequences ({tokens:,} tokens) "
          f"in batches of {ROWS}, 1 torch thread")
    for layers in (1, 2, 4):
        model, _ = build_model(GPTConfig(vocab_size=VOCAB, n_layer=layers, d_model=WIDTH, context=CONTEXT), "sp", 0)
        model.eval()
        ours = rate(lambda: generate(model, N_SEQ, first, 0, progress=False), tokens)
        base = rate(lambda: [prefix_loop(model, ROWS, first, 0) for _ in range(N_SEQ // ROWS)], tokens, repeats=1)
        print(f"  T{layers}L: {ours:9,.0f} tokens/s   whole-prefix baseline {base:9,.0f} tokens/s  -> {ours / base:4.1f}x")


if __name__ == "__main__":
    main()
