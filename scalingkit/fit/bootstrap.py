"""Generic bootstrap pieces: resampling draws and confidence intervals (percentile, BCa).

These know nothing about scaling laws, so the compute-optimal code reuses them. All draws are generated up
front from one seed, so a result does not depend on how many worker processes later share the refits.

BCa is written here rather than taken from scipy.stats.bootstrap because scipy's version resamples the data
itself and offers no wild (residual-sign) bootstrap; we only need its interval formula (Efron 1987).
"""
from __future__ import annotations

import numpy as np
from scipy import stats


def rng_from(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def wild_signs(seed, n_draws: int, n: int) -> np.ndarray:
    """Rademacher signs (+1/-1 with probability 1/2), shape (n_draws, n), for a fixed-x wild bootstrap."""
    return rng_from(seed).choice(np.array([-1.0, 1.0]), size=(n_draws, n))


def resample_indices(seed, n_draws: int, n: int) -> np.ndarray:
    """Row indices drawn with replacement, shape (n_draws, n): the bootstrap over runs (pairs bootstrap)."""
    return rng_from(seed).integers(0, n, size=(n_draws, n))


def _finite_columns(draws: np.ndarray) -> np.ndarray:
    draws = np.asarray(draws, dtype=float)
    return draws[:, None] if draws.ndim == 1 else draws


def percentile_interval(boot_draws, alpha: float = 0.05):
    """Equal-tailed percentile interval. `boot_draws` is (B,) or (B, k); non-finite draws are ignored."""
    draws = _finite_columns(boot_draws)
    lo, hi = [], []
    for col in draws.T:
        col = col[np.isfinite(col)]
        if col.size < 2:
            lo.append(np.nan), hi.append(np.nan)
            continue
        q = np.quantile(col, [alpha / 2, 1 - alpha / 2])
        lo.append(q[0]), hi.append(q[1])
    return _shape_like(boot_draws, lo, hi)


def bca_interval(theta_hat, boot_draws, jackknife_values, alpha: float = 0.05):
    """Bias-corrected and accelerated interval (Efron 1987).

    theta_hat: estimate(s), scalar or (k,); boot_draws: (B,) or (B, k); jackknife_values: leave-one-out
    estimates, (n,) or (n, k). Bias z0 comes from the share of draws below the estimate (ties count half),
    acceleration from the jackknife skewness. Falls back to the percentile interval where either is undefined.
    """
    draws = _finite_columns(boot_draws)
    jack = _finite_columns(jackknife_values)
    theta = np.atleast_1d(np.asarray(theta_hat, dtype=float))
    z = stats.norm.ppf([alpha / 2, 1 - alpha / 2])
    lo, hi = [], []
    for j in range(draws.shape[1]):
        col = draws[:, j][np.isfinite(draws[:, j])]
        jk = jack[:, j][np.isfinite(jack[:, j])]
        if col.size < 2:
            lo.append(np.nan), hi.append(np.nan)
            continue
        share = (np.sum(col < theta[j]) + 0.5 * np.sum(col == theta[j])) / col.size
        share = np.clip(share, 0.5 / col.size, 1 - 0.5 / col.size)  # keep z0 finite
        z0 = stats.norm.ppf(share)
        # a parameter the data do not pin (A ~ 1e11 on a flat axis) can overflow the jackknife's moments: the
        # levels are then not finite and the percentile levels below are used, with no warning on the terminal
        with np.errstate(over="ignore", invalid="ignore"):
            d = jk.mean() - jk if jk.size >= 3 else np.zeros(1)
            denom = 6.0 * np.sum(d**2) ** 1.5
            a = np.sum(d**3) / denom if denom > 0 else 0.0
            levels = stats.norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))
        if not np.all(np.isfinite(levels)):
            levels = np.array([alpha / 2, 1 - alpha / 2])
        q = np.quantile(col, levels)
        lo.append(q[0]), hi.append(q[1])
    return _shape_like(boot_draws, lo, hi)


def _shape_like(boot_draws, lo, hi):
    if np.ndim(boot_draws) == 1:
        return float(lo[0]), float(hi[0])
    return np.array(lo), np.array(hi)


def standard_error(boot_draws) -> np.ndarray | float:
    draws = _finite_columns(boot_draws)
    # an unidentified amplitude can draw values near 1e300 whose squares overflow: its s.e. is then inf, silently
    with np.errstate(over="ignore", invalid="ignore"):
        se = np.array([np.std(c[np.isfinite(c)], ddof=1) if np.sum(np.isfinite(c)) > 1 else np.nan
                       for c in draws.T])
    enough = np.isfinite(draws).sum(axis=0) > 1
    se[enough & np.isnan(se)] = np.inf  # inf - inf inside std: the spread is beyond float range, not unknown
    return float(se[0]) if np.ndim(boot_draws) == 1 else se


def record_intervals(result, names: list, estimate, draws, jackknife, confidence: float, interval: str) -> None:
    """Percentile and BCa intervals of `names` from bootstrap draws over runs (and the jackknife for BCa), stored on
    `result`: the chosen kind as its intervals, both in its diagnostics, with standard errors and failed draws."""
    alpha = 1 - confidence
    plo, phi = percentile_interval(draws, alpha)
    blo, bhi = bca_interval(np.asarray(estimate, dtype=float), draws, jackknife, alpha)
    pct = {k: (float(a), float(b)) for k, a, b in zip(names, plo, phi)}
    bca = {k: (float(a), float(b)) for k, a, b in zip(names, blo, bhi)}
    result.intervals = bca if interval == "bca" else pct
    result.diagnostics.update(
        interval_method=f"bootstrap over runs, {interval}", bootstrap_draws=int(len(draws)),
        bootstrap_failed=int(np.sum(~np.all(np.isfinite(draws), axis=1))),
        jackknife_failed=int(np.sum(~np.all(np.isfinite(jackknife), axis=1))),
        **{f"se_{k}": float(v) for k, v in zip(names, standard_error(draws))},
        intervals_percentile=pct, intervals_bca=bca,
    )
