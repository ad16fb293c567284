"""Learning-rate search: per (family, param, N, D), train a few learning rates of the sweep's grid, then add the
neighbours of the best one until both are tried (the optimum is bracketed) or the best sits at an end of what the
search may try (a bound, reported), instead of training the whole grid. Past either end of the grid the search
steps on by the grid's own ratio at that end (grid ..., 0.1, 0.3 -> 0.9, 2.7; grid 3e-3, 1e-2, ... -> 9e-4,
2.7e-4), at most `beyond` steps, within lr_min and lr_max; those learning rates are added to the cube's lr labels
when the search first wants them.

    [lr_search]            # in a sweep file
    start = [1e-3, 3e-3]   # learning rates tried first, on grid.lrs (default: the three middle ones)
    max_rounds = 4         # neighbour additions per (family, param, N, D) before giving up (default: no limit)
    beyond = 2             # steps past each end of the grid (default 2; 0: stay on the grid)
    lr_max = 1.0           # optional hard limits on the steps past the grid
    lr_min = 1e-5

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

STATES = ("searching", "bracketed", "bracketed beyond the grid", "low bound", "high bound", "max rounds")
KEYS = {"start", "max_rounds", "beyond", "lr_min", "lr_max"}
DEFAULT_BEYOND = 2  # a factor-3 grid's top 0.3 reaches 2.7, its bottom a factor 9 lower: past any sane optimum
MAX_BEYOND = 10  # a factor-3 grid's step 10 times past an end is a factor 59,049: further means a wrong grid


@dataclass(frozen=True)
class Search:
    state: str  # one of STATES
    wanted: tuple[float, ...]  # learning rates to train, ascending (grid and beyond)
    best_lr: float | None  # None while searching
    rounds: int  # neighbour additions so far
    beyond: tuple[float, ...] = ()  # the wanted learning rates that lie past the grid's ends, ascending
    limit: str | None = None  # for a bound: what stops the search there ("grid", "beyond = 2", "lr_max = 1")


def default_start(grid: list[float]) -> list[float]:
    """The three middle learning rates of the grid (all of them if it has fewer)."""
    lrs = sorted(grid)
    mid = (len(lrs) - 1) // 2
    return lrs[max(0, mid - 1): mid + 2]


def tidy(x: float) -> float:
    """One canonical spelling of a learning rate (as the grid's: 12 significant digits)."""
    return float(f"{float(x):.12g}")


def steps_past(grid: list[float], beyond: int, lr_min: float | None = None, lr_max: float | None = None):
    """(below, above): the learning rates past the grid's ends, nearest first, each `beyond` steps at most by the
    ratio of the grid's two values at that end, and none past lr_min / lr_max. A grid of one value has no ratio."""
    lrs = sorted(grid)
    if beyond <= 0 or len(lrs) < 2:
        return [], []
    up, down = lrs[-1] / lrs[-2], lrs[1] / lrs[0]
    above = [tidy(lrs[-1] * up ** k) for k in range(1, beyond + 1)]
    below = [tidy(lrs[0] / down ** k) for k in range(1, beyond + 1)]
    if lr_max is not None:
        above = [x for x in above if x <= lr_max * (1 + 1e-9)]
    if lr_min is not None:
        below = [x for x in below if x >= lr_min * (1 - 1e-9)]
    return below, above


def past_grid(grid: list[float], spec: dict) -> list[float]:
    """Every learning rate past the grid that a search of this [lr_search] spec may try, ascending."""
    below, above = steps_past(grid, spec.get("beyond", 0), spec.get("lr_min"), spec.get("lr_max"))
    return below[::-1] + above


def validate(table, grid_lrs: list[float], where: str) -> dict | None:
    """The sweep's [lr_search] table, checked and with defaults filled in; None when the sweep has none."""
    if table is None:
        return None
    if not isinstance(table, dict):
        raise UserError(f"{where}: lr_search must be a table (start = [...], max_rounds = N, beyond = K)")
    unknown = set(table) - KEYS
    if unknown:
        raise UserError(f"{where}: unknown key lr_search.{sorted(unknown)[0]} (allowed: {', '.join(sorted(KEYS))})")
    start = table.get("start", default_start(grid_lrs))
    try:
        if not isinstance(start, list) or not start or any(isinstance(x, bool) for x in start):
            raise TypeError
        start = sorted({tidy(x) for x in start})
    except (TypeError, ValueError):
        raise UserError(f"{where}: lr_search.start must be a non-empty list of learning rates") from None
    off_grid = [x for x in start if not any(math.isclose(x, g, rel_tol=1e-9) for g in grid_lrs)]
    if off_grid:
        raise UserError(f"{where}: lr_search.start {off_grid[0]:g} is not in grid.lrs")
    out = {"start": [_on_grid(x, grid_lrs) for x in start]}
    top, bottom = max(grid_lrs), min(grid_lrs)
    beyond = table.get("beyond", DEFAULT_BEYOND if len(grid_lrs) > 1 else 0)
    if isinstance(beyond, bool) or not isinstance(beyond, int) or not 0 <= beyond <= MAX_BEYOND:
        raise UserError(f"{where}: lr_search.beyond must be a whole number from 0 to {MAX_BEYOND} (steps past each "
                        f"end of grid.lrs), got {beyond!r}")
    if beyond and len(grid_lrs) < 2:
        raise UserError(f"{where}: lr_search.beyond = {beyond} needs at least two grid.lrs (the step past an end is "
                        "the ratio of the grid's two values there)")
    for key, ok, must in (("lr_max", lambda v: v > top, f"above the grid's top learning rate {top:g}"),
                          ("lr_min", lambda v: 0 < v < bottom, f"positive and below the grid's lowest learning rate "
                                                               f"{bottom:g}")):
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not ok(value):
                raise UserError(f"{where}: lr_search.{key} must be a number {must}, got {value!r}")
            out[key] = tidy(value)
    out["beyond"] = beyond
    below, above = steps_past(grid_lrs, beyond, out.get("lr_min"), out.get("lr_max"))
    rounds = table.get("max_rounds", len(grid_lrs) + len(below) + len(above))  # enough to walk every lr it may try
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise UserError(f"{where}: lr_search.max_rounds must be a whole number >= 0, got {rounds!r}")
    out["max_rounds"] = rounds
    return {k: out[k] for k in ("start", "max_rounds", "beyond", "lr_min", "lr_max") if k in out}


def _on_grid(x: float, grid: list[float]) -> float:
    return min(grid, key=lambda g: abs(g - x))


def search(grid: list[float], start: list[float], loss: Callable[[float], float | None], max_rounds: int,
           beyond: int = 0, lr_min: float | None = None, lr_max: float | None = None) -> Search:
    """Replay the search from `start`. loss(lr): best final loss over seeds (inf if all diverged), or None while
    some seed of that lr has not finished (or the lr is not in the cube yet). beyond, lr_min, lr_max: how far past
    the grid's ends the search may step (steps_past); 0 keeps it on the grid."""
    grid = sorted(grid)
    below, above = steps_past(grid, beyond, lr_min, lr_max)
    lrs = below[::-1] + grid + above
    off = set(below) | set(above)
    wanted, rounds = set(start), 0
    while True:
        tried = sorted(wanted)
        past = tuple(lr for lr in tried if lr in off)
        losses = [loss(lr) for lr in tried]
        if any(v is None for v in losses):
            return Search("searching", tuple(tried), None, rounds, past)
        best = tried[int(np.argmin(losses))]  # ties: the smallest learning rate
        at = lrs.index(best)
        need = [lrs[j] for j in (at - 1, at + 1) if 0 <= j < len(lrs) and lrs[j] not in wanted]
        if not need:
            if at == 0:
                return Search("low bound", tuple(tried), best, rounds, past,
                              _limit(beyond, len(below), "lr_min", lr_min, len(grid)))
            if at == len(lrs) - 1:
                return Search("high bound", tuple(tried), best, rounds, past,
                              _limit(beyond, len(above), "lr_max", lr_max, len(grid)))
            state = "bracketed beyond the grid" if best in off else "bracketed"
            return Search(state, tuple(tried), best, rounds, past)
        if rounds >= max_rounds:
            return Search("max rounds", tuple(tried), best, rounds, past)
        wanted.update(need)
        rounds += 1


def _limit(beyond: int, steps: int, key: str, value: float | None, grid_size: int) -> str:
    """What ends the learning rates the search may try at one end: the grid itself, `beyond` or a hard limit."""
    if beyond == 0 or grid_size < 2:
        return "grid"
    if steps < beyond:
        return f"{key} = {value:g}"
    return f"beyond = {beyond}"


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


def search_block(grid: list[float], lrs: list[float], spec: dict, codes: np.ndarray, losses: np.ndarray, done: int,
                 diverged: int):
    """One sweep's block of the cube, axes (..., lr, seed), lrs the block's learning rates (the grid in the sweep's
    order, then those past the grid that the cube holds): (wanted mask of the same shape, array of Search over the
    leading axes). A wanted learning rate the cube does not hold yet is in its Search, not in the mask."""
    wanted = np.zeros(codes.shape, dtype=bool)
    searches = np.empty(codes.shape[:-2], dtype=object)
    position = {lr: i for i, lr in enumerate(lrs)}
    for group in np.ndindex(*codes.shape[:-2]):
        per_lr = dict(zip(lrs, lr_losses(codes[group], losses[group], done, diverged)))
        result = search(grid, spec["start"], per_lr.get, spec["max_rounds"], spec.get("beyond", 0),
                        spec.get("lr_min"), spec.get("lr_max"))
        searches[group] = result
        for lr in result.wanted:
            if lr in position:
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
