"""What the runs a `train --fill-missing` has left would cost on this machine, and the `--yes` it asks for above a day.

FLOPs: the exact matmul count of every run left (model/counts.train_flops_per_token x its tokens, plus the
evaluations: a forward pass over the held-out set at each logged point).

Time, a model with two measured figures, taken on the device the runs would train on, in this process, with the
threads one worker uses:
- the device's matmul rate at each width: a float32 (bf16 on CUDA) product of (batch x context) rows by the width
  into 4 x width (the MLP's first matrix, a layer's largest), timed best of 3 (at most ~2 GFLOP each);
- the cost of one small kernel launch (timed on 200 tiny adds), charged ~30 times per layer and 20 more per step
  (a small model's step is mostly launches, not arithmetic);
plus 0.5 s per run (building it, its evaluation set, writing it to the store: the tests' 20-step runs take ~1 s).
The workers share the time where they run side by side (at most one per CPU core; one GPU). Real runs are slower
than the matmul peak (attention, norms, the optimiser), so the figure is a lower bound, and said so.

Only a sweep whose FLOPs could take more than the threshold even at 1e9 FLOP/s per worker (far below any CPU core) is
timed at all: the demo and the tests' sweeps cost nothing here.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from scalingkit.errors import UserError
from scalingkit.model.counts import train_flops_per_token

THRESHOLD_SECONDS = 24 * 3600  # above this `train` asks for --yes
FLOOR_RATE = 1e9  # FLOP/s per worker: far below any device (one CPU core: ~1e10-1e11), so below threshold x
# this nothing is timed
RUN_SECONDS = 0.5
LAUNCHES_PER_LAYER, LAUNCHES_PER_STEP = 30, 20
WORKER_BYTES = 300 << 20  # a worker process once torch and the engine are imported: 263 MB measured (RSS)


@dataclass
class Estimate:
    runs: int
    flops: float
    seconds: float | None  # None: not timed (far below the threshold)
    device: str
    parallel: int
    rate: float | None  # the largest width's measured matmul rate, FLOP/s per worker

    def text(self) -> str:
        what = f"{self.runs:,} run{'s' if self.runs != 1 else ''} left, {self.flops:.3g} FLOPs"
        if self.seconds is None:
            return what
        workers = "1 worker" if self.parallel == 1 else f"{self.parallel} workers side by side, each"
        return (f"{what}: at least {_duration(self.seconds)} on this machine's {self.device} ({workers} at "
                f"{self.rate:.2g} FLOP/s, a matmul at the largest width timed here, plus kernel launches; real runs "
                "are slower)")


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} minutes"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} hours"
    if seconds < 3 * 365 * 86400:
        return f"{seconds / 86400:.0f} days"
    return f"{seconds / (365 * 86400):.3g} years"


def runs_left(store_path, sweeps, retry_failed: bool = False) -> list[tuple]:
    """(n_layer, width, vocab, tokens, settings) of every cell the sweeps plan that is not finished in the store
    (missing, not in the cube yet, or failed with retry_failed). A sweep that searches learning rates counts its
    whole grid (the search trains part of it, and perhaps a few past its ends)."""
    from scalingkit import store
    from scalingkit.sweep.plan import _key

    path = Path(store_path)
    lookup, codes, families = None, None, {}
    if (path / "zarr.json").exists():
        coords, codes = store.read_status(path)
        lookup = {d: {_key(d, x): i for i, x in enumerate(coords[d])} for d in store.RUN_DIMS}
        families = store.attrs(path).get("families", {})
    left_codes = {store.STATUS_CODE["missing"]} | ({store.STATUS_CODE["failed"]} if retry_failed else set())
    out, seen = [], set()
    for sw in sweeps:
        vocab = {label: _vocab(label, spec, families) for label, spec in sw.families.items()}
        for cell in sw.cells():
            if cell in seen:
                continue
            seen.add(cell)
            if lookup is not None:
                try:
                    idx = tuple(lookup[d][_key(d, x)] for d, x in zip(store.RUN_DIMS, cell.labels()))
                except KeyError:
                    idx = None
                if idx is not None and int(codes[idx]) not in left_codes:
                    continue
            n_layer, width = sw.shapes[cell.N]
            out.append((n_layer, width, vocab[cell.family], cell.D, sw.settings))
    return out


def _vocab(label: str, spec: dict, stored: dict) -> int:
    if label in stored and "vocab_size" in stored[label]:
        return int(stored[label]["vocab_size"])
    from scalingkit.families import build_family

    return int(build_family(label, spec).vocab_size)  # built (and cached) when the sweep was checked


def estimate(runs: list[tuple], workers: int = 1, device: str | None = None, measure: bool | None = None) -> Estimate:
    """FLOPs of `runs` (runs_left) and, where they could exceed the threshold, the time they take here (module
    docstring). measure: True / False forces timing on or off; None: only when it could matter."""
    if not runs:
        return Estimate(0, 0.0, None, "CPU", 1, None)
    kind = _device_kind(device or runs[0][4].device)
    parallel = max(1, min(int(workers or 1), os.cpu_count() or 1)) if kind == "cpu" else 1
    total, per_width, steps_of = 0.0, {}, {}
    for n_layer, width, vocab, tokens, s in runs:
        per_token = train_flops_per_token(n_layer, width, vocab, s.context)
        steps = max(1, tokens // (s.batch * s.context))
        evals = min(s.eval_points, steps) * s.eval_sequences * s.context * per_token / 3
        flops = per_token * tokens + evals
        total += flops
        key = (width, s.batch * s.context)
        per_width[key] = per_width.get(key, 0.0) + flops
        steps_of[key] = steps_of.get(key, 0) + steps * (LAUNCHES_PER_LAYER * n_layer + LAUNCHES_PER_STEP)
    name = "GPU" if kind == "cuda" else "CPU"
    if measure is False or (measure is None and total / (FLOOR_RATE * parallel) <= THRESHOLD_SECONDS):
        return Estimate(len(runs), total, None, name, parallel, None)
    rates, launch = _measure(sorted(per_width), kind)
    seconds = sum(f / rates[k] + steps_of[k] * launch for k, f in per_width.items()) + RUN_SECONDS * len(runs)
    largest = max(per_width, key=lambda k: k[0])
    return Estimate(len(runs), total, seconds / parallel, name, parallel, rates[largest])


def _device_kind(device: str) -> str:
    if device == "cuda":
        return "cuda"
    if device == "auto":
        from scalingkit.config import cuda_here

        return "cuda" if cuda_here() else "cpu"
    return "cpu"


def _measure(keys: list[tuple], kind: str) -> tuple[dict, float]:
    """{(width, rows): matmul FLOP/s} and the seconds of one small kernel launch, on `kind`, with one worker's
    threads."""
    import torch

    from scalingkit.device import threads_per_worker

    dev = torch.device(kind)
    dtype = torch.bfloat16 if kind == "cuda" else torch.float32
    sync = torch.cuda.synchronize if kind == "cuda" else (lambda: None)
    old = torch.get_num_threads()
    torch.set_num_threads(threads_per_worker(1))
    try:
        rates = {}
        for width, rows in keys:
            r = int(max(16, min(rows, 2e9 // (8 * width * width))))
            a = torch.randn(r, width, device=dev, dtype=dtype)
            b = torch.randn(width, 4 * width, device=dev, dtype=dtype)
            best = math.inf
            for _ in range(4):  # the first is a warm-up
                sync()
                t = time.perf_counter()
                a @ b
                sync()
                best = min(best, time.perf_counter() - t)
            rates[(width, rows)] = 8.0 * r * width * width / max(best, 1e-9)
        x = torch.zeros(8, device=dev)
        sync()
        t = time.perf_counter()
        for _ in range(200):
            x = x + 1
        sync()
        launch = (time.perf_counter() - t) / 200
    finally:
        torch.set_num_threads(old)
    return rates, launch


def confirm(store_path, sweep=None, workers=None, device=None, retry_failed: bool = False, yes: bool = False,
            executor=None, echo=print) -> Estimate | None:
    """Before `train --fill-missing` trains on this machine: refuse (a one-line UserError) when the runs left would
    take more than THRESHOLD_SECONDS here, unless yes; with yes, say the estimate and go on. Runs sent to a cluster
    (executor slurm or dask) are not timed here."""
    kind = executor or ((getattr(sweep, "executor", None) or {}).get("kind") if sweep is not None else None)
    if kind not in (None, "local"):
        return None
    if sweep is not None:
        sweeps = [sweep]
    elif (Path(store_path) / "zarr.json").exists():
        from scalingkit.sweep.plan import stored_sweeps

        sweeps = stored_sweeps(store_path)
    else:
        return None  # no sweep, no store: the runner says so
    if workers is None:
        workers = (getattr(sweep, "executor", None) or {}).get("workers", 1) if sweep is not None else 1
    if workers and workers > 1:
        from scalingkit.config import check_memory

        check_memory(workers * WORKER_BYTES, f"--workers {workers:,}: {workers:,} worker processes", "cpu",
                     why=" (about 300 MB each once torch is loaded, before their models)")
    est = estimate(runs_left(store_path, sweeps, retry_failed), workers, device)
    if est.seconds is None or est.seconds <= THRESHOLD_SECONDS:
        return est
    where = f"sweep {sweep.name!r}: " if sweep is not None else f"store {store_path}: "
    if not yes:
        raise UserError(f"{where}{est.text()}; that is more than {THRESHOLD_SECONDS // 3600} hours: add --yes to "
                        "train it anyway")
    echo(f"{where}{est.text()}; training it (--yes)")
    return est


__all__ = ["Estimate", "THRESHOLD_SECONDS", "confirm", "estimate", "runs_left"]
