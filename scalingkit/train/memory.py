"""What a batch of K learning-rate/seed variants of one shape needs in memory: a model fitted to measured peaks.

Used by the batched trainer (how many variants' logits to take at once on the CPU) and by the planner that bounds a
batch by the memory available (sweep/batching.py). Plain arithmetic; torch only to ask a GPU for its free memory.
"""
from __future__ import annotations

import os

from scalingkit.model.counts import total_params

EVAL_CHUNK_SEQUENCES = 64  # the held-out set is evaluated max(batch, 64) sequences at a time (engine.eval_chunk)
CPU_LOGITS_BYTES = 4 << 20  # on the CPU a batch takes its logits a few variants at a time, about this much at once


def variant_bytes(config, vocab: int, device: str) -> int:
    """Modelled memory of one variant in a batch: fp32 weights, gradients and two Adam moments; what the backward
    pass keeps per training token: ~40 values per layer and width unit, 8 more per width unit, and two per
    vocabulary entry (the log-softmax kept for the loss's gradient); and the evaluation's forward pass over
    max(batch, 64) sequences, ~20 values per width unit per token. Against peak memory measured on the CPU
    (benchmarks/bench_batched.py, K = 14, vocabulary 256): 0.95-1.08x at batch 8 and 16, where the evaluation chunk
    (2-8x a training batch) sets the peak; 1.24-1.7x at batch 32, widths 16-128 (over: the safe side; without the
    evaluation term the model fell to half the measured peak at batch 8). On a GPU, where all K variants' logits
    are taken at once, one more copy of the training logits and the evaluation chunk's logits and log-softmax.
    bf16 under autocast only makes it smaller."""
    s = config.settings
    d, cuda = config.d_model, device == "cuda"
    tokens = s.batch * s.context
    weights = 16 * total_params(config.n_layer, config.d_model, vocab)
    per_token = config.n_layer * 40 * d + 8 * d + (3 if cuda else 2) * vocab
    per_eval_token = 20 * d + (2 * vocab if cuda else 0)
    return weights + 4 * tokens * per_token + 4 * eval_tokens(config) * per_eval_token


def eval_tokens(config) -> int:
    s = config.settings
    return max(s.batch, EVAL_CHUNK_SEQUENCES) * s.context


def fixed_bytes(config, vocab: int, device: str = "cpu") -> int:
    """Memory a batch needs whatever its size: on the CPU the logits chunk in flight and its log-softmax, which is
    at least one variant's whole evaluation chunk (1.3 GB with the GPT-2 vocabulary at batch <= 64, context 50)."""
    if device == "cuda":
        return 0
    return 2 * max(CPU_LOGITS_BYTES, 4 * eval_tokens(config) * vocab)


def available_bytes(device: str) -> int:
    if device == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info()
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
