"""From compute-optimal points (C, N_opt, D_opt, L_opt) to the laws and their intervals (PAPER.md).

- L_opt(C) = E_C + K C^-gamma by the 1-d Huber procedure of the fits (scalingkit.fit.PowerLaw: 40 starts,
  fixed-x wild bootstrap, BCa), with the paper's 200 draws for compute-optimal fits by default;
- log N_opt and log D_opt regressed on log C by OLS (statsmodels), t intervals for a, b and the intercepts;
  N_opt, D_opt and D/N at a budget are the regression's mean predictions with their confidence intervals
  (D/N by its own regression of log(D/N) on log C, so its interval is not a ratio of two intervals).
  Where the caller has bootstrap draws of the three lines (a bootstrap over runs: the envelope's points are
  correlated, the IsoFLOP optima move together with the runs, a surrogate's are minima of one fitted surface,
  so OLS t intervals on them are too narrow), their percentile intervals replace the OLS ones; the estimates
  stay OLS. `lines_over_runs` draws them for a method that recomputes its optima from resampled runs, and
  `draws_or_ols` records what the draws gave. Such draws also refit gamma on each draw's L_opt points, and that
  percentile interval replaces the wild bootstrap's (which treats the optima as independent points).

Envelope, IsoFLOP and surrogate optima all go through here, so their numbers are comparable; the parametric
method has its own (closed form, bootstrap over runs).
"""
from __future__ import annotations

import numpy as np

from scalingkit.optimal.result import OptimalResult

MIN_GAMMA_POINTS = 4  # the power law with offset has three parameters
MIN_LINE_POINTS = 3  # a line with a residual degree of freedom


def fit_gamma(C, L, *, bootstrap: int, seed, confidence: float, workers=None, floor=None):
    """L_opt = E_C + K C^-gamma: (params, intervals, diagnostics) or a failure message in diagnostics. floor: an
    exact loss floor, E_C's lower bound (no compute-optimal loss can go below what no model can reach)."""
    from scalingkit.fit.powerlaw import PowerLaw

    if len(C) < MIN_GAMMA_POINTS or len(np.unique(C)) < MIN_GAMMA_POINTS:
        return {}, {}, {"gamma_failure": f"{len(C)} point(s); L_opt(C) needs {MIN_GAMMA_POINTS}"}
    est = PowerLaw(names=("E_C", "K", "gamma"), bootstrap=int(bootstrap), seed=seed, confidence=confidence,
                   workers=workers, window=False, alternative=False, floor=floor)
    res = est.fit(C, L)
    if not res.converged:
        return {}, {}, {"gamma_failure": res.failure}
    diag = {"gamma_mse": res.diagnostics.get("mse")}
    iv = res.intervals.get("gamma")
    if iv is not None and not iv[0] <= res.params["gamma"] <= iv[1]:
        # BCa on a handful of points can put every draw on one side of the estimate; say so, do not hide it
        diag["gamma_note"] = (f"the bootstrap interval of gamma excludes the estimate ({len(C)} points are too few "
                              "for the wild bootstrap to be trusted)")
    if res.diagnostics.get("at_bound"):
        diag["gamma_at_bound"] = ",".join(res.diagnostics["at_bound"])
    diag["notes"] = list(res.diagnostics.get("notes", []))  # E_C on the floor bound says so
    return dict(res.params), dict(res.intervals), diag


def fit_line(logC, logY, budgets_logC, confidence: float):
    """OLS log Y = c + s log C: slope, intercept, their intervals, and exp(mean prediction) at the budgets."""
    import statsmodels.api as sm

    X = sm.add_constant(logC, has_constant="add")
    res = sm.OLS(logY, X).fit()
    with np.errstate(divide="ignore", invalid="ignore"):  # a constant log Y (one distinct N): R^2 is undefined
        r2 = float(res.rsquared)
    alpha = 1 - confidence
    ci = np.asarray(res.conf_int(alpha))
    Xb = sm.add_constant(np.asarray(budgets_logC, dtype=float), has_constant="add")
    pred = res.get_prediction(Xb)
    band = np.asarray(pred.conf_int(alpha=alpha))
    return {
        "slope": float(res.params[1]), "slope_ci": (float(ci[1, 0]), float(ci[1, 1])),
        "k": float(np.exp(res.params[0])), "k_ci": (float(np.exp(ci[0, 0])), float(np.exp(ci[0, 1]))),
        "at": np.exp(pred.predicted_mean), "at_ci": np.exp(band), "r2": r2,
    }


