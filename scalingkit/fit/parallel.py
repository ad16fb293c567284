"""Spread independent refits over the machine's cores (concurrent.futures), or run in-process with 1 worker.

Draws are generated before the work is split, so results do not depend on the number of workers.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np


def n_workers(workers: int | None = None) -> int:
    if workers is not None:
        return max(1, int(workers))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def map_split(fn, rows: np.ndarray, *args, workers: int | None = None, min_per_worker: int = 50):
    """fn(rows_chunk, *args) -> array with one row per input row; the input rows are split across workers.

    Small jobs stay in-process: starting processes costs more than it saves below `min_per_worker` rows each.
    """
    rows = np.asarray(rows)
    w = min(n_workers(workers), max(1, len(rows) // min_per_worker))
    if w <= 1:
        return fn(rows, *args)
    chunks = np.array_split(rows, w)
    # fork keeps start-up cheap (no re-import); the functions we send are pure numpy/scipy.
    ctx = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
    with ProcessPoolExecutor(max_workers=w, mp_context=ctx) as pool:
        parts = list(pool.map(fn, chunks, *[[a] * w for a in args]))
    return np.concatenate(parts, axis=0)
