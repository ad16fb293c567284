"""The paper's method: minimise a fitted surrogate L^(N, D) along C = 6 N D on a dense log grid.

PAPER.md, "Compute-optimal curves": fit the MLP surrogate (and, here, the kernel one too) to L(N, D); on a grid
of 50 to 100 log-spaced points per axis between the data's min and max, minimise L^ along C = 6 N D both over
N (D = C / 6N) and over D (N = C / 6D): the two should agree, and how far they do not is reported. Where the
minimum sits at the end of the constraint's stretch inside the data box, the optimum has run off the grid:
that C is clipped (reported). L_opt(C), a and b then follow as for every method (laws.py).

Each grid minimum is refined by the parabola through it and its two neighbours (closed form): otherwise
N_opt moves in steps of the grid spacing and the regression of log N_opt on log C sees a staircase.

Intervals of a, b, kN, kD and at the budgets: the optima are a dense grid of minima of ONE fitted surface, so OLS
t intervals on them shrink with the grid density and say nothing about how uncertain the surface is. They come
instead from a bootstrap over runs (rows of the final-point table) with the surrogate refitted on each draw:
- kernel: affordable (a refit and its search take about 0.04 s, so 200 draws about 8 s on 100 runs). Each draw
  refits on the drawn rows, duplicates included (a duplicated row weighs twice, as in a pairs bootstrap), with
  the ridge and Huber delta held at the full fit's choice: a leave-one-out choice on a draw would see each
  duplicated run's twin and pick too little smoothing. The search uses the draw's data box and the same grid;
  draws whose refit fails or keeps fewer than 3 compute values are dropped and counted.
- mlp: not affordable (one fit takes 5-20 s, so 200 draws would take most of an hour): the estimates stay, and
  a, b, kN, kD and the budget values have no interval (a note says why) rather than a misleading OLS one.
gamma: for the kernel, refitted on each draw's minima (percentile interval); for the MLP, the wild bootstrap of
laws.py on the grid minima, which is about their scatter around the power law, not about the surrogate (a note
says so).
"""
from __future__ import annotations

import time

import numpy as np

from scalingkit.errors import UserError
from scalingkit.optimal.inputs import Inputs
from scalingkit.optimal.laws import MIN_LINE_POINTS, draws_or_ols, laws_from_points, lines_over_runs
from scalingkit.optimal.result import OptimalResult, failed

SURROGATES = ("mlp", "kernel")


def data_margin(values) -> float:
    """Half the median log spacing of the sampled values of one axis (0 with fewer than two).

    An optimum of the surrogate closer than this to an end of the constraint's stretch inside the data box is not
    bracketed by the data: the nearest sampled size past it lies outside the box, so the surface there is the
    smoother's own shape, not the runs'. Measured on the CPU pilots (benchmarks/RESULTS.md, "The N axis"): at high C
    the stretch inside the box shrinks to the corner (N_max, D_max), and minima 0.05 dex inside it pulled the kernel
    surrogate's a to 0.77 against 0.35-0.45 for every other method; the IsoFLOP method's rule is the same in
    spirit (a sampled size on both sides of the minimum)."""
    x = np.unique(np.log(np.asarray(values, dtype=float)))
    return 0.5 * float(np.median(np.diff(x))) if len(x) > 1 else 0.0


def _search(predict, axis: np.ndarray, C: np.ndarray, other_range, over: str, margin: float = 0.0):
    """Minimise along each C over `axis` (the N grid when over == "N", the D grid otherwise).

    Returns (log of the optimal axis value, minimum loss, interior?) per C; interior means at least `margin` (in
    log units) from both ends of the stretch of the constraint inside the box. One predict call for the whole
    (C, axis) table keeps the surrogate's work vectorised.
    """
    other = C[:, None] / (6.0 * axis[None, :])  # the other variable on the constraint
    valid = (other >= other_range[0] * (1 - 1e-9)) & (other <= other_range[1] * (1 + 1e-9))
    L = np.full(other.shape, np.nan)
    if valid.any():
        a = np.broadcast_to(axis[None, :], other.shape)[valid]
        L[valid] = predict(a, other[valid]) if over == "N" else predict(other[valid], a)
    x = np.log(axis)
    h = x[1] - x[0]
    best = np.nanargmin(np.where(valid, L, np.inf), axis=1)
    first = np.argmax(valid, axis=1)
    last = valid.shape[1] - 1 - np.argmax(valid[:, ::-1], axis=1)
    interior = valid.any(axis=1) & (best > first) & (best < last)
    interior &= (x[best] - x[first] >= margin) & (x[last] - x[best] >= margin)
    rows = np.arange(len(C))
    i = np.clip(best, 1, len(axis) - 2)
    l0, l1, l2 = L[rows, i - 1], L[rows, i], L[rows, i + 1]
    curv = l0 - 2 * l1 + l2
    with np.errstate(all="ignore"):
        shift = np.where(interior & (curv > 0), 0.5 * h * (l0 - l2) / curv, 0.0)
        value = np.where(interior & (curv > 0), l1 - (l0 - l2) ** 2 / (8 * curv), l1)
    return np.where(interior, x[i] + shift, x[best]), np.where(interior, value, L[rows, best]), interior