def line_intervals(coefs, budgets_logC, confidence: float) -> dict:
    """Percentile intervals from draws of one line's (intercept, slope), shape (B, 2), in fit_line's keys."""
    from scalingkit.fit.bootstrap import percentile_interval

    coefs = np.asarray(coefs, dtype=float)
    at = coefs[:, :1] + coefs[:, 1:] * np.atleast_1d(np.asarray(budgets_logC, dtype=float))[None, :]
    lo, hi = percentile_interval(np.column_stack([coefs, at]), 1 - confidence)
    # exp is monotone: the percentiles of k and of the line at a budget are exp of those of their logs
    return {"slope_ci": (float(lo[1]), float(hi[1])), "k_ci": (float(np.exp(lo[0])), float(np.exp(hi[0]))),
            "at_ci": np.exp(np.column_stack([lo[2:], hi[2:]]))}


def line_coefs(C, N, D):
    """(intercept, slope) of log N, log D and log(D/N) on log C, shape (3, 2); None where the points cannot fix
    a line (fewer than MIN_LINE_POINTS, or one compute)."""
    x = np.log(np.asarray(C, dtype=float))
    if len(x) < MIN_LINE_POINTS or np.ptp(x) == 0:
        return None
    N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
    Y = np.column_stack([np.log(N), np.log(D), np.log(D / N)])
    return np.polynomial.polynomial.polyfit(x, Y, 1).T  # three lines at once: rows (intercept, slope)


def gamma_on_draw(C, L, floor=None) -> float:
    """gamma of L_opt = E_C + K C^-gamma refitted on one bootstrap draw's optima (nan where it cannot be fitted).
    8 starts, not 40: a draw's points are a perturbation of the full data's, whose fit had all 40."""
    from scalingkit.fit.powerlaw import PowerLaw

    C, L = np.asarray(C, dtype=float), np.asarray(L, dtype=float)
    if len(np.unique(C)) < MIN_GAMMA_POINTS:
        return np.nan
    res = PowerLaw(names=("E_C", "K", "gamma"), starts=8, bootstrap=0, seed=0, window=False,
                   alternative=False, floor=floor).fit(C, L)
    return float(res.params["gamma"]) if res.converged else np.nan


def lines_over_runs(optima, n_runs: int, draws: int, seed, variants: int = 1, floor=None) -> list[tuple]:
    """Bootstrap over runs: per variant, (kept line draws (kept, 3, 2), how many draws were dropped, gamma of each
    kept draw (nan where its L_opt fit failed)).

    optima(runs) gets one draw's run indices (with repeats) and returns, per variant (e.g. the parabola and the
    Akima optima of one set of profiles), the (C, N, D, L) of the compute-optimal points it finds, or None where
    the method fails on that draw. The loop is by hand (not scipy.stats.bootstrap): a draw reruns a method and
    gives a different set of points rather than a statistic of resampled rows, and unusable draws must be
    dropped and counted, not averaged.
    """
    from scalingkit.fit.bootstrap import resample_indices

    kept = [([], []) for _ in range(variants)]
    for runs in resample_indices(seed, int(draws), int(n_runs)):
        for (coefs, gammas), pts in zip(kept, optima(runs)):
            c = None if pts is None else line_coefs(*pts[:3])
            if c is not None:
                coefs.append(c)
                gammas.append(gamma_on_draw(pts[0], pts[3], floor))
    return [(np.reshape(c, (-1, 3, 2)), int(draws) - len(c), np.asarray(g, dtype=float)) for c, g in kept]


