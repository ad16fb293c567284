"""The 1-d fits of a table: L(N)_D at every fixed D and L(D)_N at every fixed N, with summary exponents.

PAPER.md: the summaries are the mean and spread of the exponents across the fixed variable; each fit carries
its MSE ratio against the exponential alternative and its window sensitivity.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from scalingkit.errors import UserError
from scalingkit.fit.exponential import Exponential
from scalingkit.fit.powerlaw import PowerLaw
from scalingkit.fit.provenance import provenance
from scalingkit.fit.results import FitCollection, summarise

ESTIMATORS = {"powerlaw": PowerLaw, "exponential": Exponential}
# Parameter names per axis: L(N) = E + A N^-alpha, L(D) = E + B D^-beta (PAPER.md).
NAMES = {"powerlaw": {"N": ("E", "A", "alpha"), "D": ("E", "B", "beta")},
         "exponential": {"N": ("a", "b", "c"), "D": ("a", "b", "c")}}
GROUP_COLUMNS = ("family", "param")


def _group_label(keys: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in keys.items())


def fit_slices(table: pd.DataFrame, form: str = "powerlaw", axes=("N", "D"), group_cols=None,
               **settings) -> FitCollection:
    """Fit `form` along each axis in `axes` at every fixed value of the other axis, per group.

    `table` has columns N and/or D and loss (plus optional group columns). With only one of N, D present the
    whole table (per group) is one fit along it. Slices with too few distinct points are skipped (listed).
    """
    if form not in ESTIMATORS:
        raise UserError(f"unknown 1-d form {form!r} (choose from {', '.join(ESTIMATORS)})")
    cls = ESTIMATORS[form]
    group_cols = [c for c in (GROUP_COLUMNS if group_cols is None else group_cols) if c in table.columns]
    present = [a for a in axes if a in table.columns]
    if not present:
        raise UserError(f"{form}: the table has neither an N nor a D column")
    results, summary, skipped = [], {}, []
    groups = table.groupby(group_cols, sort=True) if group_cols else [((), table)]
    for key, g in groups:
        keys = dict(zip(group_cols, key if isinstance(key, tuple) else (key,)))
        for axis in present:
            other = "D" if axis == "N" else "N"
            slices = g.groupby(other, sort=True) if other in g.columns else [(None, g)]
            names = NAMES[form][axis]
            exps, ratios = [], []
            for fixed, s in slices:
                s = s.sort_values(axis)
                label = _group_label({**keys, **({other: f"{fixed:.4g}"} if fixed is not None else {})})
                if s[axis].nunique() < cls.min_points or len(s) < cls.min_points:
                    skipped.append(f"L({axis}) at {label or 'all'}: {s[axis].nunique()} distinct {axis}")
                    continue
                est = cls(names=names, **settings)
                r = est.fit(s[axis].to_numpy(float), s["loss"].to_numpy(float), label=f"L({axis}) {label}".strip())
                r.provenance["axis"] = axis
                r.provenance["fixed"] = {other: float(fixed)} if fixed is not None else {}
                r.provenance["group"] = keys
                results.append(r)
                if r.converged:
                    exps.append(r.params[names[2]])
                    ratios.append(r.diagnostics.get("mse_ratio_power_vs_exp", np.nan))
            if exps:
                gl = _group_label(keys)
                summary[f"{names[2]} over {other}" + (f" [{gl}]" if gl else "")] = {
                    **summarise(exps),
                    "power_beats_exp": int(np.sum(np.asarray(ratios, float) < 1)),
                    "median_mse_ratio_power_vs_exp": float(np.nanmedian(ratios)) if ratios else np.nan,
                }
    if not results:
        raise UserError(f"too few points for {form}: no slice has {cls.min_points} distinct values "
                        f"({'; '.join(skipped[:3])}{'; ...' if len(skipped) > 3 else ''})")
    if skipped:
        summary["skipped"] = f"{len(skipped)} slice(s) with fewer than {cls.min_points} points"
    cols = {c: table[c].to_numpy() for c in table.columns if c in (*group_cols, "N", "D", "loss")}
    prov = provenance(form, "1-d slices", {**cls(**settings).get_settings(), "axes": list(present)}, cols)
    return FitCollection(form, results, summary, prov)
