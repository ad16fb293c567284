"""Excess-loss fits: where the loss floor is exact, the exponent is the slope of log(L - floor) against log x.

With the floor known, L - floor = A x^-alpha is a straight line in log-log axes and the exponential alternative
L - floor = b exp(-c x) a straight line in (x, log(L - floor)): two 2-parameter linear fits, no offset to trade
against the exponent.

Both are robust weighted line fits: statsmodels RLM, Huber's T norm (tuning 1.345), on rows whitened by the
weights (L - floor)^2 / se^2 (se = 1 where the standard errors are not given). Noise of size s in L is noise of
size s / (L - floor) in log(L - floor) (delta method); unweighted, the points nearest the floor, whose logarithms
are the noisiest, pull the line, and the interval misses the exponent more often than it says.
The exponent's interval: RLM's covariance (its default H1 estimate) with a Student t quantile on n - 2 degrees of
freedom, the scale by Huber's proposal 2. Measured on 400 synthetic slices of 5, 6 and 8 points: RLM's default
MAD scale (biased low on so few points) covered the true exponent in 85-91% of 95% intervals, proposal 2 in
95-97%. mse_log_power and mse_log_exp are the lines' mean squared residuals in log(L - floor), with the same
weights normalised to average 1.

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


def _line(z, t, w):
    """Robust weighted line z = c0 + c1 t: (slope, its standard error, residuals); OLS where RLM's scale vanishes."""
    import statsmodels.api as sm  # imported here: statsmodels costs ~0.5 s, and only this fit needs it

    X = sm.add_constant(t, has_constant="add")
    sw = np.sqrt(w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sm.RLM(z * sw, X * sw[:, None], M=sm.robust.norms.HuberT()).fit(scale_est=sm.robust.scale.HuberScale())
    if not (np.isfinite(res.scale) and res.scale > 0 and np.all(np.isfinite(res.bse))):
        res = sm.WLS(z, X, weights=w).fit()  # points exactly on a line: no robust scale to divide by
    return float(res.params[1]), float(res.bse[1]), np.asarray(z - X @ res.params)


def fit_excess(x, y, floor: float, confidence: float = 0.95, se=None) -> dict:
    """The excess-loss power law and exponential of one slice (see the module docstring).

    Returns alpha (the exponent of L - floor in x), its interval, the exponential's rate c, the mean squared
    residuals of both lines in log(L - floor) (mse_log_power, mse_log_exp; < 1 ratio favours the power law),
    n_used and n_below_floor. Too few points above the floor: the counts and a note, estimates NaN.
    se: the losses' standard errors (a number or one per point) for the weights; None: equal in L.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    se = np.ones_like(y) if se is None else np.broadcast_to(np.asarray(se, dtype=float), y.shape)
    if x.shape != y.shape or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(x > 0)):
        raise UserError("excess-loss fit: x and loss must be finite arrays of one length, x positive")
    if not np.isfinite(floor):
        raise UserError(f"excess-loss fit: the loss floor must be a finite number, got {floor!r}")
    above = y > floor
    out = {"floor": float(floor), "n_used": int(above.sum()), "n_below_floor": int((~above).sum()),
           "alpha": np.nan, "interval": [np.nan, np.nan], "c": np.nan, "mse_log_power": np.nan,
           "mse_log_exp": np.nan,
           "interval_method": f"weighted RLM (HuberT, Huber scale) covariance, t(n-2) quantile, {confidence:g}"}
    x, excess = x[above], y[above] - floor
    if len(np.unique(x)) < MIN_POINTS:
        out["note"] = f"{len(np.unique(x))} distinct x above the floor; the excess-loss fit needs {MIN_POINTS}"
        return out
    z = np.log(excess)
    w = excess**2 / np.maximum(se[above], 1e-12) ** 2  # a zero standard error would be an infinite weight
    w = w / w.mean()
    slope, s_slope, r_pow = _line(z, np.log(x), w)
    x0 = float(np.median(x))
    rate, _, r_exp = _line(z, x / x0, w)
    q = float(stats.t.isf((1 - confidence) / 2, len(x) - 2))
    out.update(alpha=-slope, interval=[-slope - q * s_slope, -slope + q * s_slope], c=-rate / x0,
               mse_log_power=float(np.mean(w * r_pow**2)), mse_log_exp=float(np.mean(w * r_exp**2)))
    return out