def draws_or_ols(drawn, draws: int, diag: dict, notes: list, dropped_because: str, ols_caveat: str):
    """What `laws_from_points` gets from a bootstrap over runs: (line_draws or None, line_method, gamma_draws or None).

    drawn: (coefs, dropped, gammas) from the bootstrap, None when draws == 0 (or when it was not run). Records the
    counts in diag and says in notes what was dropped, and why the intervals are OLS where they are.
    """
    if drawn is None:
        if not draws:
            notes.append(f"bootstrap=0: a and b have OLS intervals, which {ols_caveat}")
        return None, None, None
    coefs, dropped, gammas = drawn
    diag.update(bootstrap_draws=int(draws), bootstrap_dropped=int(dropped))
    kept = f"{len(coefs)} draws" + (f", {dropped} of {int(draws)} dropped" if dropped else "")
    if dropped:
        notes.append(f"{dropped} of {int(draws)} bootstrap draws over runs {dropped_because} and were dropped")
    if len(coefs) < 2:
        notes.append(f"too few usable bootstrap draws over runs: a and b have OLS intervals, which {ols_caveat}")
        return None, None, None
    return coefs, f"bootstrap over runs ({kept}, percentile)", gammas


def open_gamma_ends(gamma_draws, alpha: float) -> dict:
    """Where more than alpha/2 of the refits of gamma ran to one of its fitting bounds, the percentile interval's
    end there is the bound, not an estimate: the runs do not bound gamma on that side. Say so (gamma_open: "above",
    "below" or both) rather than print the bound as if it were a limit the data set."""
    from scalingkit.fit.powerlaw import GAMMA_BOUNDS

    g = np.asarray(gamma_draws, dtype=float)
    g = g[np.isfinite(g)]
    if not len(g):
        return {}
    lo, hi = GAMMA_BOUNDS
    ends = {"below": (np.isclose(g, lo, atol=1e-6), lo), "above": (np.isclose(g, hi, rtol=1e-6), hi)}
    open_ends = {side: (int(at.sum()), bound) for side, (at, bound) in ends.items() if at.mean() > alpha / 2}
    if not open_ends:
        return {}
    said = "; ".join(f"{n} of {len(g)} refits ran to gamma's bound {bound:g}, so the runs do not bound it {side}"
                     for side, (n, bound) in open_ends.items())
    return {"gamma_open": ",".join(open_ends), "gamma_note": f"{said}: that end of its interval is the fitting "
            "bound, not an estimate (more budgets, or runs closer to each budget's optimum, would pin it)"}


