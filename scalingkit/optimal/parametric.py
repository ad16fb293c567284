"""Chinchilla approach 3: the compute-optimal allocation in closed form from the fitted L = E + A/N^alpha + B/D^beta.

Minimising L along C = 6 N D (PAPER.md): N_opt = G (C/6)^a, D_opt = (C/6)^b / G, a = beta/(alpha+beta),
b = alpha/(alpha+beta), G = (alpha A / (beta B))^(1/(alpha+beta)); putting them back,
L_opt(C) = E + K C^-gamma with gamma = alpha beta/(alpha+beta) and K = (A G^-alpha + B G^beta) 6^gamma.
Intervals: every quantity is computed on each bootstrap draw of the fit (resampled runs, refitted from the
estimate, the same draws as `scalingkit fit --form chinchilla` with the same seed) and on the leave-one-out
jackknife, then BCa, as the fits do.
"""
from __future__ import annotations

import numpy as np

from scalingkit.fit.resolved import exponent_unresolved
from scalingkit.optimal.inputs import Inputs
from scalingkit.optimal.result import OptimalResult, failed


def closed_form(P: np.ndarray, budgets) -> np.ndarray:
    """Rows of (E, A, B, alpha, beta) -> rows of (gamma, E_C, K, a, b, kN, kD, then N_opt, D_opt, D/N per budget)."""
    P = np.atleast_2d(np.asarray(P, dtype=float))
    E, A, B, al, be = P.T
    with np.errstate(all="ignore"):
        s = al + be
        a, b = be / s, al / s
        G = np.exp(np.log(al * A / (be * B)) / s)
        gamma = al * be / s
        K = (A * G ** -al + B * G ** be) * 6.0 ** gamma
        kN, kD = G * 6.0 ** -a, 6.0 ** -b / G
        cols = [gamma, E, K, a, b, kN, kD]
        for c in np.atleast_1d(budgets):
            n, d = kN * c ** a, kD * c ** b
            cols += [n, d, d / n]
    return np.column_stack(cols)


def _draws(N, D, L, estimator, params: dict, counts: np.ndarray, workers):
    """The Chinchilla form refitted on each bootstrap draw (rows of counts) and on the leave-one-out jackknife.

    The fit package's own refits (form2d.bootstrap_refits, batched Newton with the per-draw fallback), so that draws
    match `fit --form chinchilla` and respect the same floor; its Estimator keeps only intervals at one budget, and
    we need the joint draws for any number of budgets. Returns (draws, jackknife) rows of (E, A, B, alpha, beta).
    """
    from scalingkit.fit import logfit
    from scalingkit.fit.form2d import bootstrap_refits

    form = estimator.form
    data = logfit.LogData.of(N, D, L)
    start = form.from_public(params)[None, :]
    draws, jack, _ = bootstrap_refits(form, data, {**estimator.settings, "workers": workers}, start, counts)
    return draws[:, :5], jack[:, :5]


def parametric(inputs: Inputs, budgets, *, bootstrap=200, seed=0, confidence=0.95, interval="bca",
               workers=None) -> OptimalResult:
    from scalingkit.fit import bootstrap as bs
    from scalingkit.fit.chinchilla import Chinchilla

    N, D, L = inputs.arrays()
    if len(L) < Chinchilla.min_points:
        return failed("parametric", f"{len(L)} runs; the Chinchilla fit needs {Chinchilla.min_points}",
                      n_points=len(L))
    estimator = Chinchilla(bootstrap=0, seed=seed, workers=workers, floor=inputs.offset_floor)
    fit = estimator.fit(N, D, L, label=inputs.label)
    diag = {"n_points": int(len(L)), "chinchilla": dict(fit.params), "chinchilla_objective": fit.objective}
    if not fit.converged:
        return failed("parametric", f"the Chinchilla fit failed: {fit.failure}", **diag)
    est = closed_form([fit.params[k] for k in ("E", "A", "B", "alpha", "beta")], budgets)[0]
    names = ["gamma", "E_C", "K", "a", "b", "kN", "kD"]
    params = dict(zip(names, map(float, est)))
    intervals = {}
    lo = hi = np.full(len(est), np.nan)
    if bootstrap:
        n = len(L)
        counts = np.stack([np.bincount(ix, minlength=n) for ix in bs.resample_indices(seed, int(bootstrap), n)])
        draw_params, jack_params = _draws(N, D, L, estimator, fit.params, counts.astype(float), workers)
        draws = closed_form(draw_params, budgets)
        alpha = 1 - confidence
        if interval == "bca":
            lo, hi = bs.bca_interval(est, draws, closed_form(jack_params, budgets), alpha)
        else:
            lo, hi = bs.percentile_interval(draws, alpha)
        intervals = {k: (float(lo[i]), float(hi[i])) for i, k in enumerate(names)}
        diag.update(interval_method=f"bootstrap over runs, {interval} ({int(bootstrap)} draws)",
                    bootstrap_failed=int(np.sum(~np.all(np.isfinite(draws), axis=1))))
        # the law's own exponents over the same draws: an alpha or beta whose interval reaches 0 is not pinned down
        # by the runs, and a, b, N_opt and D_opt all rest on it (fit/resolved.py reads the 2-d fits the same way)
        ends = bs.percentile_interval(draw_params[:, 3:5], alpha)
        diag["exponent_intervals"] = {k: (float(ends[0][i]), float(ends[1][i])) for i, k in enumerate(("alpha", "beta"))}
    unresolved = [k for k in ("alpha", "beta")
                  if exponent_unresolved(fit, k, diag.get("exponent_intervals", {}).get(k))]
    rows = []
    for j, c in enumerate(np.atleast_1d(budgets)):
        k = len(names) + 3 * j
        keys = ("N_opt", "D_opt", "tokens_per_param")
        rows.append({"C": float(c), "values": {key: float(est[k + i]) for i, key in enumerate(keys)},
                     "intervals": {key: (float(lo[k + i]), float(hi[k + i])) for i, key in enumerate(keys)}
                     if bootstrap else {}})
    p = fit.params
    diag["notes"] = list(fit.diagnostics.get("notes", [])) + [f"from E={p['E']:.4g}, A={p['A']:.4g}, B={p['B']:.4g}, alpha={p['alpha']:.4g}, "
                     f"beta={p['beta']:.4g}: a = beta/(alpha+beta), gamma = alpha beta/(alpha+beta)"]
    if unresolved:
        ivs = diag.get("exponent_intervals", {})
        diag["unresolved"] = unresolved
        diag["notes"].insert(0, " and ".join(f"{k} [{ivs[k][0]:.3g}, {ivs[k][1]:.3g}]" if k in ivs else k
                                             for k in unresolved)
                             + " not resolved (the 95% interval reaches 0 or the fit's bound, or the term moves the "
                               "loss over the sampled sizes by less than twice the residual RMS): a, b, N_opt and D_opt "
                               "rest on it, so this row is not an estimate")
    return OptimalResult("parametric", params=params, intervals=intervals, budgets=rows, diagnostics=diag)