def minimise_along_compute(predict, N_range, D_range, grid: int = 100, n_compute: int | None = None,
                           margins: tuple[float, float] = (0.0, 0.0)) -> dict:
    """Optima over N and over D for C log-spaced over the data box, with what is clipped and how far they agree.
    margins: (over N, over D) in log units, how far inside its stretch an optimum must lie (data_margin)."""
    if grid < 5:
        raise UserError(f"the surrogate grid needs at least 5 points per axis, got {grid}")
    Ng = np.geomspace(*N_range, grid)
    Dg = np.geomspace(*D_range, grid)
    C = np.geomspace(6 * N_range[0] * D_range[0], 6 * N_range[1] * D_range[1], n_compute or grid)
    lnN, LN, inN = _search(predict, Ng, C, D_range, "N", margins[0])
    lnD, LD, inD = _search(predict, Dg, C, N_range, "D", margins[1])
    keep = inN & inD
    lnN_from_D = np.log(C / 6.0) - lnD
    gap = np.abs(lnN - lnN_from_D)[keep] / np.log(10)
    kept = np.flatnonzero(keep)
    out = {"C": C[keep], "N": np.exp(lnN[keep]), "L": LN[keep], "N_from_D": np.exp(lnN_from_D[keep]),
           "L_from_D": LD[keep], "n_compute": len(C), "kept": int(keep.sum()),
           "clipped_low": int(kept[0]) if len(kept) else len(C), "clipped_high": int(len(C) - 1 - kept[-1])
           if len(kept) else 0, "holes": int(kept[-1] - kept[0] + 1 - len(kept)) if len(kept) else 0,
           "disagreement_max_dex": float(gap.max()) if len(gap) else float("nan"),
           "disagreement_median_dex": float(np.median(gap)) if len(gap) else float("nan"),
           "C_range": [float(C[0]), float(C[-1])]}
    out["kept_range"] = [float(C[kept[0]]), float(C[kept[-1]])] if len(kept) else None
    return out


def fit_surrogate(kind: str, inputs: Inputs, settings: dict):
    from scalingkit.fit.surrogates import KernelSurrogate, MLPSurrogate

    N, D, L = inputs.arrays()
    if kind == "mlp":
        est = MLPSurrogate(**settings)
    elif kind == "kernel":
        est = KernelSurrogate(**settings)
    else:
        raise UserError(f"unknown surrogate {kind!r} (use {', '.join(SURROGATES)})")
    return est.fit(N, D, L, label=inputs.label)


def kernel_line_draws(inputs: Inputs, fitted, settings: dict, grid: int, draws: int, seed):
    """Bootstrap over runs with kernel refits: (kept, 3, 2) line draws and how many draws were dropped."""
    from scalingkit.fit.surrogates import KernelSurrogate

    N, D, L = inputs.arrays()
    held = {**settings, "ridge": fitted.params["ridge"], "huber_delta": fitted.params["huber_delta"]}

    def optima(runs):
        n, d = N[runs], D[runs]
        sur = KernelSurrogate(**held).fit(n, d, L[runs])
        if not sur.converged:
            return [None]
        opt = minimise_along_compute(sur.predict, (n.min(), n.max()), (d.min(), d.max()), grid,
                                     margins=(data_margin(n), data_margin(d)))
        return [(opt["C"], opt["N"], opt["C"] / (6.0 * opt["N"]), opt["L"])]

    return lines_over_runs(optima, len(N), draws, seed, floor=inputs.offset_floor)[0]


