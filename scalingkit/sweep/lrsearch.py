"""Learning-rate search: per (family, param, N, D), train a few learning rates of the sweep's grid, then add the
grid neighbours of the best one until both are tried (the optimum is bracketed) or the best sits at an end of the
grid (a bound, reported), instead of training the whole grid.

    [lr_search]            # in a sweep file; the grid's lrs stay the cube's lr labels
    start = [1e-3, 3e-3]   # learning rates tried first, on grid.lrs (default: the three middle ones)
    max_rounds = 4         # neighbour additions per (family, param, N, D) before giving up (default: no limit)

The search keeps no state of its own: which learning rates a group wants follows from the results in the cube
(replaying the rounds from `start`), so `train --fill-missing` and `status` agree, a killed run resumes, and the
cube alone says what was searched. Every wanted learning rate is trained for every seed of the sweep; its loss is
the best final evaluation loss over the seeds, a diverged run counting as infinitely bad.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from scalingkit.errors import UserError

STATES = ("searching", "bracketed", "low bound", "high bound", "max rounds")
KEYS = {"start", "max_rounds"}


@dataclass(frozen=True)
class Search:
    state: str  # one of STATES
    wanted: tuple[float, ...]  # learning rates to train, ascending
    best_lr: float | None  # None while searching
    rounds: int  # neighbour additions so far


def default_start(grid: list[float]) -> list[float]:
    """The three middle learning rates of the grid (all of them if it has fewer)."""
    lrs = sorted(grid)
    mid = (len(lrs) - 1) // 2
    return lrs[max(0, mid - 1): mid + 2]


def validate(table, grid_lrs: list[float], where: str) -> dict | None:
    """The sweep's [lr_search] table, checked and with defaults filled in; None when the sweep has none."""
    if table is None:
        return None
    if not isinstance(table, dict):
        raise UserError(f"{where}: lr_search must be a table (start = [...], max_rounds = N)")
    unknown = set(table) - KEYS
    if unknown:
        raise UserError(f"{where}: unknown key lr_search.{sorted(unknown)[0]} (allowed: {', '.join(sorted(KEYS))})")
    start = table.get("start", default_start(grid_lrs))
    try:
        if not isinstance(start, list) or not start or any(isinstance(x, bool) for x in start):
            raise TypeError
        start = sorted({float(f"{float(x):.12g}") for x in start})
    except (TypeError, ValueError):
        raise UserError(f"{where}: lr_search.start must be a non-empty list of learning rates") from None
    off_grid = [x for x in start if not any(math.isclose(x, g, rel_tol=1e-9) for g in grid_lrs)]
    if off_grid:
        raise UserError(f"{where}: lr_search.start {off_grid[0]:g} is not in grid.lrs")
    rounds = table.get("max_rounds", len(grid_lrs))
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise UserError(f"{where}: lr_search.max_rounds must be a whole number >= 0, got {rounds!r}")
    return {"start": [_on_grid(x, grid_lrs) for x in start], "max_rounds": rounds}


def _on_grid(x: float, grid: list[float]) -> float:
    return min(grid, key=lambda g: abs(g - x))


def search(grid: list[float], start: list[float], loss: Callable[[float], float | None], max_rounds: int) -> Search:
    """Replay the search from `start`. loss(lr): best final loss over seeds (inf if all diverged), or None while
    some seed of that lr has not finished."""
    grid = sorted(grid)
    wanted, rounds = set(start), 0
    while True:
        tried = sorted(wanted)
        losses = [loss(lr) for lr in tried]
        if any(v is None for v in losses):
            return Search("searching", tuple(tried), None, rounds)
        best = tried[int(np.argmin(losses))]  # ties: the smallest learning rate
        at = grid.index(best)
        need = [grid[j] for j in (at - 1, at + 1) if 0 <= j < len(grid) and grid[j] not in wanted]
        if not need:
            state = "low bound" if at == 0 else "high bound" if at == len(grid) - 1 else "bracketed"
            return Search(state, tuple(tried), best, rounds)
        if rounds >= max_rounds:
            return Search("max rounds", tuple(tried), best, rounds)
        wanted.update(need)
        rounds += 1


def lr_losses(codes: np.ndarray, losses: np.ndarray, done: int, diverged: int) -> list[float | None]:
    """Per learning rate (rows) from its seeds (columns): min final loss, inf if every finished seed diverged,
    None while a seed has not finished (missing or failed)."""
    out = []
    for c, l in zip(codes, losses):
        if not np.isin(c, (done, diverged)).all():
            out.append(None)
        else:
            finite = l[(c == done) & np.isfinite(l)]
            out.append(float(finite.min()) if finite.size else math.inf)
    return out


def search_block(lrs: list[float], spec: dict, codes: np.ndarray, losses: np.ndarray, done: int, diverged: int):
    """One sweep's block of the cube, axes (..., lr, seed) with lrs in the sweep's order: (wanted mask of the same
    shape, array of Search over the leading axes)."""
    wanted = np.zeros(codes.shape, dtype=bool)
    searches = np.empty(codes.shape[:-2], dtype=object)
    position = {lr: i for i, lr in enumerate(lrs)}
    for group in np.ndindex(*codes.shape[:-2]):
        per_lr = dict(zip(lrs, lr_losses(codes[group], losses[group], done, diverged)))
        result = search(lrs, spec["start"], per_lr.__getitem__, spec["max_rounds"])
        searches[group] = result
        for lr in result.wanted:
            wanted[group + (position[lr],)] = True
    return wanted, searches


def bracket(lrs: list[float], per_lr: list[float | None]) -> tuple[str, float | None]:
    """For a grid trained without search: is the best finished learning rate bracketed by finished neighbours?
    ('bracketed' | 'low bound' | 'high bound' | 'open' (a neighbour not finished) | 'none' (nothing finished))."""
    order = np.argsort(lrs)
    lrs = [lrs[i] for i in order]
    per_lr = [per_lr[i] for i in order]
    tried = [i for i, v in enumerate(per_lr) if v is not None]
    if not tried:
        return "none", None
    at = min(tried, key=lambda i: per_lr[i])
    if at == 0:
        return "low bound", lrs[at]
    if at == len(lrs) - 1:
        return "high bound", lrs[at]
    if per_lr[at - 1] is None or per_lr[at + 1] is None:
        return "open", lrs[at]
    return "bracketed", lrs[at]