def laws_from_points(method: str, C, N, D, L, budgets, *, bootstrap=200, seed=0, confidence=0.95,
                     workers=None, diagnostics=None, line_draws=None, line_method=None,
                     gamma_draws=None, floor=None) -> OptimalResult:
    """Fit gamma, a, b to compute-optimal points and evaluate N_opt, D_opt, D/N at the budgets.

    line_draws: optional (B, 3, 2) draws of (intercept, slope) of the log N, log D and log(D/N) lines; their
    percentile intervals replace the OLS t intervals of a, b, kN, kD and at the budgets, and `line_method`
    says how they were drawn (for interval_method).
    """
    C, N, D, L = (np.asarray(v, dtype=float) for v in (C, N, D, L))
    diag = dict(diagnostics or {})
    diag["n_points"] = int(len(C))
    points = {"C": C.tolist(), "N": N.tolist(), "D": D.tolist(), "L": L.tolist()}
    if len(C) < MIN_LINE_POINTS or np.ptp(np.log(C)) == 0:
        diag["failure"] = f"{len(C)} compute-optimal point(s); the laws need at least {MIN_LINE_POINTS}"
        return OptimalResult(method, points=points, diagnostics=diag, converged=False)
    if len(np.unique(N)) < 2:
        # every optimum at one size: N_opt does not move with C over the sampled range, so a and b are not
        # estimates (a line through one N has slope 0 by construction)
        diag["failure"] = (f"every compute-optimal point is at one N ({N[0]:.3g}): a and b are not identified over "
                           "the sampled sizes")
        return OptimalResult(method, points=points, diagnostics=diag, converged=False)
    gamma_draws = None if gamma_draws is None else np.asarray(gamma_draws, dtype=float)
    by_runs = gamma_draws is not None and np.isfinite(gamma_draws).sum() >= 2
    # with draws over runs, gamma's interval is theirs: no wild bootstrap of the (correlated) optima
    params, intervals, gdiag = fit_gamma(C, L, bootstrap=0 if by_runs else bootstrap, seed=seed,
                                         confidence=confidence, workers=workers, floor=floor)
    diag.setdefault("notes", []).extend(gdiag.pop("notes", []))
    gamma_label = f"gamma: wild bootstrap BCa ({int(bootstrap)} draws)"
    if by_runs and "gamma_failure" not in gdiag:
        from scalingkit.fit.bootstrap import percentile_interval

        lo, hi = percentile_interval(gamma_draws[:, None], 1 - confidence)
        intervals["gamma"] = (float(lo[0]), float(hi[0]))
        failed_fits = int((~np.isfinite(gamma_draws)).sum())
        gamma_label = (f"gamma: bootstrap over runs ({int(np.isfinite(gamma_draws).sum())} refits"
                       + (f", {failed_fits} failed" if failed_fits else "") + ", percentile)")
        gdiag.pop("gamma_note", None)  # that note is about the wild bootstrap's interval
        gdiag.update(open_gamma_ends(gamma_draws, 1 - confidence))
    diag.update(gdiag)
    if "gamma_note" in gdiag:
        diag.setdefault("notes", []).append(gdiag["gamma_note"])
    if "gamma_failure" in gdiag:
        params = {"gamma": np.nan, "E_C": np.nan, "K": np.nan}
        diag.setdefault("notes", []).append(f"L_opt(C) not fitted: {gdiag['gamma_failure']}")
    lc, lb = np.log(C), np.log(np.asarray(budgets, dtype=float))
    lines = {"N": fit_line(lc, np.log(N), lb, confidence), "D": fit_line(lc, np.log(D), lb, confidence),
             "ratio": fit_line(lc, np.log(D / N), lb, confidence)}
    line_label = "a, b, N_opt, D_opt: OLS t"  # (kN, kD and D/N too), as before for every method
    if line_draws is not None:
        for i, key in enumerate(("N", "D", "ratio")):
            lines[key].update(line_intervals(np.asarray(line_draws)[:, i], lb, confidence))
        line_label = ("a, b, kN, kD, N_opt, D_opt, tokens_per_param: "
                      + (line_method or f"bootstrap ({len(line_draws)} draws, percentile)"))
    params.update(a=lines["N"]["slope"], b=lines["D"]["slope"], kN=lines["N"]["k"], kD=lines["D"]["k"])
    intervals.update(a=lines["N"]["slope_ci"], b=lines["D"]["slope_ci"], kN=lines["N"]["k_ci"],
                     kD=lines["D"]["k_ci"])
    diag.update(r2_N=lines["N"]["r2"], r2_D=lines["D"]["r2"],
                interval_method=f"{gamma_label}; {line_label}")
    rows = []
    for i, c in enumerate(np.atleast_1d(budgets)):
        values, ivs = {}, {}
        for name, key in (("N_opt", "N"), ("D_opt", "D"), ("tokens_per_param", "ratio")):
            values[name] = float(lines[key]["at"][i])
            ivs[name] = (float(lines[key]["at_ci"][i, 0]), float(lines[key]["at_ci"][i, 1]))
        rows.append({"C": float(c), "values": values, "intervals": ivs})
    return OptimalResult(method, params=params, intervals=intervals, budgets=rows, points=points, diagnostics=diag)