def surrogate(inputs: Inputs, budgets, *, kind="mlp", grid=100, surrogate_settings=None, bootstrap=200, seed=0,
              confidence=0.95, workers=None) -> OptimalResult:
    method = f"surrogate-{kind}"
    N, D, L = inputs.arrays()
    if len(np.unique(N)) < 3 or len(np.unique(D)) < 3:
        return failed(method, "the surrogate needs at least 3 distinct N and 3 distinct D", n_points=0)
    settings = dict(surrogate_settings or {})
    if kind == "mlp":
        settings.setdefault("seed", seed)
    t0 = time.perf_counter()
    sur = fit_surrogate(kind, inputs, settings)
    fit_seconds = time.perf_counter() - t0
    if not sur.converged:
        return failed(method, f"the {kind} surrogate fit failed: {sur.failure}", n_points=0)
    margins = (data_margin(N), data_margin(D))
    opt = minimise_along_compute(sur.predict, (N.min(), N.max()), (D.min(), D.max()), grid, margins=margins)
    notes = [f"{opt['kept']} of {opt['n_compute']} compute values kept: {opt['clipped_low']} clipped below and "
             f"{opt['clipped_high']} above where the optimum runs off the grid or lies within half a data spacing "
             f"({margins[0] / np.log(10):.2g} dex in N, {margins[1] / np.log(10):.2g} in D) of its edge"
             + (f", {opt['holes']} inside" if opt["holes"] else "")
             + (f"; kept C from {opt['kept_range'][0]:.3g} to {opt['kept_range'][1]:.3g}" if opt["kept_range"]
                else ""),
             f"N_opt over N against over D: {opt['disagreement_median_dex']:.3g} dex median, "
             f"{opt['disagreement_max_dex']:.3g} dex max",
             f"surrogate train RMSE {sur.diagnostics.get('train_rmse', float('nan')):.3g}"]
    diag = {k: v for k, v in opt.items() if not isinstance(v, np.ndarray)}
    diag.update(grid=int(grid), surrogate=kind, surrogate_diagnostics={
        k: v for k, v in sur.diagnostics.items() if not isinstance(v, (dict, list))}, notes=notes)
    diag["search_over_D"] = {"N": opt["N_from_D"].tolist(), "L": opt["L_from_D"].tolist()}
    C, Nopt = opt["C"], opt["N"]
    moved = float(np.log(Nopt.max() / Nopt.min())) if len(Nopt) else 0.0
    if opt["kept"] >= MIN_LINE_POINTS and moved < 2 * margins[0]:
        # the grid minima are dense points of one smooth surface: their slope is only the runs' where the optimum
        # crosses at least one sampled size; between two sizes it is the smoother's interpolation
        diag["failure"] = (f"the optimum moves {moved / np.log(10):.2g} dex in N, less than one step between sampled "
                           f"sizes ({2 * margins[0] / np.log(10):.2g} dex), over C from {C.min():.3g} to {C.max():.3g}: "
                           "a and b would be the smoother's interpolation, not the runs'")
        diag["n_points"] = int(len(C))
        diag["points_moved_dex"] = moved / np.log(10)
        return OptimalResult(method, points={"C": C.tolist(), "N": Nopt.tolist(), "D": (C / (6.0 * Nopt)).tolist(),
                                             "L": opt["L"].tolist()}, diagnostics=diag, converged=False)
    coefs = line_method = gammas = None
    if kind == "kernel":
        drawn = None
        if bootstrap and opt["kept"] >= MIN_LINE_POINTS:
            drawn = kernel_line_draws(inputs, sur, settings, int(grid), int(bootstrap), seed)
        coefs, line_method, gammas = draws_or_ols(
            drawn, bootstrap, diag, notes,
            f"had a failed refit or fewer than {MIN_LINE_POINTS} compute values kept",
            "take the grid minima of one fitted surface as independent (they shrink with the grid density)")
    if opt["kept"] >= MIN_LINE_POINTS and gammas is None:
        notes.append("gamma's interval is a wild bootstrap of the grid minima around the power law: it does not "
                     "include the uncertainty of the surrogate fit")
    res = laws_from_points(method, C, Nopt, C / (6.0 * Nopt), opt["L"], budgets, bootstrap=bootstrap, seed=seed,
                           confidence=confidence, workers=workers, diagnostics=diag, line_draws=coefs,
                           line_method=line_method, gamma_draws=gammas, floor=inputs.offset_floor)
    if kind == "mlp" and res.converged:
        without_line_intervals(res, f"intervals need a bootstrap over runs with surrogate refits "
                                    f"({int(bootstrap) or 200} draws x {fit_seconds:.2g} s): not computed; use the "
                                    "kernel surrogate (--surrogates kernel) or --method envelope or isoflop for "
                                    "intervals")
    return res


LINE_NAMES = ("a", "b", "kN", "kD")


def without_line_intervals(res: OptimalResult, why: str) -> None:
    """Drop the OLS intervals of a, b, kN, kD and at the budgets (no interval rather than a misleading one)."""
    for k in LINE_NAMES:
        res.intervals.pop(k, None)
    for row in res.budgets:
        row["intervals"] = {}
    gamma = res.diagnostics["interval_method"].split(";")[0]
    res.diagnostics["interval_method"] = f"{gamma}; a, b, kN, kD, N_opt, D_opt, tokens_per_param: none"
    res.diagnostics["line_intervals"] = why
    res.diagnostics.setdefault("notes", []).append(f"a, b, kN, kD, N_opt, D_opt, D/N: {why}")
