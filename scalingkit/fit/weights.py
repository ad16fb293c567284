"""Optional per-point weights from the losses' standard errors (`weights="se"`; `scalingkit fit --weights se`).

A point measured more precisely counts more: w_i proportional to 1 / var_i, normalised to mean 1 so the objective
keeps its size (and a 1-d fit's Huber delta its meaning in loss units). The 1-d forms fit the loss itself, so
var_i = se_i^2; the 2-d forms fit log L, whose standard error is se_i / L_i (delta method), so var_i = (se_i/L_i)^2.
Every refit of a weighted fit (multistart, bootstrap, jackknife, window, competing form, verdict) uses the same w.
"""
from __future__ import annotations

import numpy as np

from scalingkit.errors import UserError

WEIGHTS = ("none", "se")
SE_COLUMN = "loss_se"


def check_choice(name: str, weights) -> str:
    if weights not in WEIGHTS:
        raise UserError(f"{name}: weights must be one of {', '.join(WEIGHTS)}, not {weights!r}")
    return weights


def bad_count(se) -> int:
    """How many standard errors are missing (NaN), infinite, zero or negative."""
    se = np.asarray(se, dtype=float)
    return int(np.sum(~(np.isfinite(se) & (se > 0))))


def missing_message(bad: int, total: int, where: str = "the table's loss_se") -> str:
    return (f"--weights se needs a positive standard error for every point; {where} has {bad} missing/zero "
            f"(of {total}): use --weights none")


def check_table(df, what: str = "the table") -> None:
    """A table about to be fitted with weights="se": it has a loss_se column, positive and finite in every row."""
    if SE_COLUMN not in df.columns:
        raise UserError(f"--weights se needs the losses' standard errors (a {SE_COLUMN} column), which {what} lacks; "
                        "the cube has them, a CSV does not: use --weights none")
    bad = bad_count(df[SE_COLUMN].to_numpy(float))
    if bad:
        raise UserError(missing_message(bad, len(df)))


def from_se(name: str, se, n: int, loss=None) -> np.ndarray:
    """Weights (n,), mean 1, from standard errors `se` (one per point, or one number): 1/se^2, or 1/(se/loss)^2
    with `loss` given (the standard error of log loss). UserError where se is absent, missing or not positive."""
    if se is None:
        raise UserError(f"{name}: weights='se' needs the losses' standard errors (fit(..., se=...)); "
                        "--weights se takes them from the cube's loss_se")
    se = np.asarray(se, dtype=float)
    if se.ndim == 0:
        se = np.full(n, float(se))
    se = se.ravel()
    if se.size != n:
        raise UserError(f"{name}: se must be one number or one per point ({n}), got {se.size}")
    bad = bad_count(se)
    if bad:
        raise UserError(f"{name}: " + missing_message(bad, n, "se"))
    rel = se if loss is None else se / np.asarray(loss, dtype=float)
    w = 1.0 / rel**2
    return w / np.mean(w)
