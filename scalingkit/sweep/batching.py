"""Which missing cells train together: group them by shape, bound a batch by memory, and batch only where it pays.

A batch is up to K cells that differ only in learning rate and seed (same family, param, N, D and settings). The
choice, per shape (`--batch-variants`):
- an integer K: batches of at most K (1 = every cell alone, as before batching existed);
- "auto": batches as large as memory allows, kept only where a short timing probe (train/probe.py) shows them
  faster than training the cells one after another; shapes with too little work left to repay a probe train one
  by one on the CPU and batched on a GPU (where batching small models always pays). A choice the store recorded
  for the shape (`recorded`) is followed instead, so that a re-run trains as the first run did.
A shape chosen for batching is "stacked": all its cells train with the batched engine, a cell left alone in its
group too (a stack of one), because the batched engine's numbers differ from a lone run's in the last digits (and do
not depend on how many variants share the stack).
Everything here is plain data and arithmetic; torch is imported only to probe or to ask a GPU for its free memory.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from scalingkit.store import Cell
from scalingkit.train.memory import available_bytes, fixed_bytes, variant_bytes

PROBE_SHARE = 0.05  # probe a shape only if the probe costs at most this share of the shape's remaining work
MEMORY_SHARE = {"cpu": 0.5, "cuda": 0.7}  # of the memory available now, split among the workers


@dataclass(frozen=True)
class Task:
    """One unit of work for a worker: one cell, or a batch of cells of one shape."""

    cells: tuple[Cell, ...]
    configs: tuple  # engine.RunConfig for each cell
    family_spec: dict
    stacked: bool = False  # trained by the batched engine (always when there are several cells)


@dataclass
class Choice:
    """What was decided for one shape, for the coordinator to print."""

    shape: str
    k: int  # batch size used (1: one by one)
    memory_k: int  # the largest batch memory allows
    reason: str
    stacked: bool = False  # the shape trains with the batched engine
    recorded: bool = False  # followed from the store's record, not decided now
    new: bool = False  # decided now by "auto" for a shape with cells to batch: worth recording in the store


def shape_key(config) -> tuple:
    """What a batch's cells share: everything but learning rate and seed (and D for the probe's cache)."""
    return (config.family, config.param, config.n_layer, config.d_model, config.settings)


def memory_k(config, vocab: int, device: str, workers: int, available: int) -> int:
    """The largest batch whose modelled memory fits this worker's share of the available memory (at least 1)."""
    budget = available * MEMORY_SHARE[device] / max(1, workers) - fixed_bytes(config, vocab, device)
    return max(1, int(budget // variant_bytes(config, vocab, device)))


def split(items: list, k: int) -> list[list]:
    """`items` in ceil(n / k) consecutive chunks of nearly equal size (14 by at most 6: 5, 5, 4)."""
    n_chunks = math.ceil(len(items) / k)
    size, extra = divmod(len(items), n_chunks)
    out, start = [], 0
    for i in range(n_chunks):
        end = start + size + (i < extra)
        out.append(items[start:end])
        start = end
    return out


def group(todo: list[tuple]) -> dict[tuple, list[tuple]]:
    """(cell, config, family_spec) items by what a batch shares, D included; order of first appearance kept."""
    groups: dict[tuple, list[tuple]] = {}
    for item in todo:
        config = item[1]
        groups.setdefault(shape_key(config) + (config.tokens,), []).append(item)
    return groups


def plan_tasks(todo: list[tuple], batch_variants, workers: int, device: str, vocab: dict, decide=None,
               available: int | None = None, recorded: dict | None = None) -> tuple[list[Task], list[Choice]]:
    """Turn (cell, config, family_spec) items into tasks. batch_variants: "auto" or an int >= 1. vocab: family ->
    vocabulary size. decide(items, k) -> Probe-like (with .pays and .speedup) times a shape for "auto". recorded:
    shape label -> {"stacked", "k", "reason"}, the choices the store recorded, which "auto" follows."""
    recorded = recorded if batch_variants == "auto" and recorded else {}
    groups = group(todo)
    stacks = any(recorded.get(_label(items[0][1]), {}).get("stacked") for items in groups.values())
    if batch_variants == 1 or (all(len(g) == 1 for g in groups.values()) and not stacks):
        return [_task([item]) for item in todo], []
    if available is None:
        available = available_bytes(device)
    by_shape: dict[tuple, list[list[tuple]]] = {}  # a shape's groups, one per token budget
    for key, items in groups.items():
        by_shape.setdefault(key[:-1], []).append(items)
    tasks, choices = [], []
    for shape_groups in by_shape.values():
        config = shape_groups[0][0][1]
        k_mem = memory_k(config, vocab[config.family], device, workers, available)
        largest = max(shape_groups, key=len)
        rec = recorded.get(_label(config))
        if rec is not None:
            stacked = bool(rec["stacked"])
            k = max(1, min(int(rec["k"]), k_mem, len(largest))) if stacked else 1
            reason = f"as recorded in the store: {rec['reason']}; not probed again"
            if stacked and k < int(rec["k"]):
                reason += f"; at most {k} now ({'memory' if k == k_mem else 'cells per shape'})"
            choices.append(Choice(_label(config), k, k_mem, reason, stacked=stacked, recorded=True))
        else:
            asked = len(largest) if batch_variants == "auto" else int(batch_variants)
            k = min(asked, k_mem, len(largest))
            reason = ("bounded by memory" if k == k_mem < asked else "--batch-variants" if k == asked
                      else "cells per shape")
            if batch_variants == "auto" and k > 1:
                k, reason = _auto(largest[:k], shape_groups, k, device, decide)
            stacked = k > 1
            choices.append(Choice(_label(config), k, k_mem, reason, stacked=stacked,
                                  new=batch_variants == "auto" and len(largest) > 1))
        for items in shape_groups:
            tasks.extend(_task(chunk, stacked) for chunk in split(items, k))
    return _spread(tasks, workers), choices


def _auto(sample: list[tuple], shape_groups: list[list[tuple]], k: int, device: str, decide) -> tuple[int, str]:
    from scalingkit.train.probe import probe_cost_steps

    work = sum(item[1].steps for items in shape_groups for item in items)
    if decide is None or work * PROBE_SHARE < probe_cost_steps(k):
        # too little work to repay a probe: the default that is right for most shapes on each device
        return (k, "GPU default") if device == "cuda" else (1, "too little work to probe")
    result = decide(sample, k)
    verdict = f"probe: batch of {k} {result.speedup:.2f}x one by one"
    return (k, verdict) if result.pays else (1, verdict)


def _task(items: list[tuple], stacked: bool = False) -> Task:
    return Task(tuple(i[0] for i in items), tuple(i[1] for i in items), items[0][2], stacked or len(items) > 1)


def _spread(tasks: list[Task], workers: int) -> list[Task]:
    """Split the largest batches while there are fewer tasks than workers (an idle worker wastes more than a
    smaller batch loses)."""
    tasks = list(tasks)
    while len(tasks) < workers:
        largest = max(range(len(tasks)), key=lambda i: len(tasks[i].cells))
        task = tasks[largest]
        if len(task.cells) < 2:
            break
        half = len(task.cells) // 2
        tasks[largest:largest + 1] = [replace(task, cells=task.cells[:half], configs=task.configs[:half]),
                                      replace(task, cells=task.cells[half:], configs=task.configs[half:])]
    return tasks


def _label(config) -> str:
    return f"{config.family}/{config.param}/{config.n_layer}x{config.d_model}"
