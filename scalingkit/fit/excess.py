"""Excess-loss fits: where the loss floor is exact, the exponent is the slope of log(L - floor) against log x.

With the floor known, L - floor = A x^-alpha is a straight line in log-log axes and the exponential alternative
L - floor = b exp(-c x) a straight line in (x, log(L - floor)): two 2-parameter linear fits, no offset to trade
against the exponent. Both are robust line fits (statsmodels RLM, Huber's T norm, its default tuning 1.345 on
the MAD scale). The exponent's interval comes from RLM's covariance (its default H1 estimate) with a Student t
quantile on n - 2 degrees of freedom (RLM's own conf_int uses the normal quantile, too narrow on 4 to 8 points).

Caveat (the physics): at a capacity-limited N, L(D)_N tends to E_N above the floor, so log(L - floor) flattens
at large D and the slope there understates the data exponent; the 3-parameter fits bounded by the floor
(Curve1D's `floor`) are the default, and this fit is reported beside them.
Points at or below the floor have no logarithm: they are left out and counted (n_below_floor).
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from scalingkit.errors import UserError

MIN_POINTS = 3  # a line and one degree of freedom


def _line(z, t):
    """Robust line z = c0 + c1 t: (slope, its standard error, residuals); OLS where RLM's scale vanishes."""
    import statsmodels.api as sm  # imported here: statsmodels costs ~0.5 s, and only this fit needs it

    X = sm.add_constant(t, has_constant="add")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sm.RLM(z, X, M=sm.robust.norms.HuberT()).fit()
    if not (np.isfinite(res.scale) and res.scale > 0 and np.all(np.isfinite(res.bse))):
        res = sm.OLS(z, X).fit()  # points exactly on a line: no robust scale to divide by
    return float(res.params[1]), float(res.bse[1]), np.asarray(z - X @ res.params)


def fit_excess(x, y, floor: float, confidence: float = 0.95) -> dict:
    """The excess-loss power law and exponential of one slice (see the module docstring).

    Returns alpha (the exponent of L - floor in x), its interval, the exponential's rate c, the mean squared
    residuals of both lines in log(L - floor) (mse_log_power, mse_log_exp; < 1 ratio favours the power law),
    n_used and n_below_floor. Too few points above the floor: the counts and a note, estimates NaN.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(x > 0)):
        raise UserError("excess-loss fit: x and loss must be finite arrays of one length, x positive")
    if not np.isfinite(floor):
        raise UserError(f"excess-loss fit: the loss floor must be a finite number, got {floor!r}")
    above = y > floor
    out = {"floor": float(floor), "n_used": int(above.sum()), "n_below_floor": int((~above).sum()),
           "alpha": np.nan, "interval": [np.nan, np.nan], "c": np.nan, "mse_log_power": np.nan,
           "mse_log_exp": np.nan, "interval_method": f"RLM (HuberT) covariance, t(n-2) quantile, {confidence:g}"}
    x, z = x[above], np.log(y[above] - floor)
    if len(np.unique(x)) < MIN_POINTS:
        out["note"] = f"{len(np.unique(x))} distinct x above the floor; the excess-loss fit needs {MIN_POINTS}"
        return out
    slope, se, r_pow = _line(z, np.log(x))
    x0 = float(np.median(x))
    rate, _, r_exp = _line(z, x / x0)
    q = float(stats.t.isf((1 - confidence) / 2, len(x) - 2))
    out.update(alpha=-slope, interval=[-slope - q * se, -slope + q * se], c=-rate / x0,
               mse_log_power=float(np.mean(r_pow**2)), mse_log_exp=float(np.mean(r_exp**2)))
    return out
