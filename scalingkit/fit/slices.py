"""The 1-d fits of a table: L(N)_D at every fixed D and L(D)_N at every fixed N, with summary exponents.

PAPER.md: the summaries are the mean and spread of the exponents across the fixed variable; each fit carries
its MSE ratio against the exponential alternative, its window sensitivity and its verdict (fit/verdict.py),
and the summaries count the slices by verdict.

Loss floors (`floors`: family -> (floor, kind), kind "exact", "estimate" or "unknown", as store.family_floors
gives them): where a family's floor is exact the offset is bounded below by it (offset="free", the default) or
fixed at it (offset="floor"), and the excess-loss fit log(L - floor) is added (fit/excess.py). An estimated
floor only adds notes where a fitted offset falls below it (fit/floor.py), as does an exact one.
A column `loss_se` (standard errors of the losses), where the table has one, goes to the verdict's transient test,
and with weights="se" (a setting of the estimators, fit/weights.py) weights every fit; then every row needs a
positive one.
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd

from scalingkit.errors import UserError
from scalingkit.fit.offset import OFFSETS
from scalingkit.fit.exponential import Exponential
from scalingkit.fit.floor import KINDS, note_floors
from scalingkit.fit.powerlaw import PowerLaw
from scalingkit.fit.provenance import provenance
from scalingkit.fit.results import FitCollection, summarise
from scalingkit.fit.verdict import RULE, VERDICTS
from scalingkit.fit.weights import check_table

ESTIMATORS = {"powerlaw": PowerLaw, "exponential": Exponential}
# Parameter names per axis: L(N) = E + A N^-alpha, L(D) = E + B D^-beta (PAPER.md).
NAMES = {"powerlaw": {"N": ("E", "A", "alpha"), "D": ("E", "B", "beta")},
         "exponential": {"N": ("a", "b", "c"), "D": ("a", "b", "c")}}
GROUP_COLUMNS = ("family", "param")
SE_COLUMN = "loss_se"


def _group_label(keys: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in keys.items())


def _check_floors(floors, offset, settings) -> dict:
    if offset not in OFFSETS:
        raise UserError(f"offset must be one of {', '.join(OFFSETS)}, not {offset!r}")
    if "floor" in settings:
        raise UserError("fit_slices takes loss floors per family (floors={family: (floor, kind)}), not floor=")
    floors = dict(floors or {})
    for family, value in floors.items():
        if not (isinstance(value, (tuple, list)) and len(value) == 2 and value[1] in KINDS):
            raise UserError(f"floors[{family!r}] must be (floor, kind) with kind one of {', '.join(KINDS)}, "
                            f"not {value!r}")
    return floors


def _exact_floor(floors: dict, family) -> float | None:
    floor, kind = floors.get(family, (math.nan, "unknown"))
    return float(floor) if kind == "exact" and math.isfinite(floor) else None


def fit_slices(table: pd.DataFrame, form: str = "powerlaw", axes=("N", "D"), group_cols=None, floors=None,
               offset: str = "free", **settings) -> FitCollection:
    """Fit `form` along each axis in `axes` at every fixed value of the other axis, per group.

    `table` has columns N and/or D and loss (plus optional group columns and loss_se). With only one of N, D
    present the whole table (per group) is one fit along it. Slices with too few distinct points are skipped
    (listed). floors/offset: see the module docstring; a family without an exact floor is fitted free, and
    with offset="floor" its slices say so in a note.
    """
    if form not in ESTIMATORS:
        raise UserError(f"unknown 1-d form {form!r} (choose from {', '.join(ESTIMATORS)})")
    floors = _check_floors(floors, offset, settings)
    if settings.get("weights", "none") == "se":
        check_table(table)
    cls = ESTIMATORS[form]
    group_cols = [c for c in (GROUP_COLUMNS if group_cols is None else group_cols) if c in table.columns]
    present = [a for a in axes if a in table.columns]
    if not present:
        raise UserError(f"{form}: the table has neither an N nor a D column")
    results, summary, skipped = [], {}, []
    groups = table.groupby(group_cols, sort=True) if group_cols else [((), table)]
    for key, g in groups:
        keys = dict(zip(group_cols, key if isinstance(key, tuple) else (key,)))
        floor = _exact_floor(floors, keys.get("family"))
        constraint = {"floor": floor, "offset": offset} if floor is not None else {}
        for axis in present:
            other = "D" if axis == "N" else "N"
            slices = g.groupby(other, sort=True) if other in g.columns else [(None, g)]
            names = NAMES[form][axis]
            fitted = []
            for fixed, s in slices:
                s = s.sort_values(axis)
                label = _group_label({**keys, **({other: f"{fixed:.4g}"} if fixed is not None else {})})
                if s[axis].nunique() < cls.min_points or len(s) < cls.min_points:
                    skipped.append(f"L({axis}) at {label or 'all'}: {s[axis].nunique()} distinct {axis}")
                    continue
                flat = s["loss"].to_numpy(float)
                if np.ptp(flat) <= 1e-12 * np.max(np.abs(flat)):  # fits E exactly, and any exponent with A = 0
                    skipped.append(f"L({axis}) at {label or 'all'}: the loss is {flat[0]:.6g} at every {axis} "
                                   "(not identifiable)")
                    continue
                est = cls(names=names, **constraint, **settings)
                se = s[SE_COLUMN].to_numpy(float) if SE_COLUMN in s.columns else None
                r = est.fit(s[axis].to_numpy(float), s["loss"].to_numpy(float),
                            se=se if se is not None and np.all(np.isfinite(se)) else None,
                            label=f"L({axis}) {label}".strip())
                r.provenance["axis"] = axis
                r.provenance["fixed"] = {other: float(fixed)} if fixed is not None else {}
                r.provenance["group"] = keys
                if offset == "floor" and floor is None and r.converged:
                    kind = floors.get(keys.get("family"), (math.nan, "unknown"))[1]
                    r.diagnostics.setdefault("notes", []).append(
                        f"offset='floor' asked, but this family's loss floor is {kind}, not exact: fitted free")
                results.append(r)
                if r.converged:
                    fitted.append(r)
            if fitted:
                gl = _group_label(keys)
                summary[f"{names[2]} over {other}" + (f" [{gl}]" if gl else "")] = _summary(fitted, names[2])
    if not results:
        flat = sum("not identifiable" in line for line in skipped)
        why = (f"no slice has {cls.min_points} distinct values" if not flat else
               "no slice can identify a law" if flat == len(skipped) else
               f"no slice has {cls.min_points} distinct values and a loss that varies")
        raise UserError(f"{'not identifiable' if flat == len(skipped) else 'too few points'} for {form}: {why} "
                        f"({'; '.join(skipped[:3])}{'; ...' if len(skipped) > 3 else ''})")
    if skipped:
        flat = sum("not identifiable" in line for line in skipped)
        summary["skipped"] = (f"{len(skipped) - flat} slice(s) with fewer than {cls.min_points} points" if not flat
                              else f"{len(skipped)} slice(s): {len(skipped) - flat} with fewer than "
                                   f"{cls.min_points} points, {flat} with a constant loss (not identifiable)")
    if any("verdict" in r.diagnostics for r in results):
        summary["verdict rule"] = RULE
    note_floors(results, floors)  # offsets below an estimated floor (or, unbounded, an exact one) get notes
    cols = {c: table[c].to_numpy() for c in table.columns if c in (*group_cols, "N", "D", "loss", SE_COLUMN)}
    prov = provenance(form, "1-d slices", {**cls(**settings).get_settings(), "axes": list(present),
                                           "offset": offset, "floors": floors}, cols)
    return FitCollection(form, results, summary, prov)


def _summary(fitted: list, exponent: str) -> dict:
    """Mean and spread of the exponents, the MSE-ratio count, slices by verdict, and the excess-loss exponents."""
    ratios = np.asarray([r.diagnostics.get("mse_ratio_power_vs_exp", np.nan) for r in fitted], float)
    out = {**summarise([r.params[exponent] for r in fitted]),
           "power_beats_exp": int(np.sum(ratios < 1)),
           "median_mse_ratio_power_vs_exp": float(np.nanmedian(ratios)) if np.isfinite(ratios).any() else np.nan}
    verdicts = [r.diagnostics["verdict"] for r in fitted if "verdict" in r.diagnostics]
    if verdicts:
        counts = Counter(v["verdict"] for v in verdicts)
        out["verdicts"] = {k: counts.get(k, 0) for k in VERDICTS}
        out["transient_flags"] = sum(bool(v.get("transient")) for v in verdicts)
        out["window_shift_beyond_interval"] = sum(bool(v.get("window_exceeds_interval")) for v in verdicts)
    excess = [r.diagnostics["excess"]["alpha"] for r in fitted if "excess" in r.diagnostics]
    if excess:
        out["excess_loss_exponent"] = summarise(excess)
    return out
