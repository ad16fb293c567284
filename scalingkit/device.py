"""Where a run computes: the device it asks for (auto, cpu, cuda) and how many CPU threads a worker process uses.

Shared by the training engine, the TnL family's generator and the coordinator; imports nothing else of scalingkit
but errors, and torch only inside the functions that need it (so the command line starts without it).
"""
from __future__ import annotations

import os

from scalingkit.errors import UserError


def resolve_device(name: str):
    """The torch.device a run asks for: auto is CUDA where there is one, else the CPU."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def threads_per_worker(workers: int) -> int:
    """Torch threads in each worker: 1 unless SCALINGKIT_THREADS says otherwise.

    Measured on the 2-core machine: with another job on the cores, 2 torch threads ran a width-32 model at 2.2
    steps/s against 31.6 with 1 thread (spinning intra-op threads fight for the cores); idle, a second thread gains
    at most ~1.5x at width 128. One thread per worker is never catastrophic, and keeps results bit-identical
    across machines of different core counts. Use more workers, not more threads, to fill the cores."""
    value = os.environ.get("SCALINGKIT_THREADS")
    if value is None:
        return 1
    try:
        return max(1, int(value))
    except ValueError:
        raise UserError(f"SCALINGKIT_THREADS must be an integer, got {value!r}") from None


def check_device(device: str | None) -> None:
    """Fail before training, not once per run, when CUDA is asked for on a machine without it."""
    if device != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        raise UserError("device cuda was asked for but no CUDA device is available here "
                        "(use --device cpu to train these runs on the CPU, slowly)")
