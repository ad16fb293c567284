"""A fitted offset against the family's loss floor, where the floor is known.

PAPER.md: the entropy rate of a walk is known exactly, and no model's expected loss can go below the entropy of
its data. A fitted offset (E of L = E + ..., E_C of L_opt(C)) below that floor is not a loss the runs point to:
they end far from it, or they flatten out above it and the fit reads the bend as a power law with a large exponent.
The fit is still reported (it may describe the sampled range well), with a note that its offset, and the exponents
that come with it, are not identified as the limiting behaviour.

The 1-d fits can do better where the floor is exact: fit_slices(..., floors=...) bounds the offset by it (or fixes
it there) before fitting (curve1d.py), so their offsets never fall below it; these notes remain for estimated
floors, for the 2-d forms and the compute-optimal laws, and for callers that fit unbounded.
"""
from __future__ import annotations

import math

OFFSETS = ("E", "E_C")
KINDS = ("exact", "estimate", "unknown")  # how a family's floor is known (store.family_entropy)
# How far below the floor an offset may sit before it is flagged: rounding for an exact floor, the sampling
# error of a Monte Carlo estimate (TnL generators' mean next-token entropy) for an estimated one.
TOLERANCE = {"exact": 0.005, "estimate": 0.02}


def offset_notes(params: dict, intervals: dict, floor: float, kind: str) -> list[str]:
    """Notes on every offset in `params` below `floor` (kind: exact or estimate; unknown floors give none)."""
    if kind not in TOLERANCE or not math.isfinite(floor):
        return []
    notes = []
    for name in OFFSETS:
        value = params.get(name)
        if value is None or not math.isfinite(value) or value >= floor * (1 - TOLERANCE[kind]):
            continue
        iv = intervals.get(name)
        where = "" if iv is None else (f", and its interval [{iv[0]:.4g}, {iv[1]:.4g}] "
                                       + ("excludes it" if iv[1] < floor else "reaches it"))
        notes.append(f"{name} = {value:.4g} is below the family's {kind} loss floor (entropy) {floor:.4g}{where}: "
                     "the runs do not identify the offset, and the exponents fitted with it describe the sampled "
                     "range, not the limit")
    return notes


def note_floors(results, floors: dict) -> None:
    """Add floor notes (diagnostics["notes"]) and the floor itself to every converged fit whose group's family has
    a known floor. `floors`: family -> (floor, kind), from store.family_floors."""
    for r in results:
        family = r.provenance.get("group", {}).get("family")
        if not r.converged or family not in floors:
            continue
        floor, kind = floors[family]
        if not math.isfinite(floor):
            continue
        r.diagnostics.update(loss_floor=floor, loss_floor_kind=kind)
        have = r.diagnostics.get("notes", [])
        notes = [n for n in offset_notes(r.params, r.intervals, floor, kind) if n not in have]
        if notes:  # a second call (fit_slices, then the command line) adds nothing twice
            r.diagnostics.setdefault("notes", []).extend(notes)
