"""Chinchilla approach 1: the lower envelope of loss against compute over every logged point of every run.

A point (C, L) is on the envelope when no point of any run reached a loss as low with no more compute: the
running minimum of L over points sorted by C. Which run (N) and how many tokens (D) sit on the envelope at
each C are the compute-optimal allocation. A CSV has no curves: its envelope is over the final points.

Using the logged points themselves rather than curves interpolated onto a dense C grid (Hoffmann's choice)
keeps the number of points what the data has, so the regressions are not fed a made-up sample size.

Where the envelope sits on the sweep's smallest (or largest) N, the optimum may lie beyond the sampled sizes:
those points say only N_opt <= N_min (>= N_max). With edges="clip" (the default) they are left out of the fits
and counted in the report, as the IsoFLOP and surrogate methods reject optima at the edge of the grid; without
this the staircase at the ends pulls a toward 0.

Intervals of a, b, kN, kD and at the budgets come from a bootstrap over runs: the envelope points are not
independent (neighbours come from the same run, N_opt is a staircase in C, and logging a curve more densely adds
points but no information), so OLS t intervals on them are far too narrow and shrink with the logging density.
Each draw resamples whole runs, rebuilds the envelope (and its edge rule) and refits the three lines; the
intervals are percentiles of the draws, the estimates those of the full data; gamma is refitted per draw.
"""
from __future__ import annotations

import numpy as np

from scalingkit.errors import UserError
from scalingkit.optimal.inputs import Inputs
from scalingkit.optimal.laws import MIN_LINE_POINTS, draws_or_ols, gamma_on_draw, laws_from_points, line_coefs
from scalingkit.optimal.result import OptimalResult, failed


def lower_envelope(C: np.ndarray, L: np.ndarray) -> np.ndarray:
    """Indices of the envelope points, in increasing C: sort once, keep strict new minima of L."""
    C, L = np.asarray(C, dtype=float).ravel(), np.asarray(L, dtype=float).ravel()
    ok = np.flatnonzero(np.isfinite(C) & np.isfinite(L))
    order = ok[np.lexsort((L[ok], C[ok]))]  # by C, ties by L: only the lowest of a tie can be kept
    Ls = L[order]
    before = np.minimum.accumulate(np.r_[np.inf, Ls[:-1]])
    return order[Ls < before]


def envelope_points(inputs: Inputs, min_fraction: float = 0.0) -> dict:
    """Every candidate point (C, L, N, D, run) and the envelope's indices into them.

    min_fraction drops each run's points before that share of its token budget (0: every logged point).
    """
    cv = inputs.curves
    if cv is None:
        N, D, L = inputs.arrays()
        C = 6.0 * N * D
        run = np.arange(len(N))
        final = np.ones(len(N), dtype=bool)
    else:
        C = cv.compute
        L = cv.loss
        N = np.broadcast_to(cv.N[:, None], C.shape)
        D = cv.tokens
        run = np.broadcast_to(np.arange(len(cv))[:, None], C.shape)
        last = np.nanmax(np.where(np.isfinite(cv.tokens), cv.tokens, -np.inf), axis=1)
        final = cv.tokens == last[:, None]
        keep = np.isfinite(C) & np.isfinite(L) & (cv.tokens >= min_fraction * cv.D[:, None])
        C, L, N, D, run, final = (np.asarray(v)[keep] for v in (C, L, N, D, run, final))
    idx = lower_envelope(C, L)
    return {"C": C, "L": L, "N": N, "D": D, "run": run, "final": final, "envelope": idx}


EDGES = ("clip", "keep")


def fitted_on_draws(pts: dict, n_runs: int, edges: str, draws: int, seed) -> tuple[np.ndarray, np.ndarray]:
    """The points each bootstrap draw over runs would fit: (order, mask) with mask (draws, M) over pts[order].

    All draws at once: one sort of every candidate point (as lower_envelope), then per draw the running minimum
    of L over the points of the drawn runs. A run drawn twice adds identical points, of which the envelope keeps
    one, so only which runs are drawn matters; the edges are the smallest and largest N among them.
    """
    from scalingkit.fit.bootstrap import resample_indices

    C, L, N = (np.asarray(pts[k], dtype=float) for k in ("C", "L", "N"))
    order = np.lexsort((L, C))
    C, L, N, run = C[order], L[order], N[order], np.asarray(pts["run"])[order]
    drawn = np.zeros((draws, n_runs), dtype=bool)
    np.put_along_axis(drawn, resample_indices(seed, draws, n_runs), True, axis=1)
    present = drawn[:, run] & (np.isfinite(C) & np.isfinite(L))[None, :]
    Ls = np.where(present, L, np.inf)
    before = np.minimum.accumulate(np.c_[np.full(draws, np.inf), Ls[:, :-1]], axis=1)
    mask = present & (Ls < before)
    if edges == "clip":
        lo = np.where(present, N, np.inf).min(axis=1, keepdims=True)
        hi = np.where(present, N, -np.inf).max(axis=1, keepdims=True)
        mask &= (N != lo) & (N != hi)
    return order, mask


def line_draws(pts: dict, n_runs: int, edges: str, draws: int, seed, floor=None) -> tuple[np.ndarray, int, np.ndarray]:
    """(intercept, slope) of log N, log D, log(D/N) on log C per kept draw, (kept, 3, 2), how many draws were
    dropped (fewer than MIN_LINE_POINTS points, or no spread in log C), and gamma refitted on each kept draw.
    Not laws.lines_over_runs: the envelopes of all draws come at once from fitted_on_draws, and only the fits
    loop."""
    order, mask = fitted_on_draws(pts, n_runs, edges, draws, seed)
    C, N, D, L = (np.asarray(pts[k], dtype=float)[order] for k in ("C", "N", "D", "L"))
    coefs, gammas = [], []
    for m in mask:
        c = line_coefs(C[m], N[m], D[m])
        if c is not None:
            coefs.append(c)
            gammas.append(gamma_on_draw(C[m], L[m], floor))
    return np.reshape(coefs, (-1, 3, 2)), draws - len(coefs), np.asarray(gammas, dtype=float)


def envelope(inputs: Inputs, budgets, *, min_fraction=0.0, edges="clip", bootstrap=200, seed=0, confidence=0.95,
             workers=None) -> OptimalResult:
    if edges not in EDGES:
        raise UserError(f"unknown envelope edge rule {edges!r} (use {' or '.join(EDGES)})")
    pts = envelope_points(inputs, min_fraction)
    idx = pts["envelope"]
    if len(idx) == 0:
        return failed("envelope", "no finite (compute, loss) point to build an envelope from", n_points=0)
    runs = np.unique(pts["run"][idx])
    n_runs = len(inputs.curves) if inputs.curves is not None else len(inputs.table)
    on = []
    for r in runs:
        sel = idx[pts["run"][idx] == r]
        row = {"N": float(pts["N"][sel[0]]), "points": int(len(sel))}
        if inputs.curves is not None:
            row.update(D=float(inputs.curves.D[r]), lr=float(inputs.curves.lr[r]), seed=int(inputs.curves.seed[r]))
        else:
            row.update(D=float(pts["D"][sel[0]]))
        on.append(row)
    Ns = np.unique(pts["N"][idx])
    notes = [f"{len(idx)} envelope points from {len(runs)} of {n_runs} runs, {len(Ns)} distinct N "
             f"({Ns.min():.3g} to {Ns.max():.3g}); {int(pts['final'][idx].sum())} are final points of their run"]
    at_edge = (pts["N"][idx] == pts["N"].min()) | (pts["N"][idx] == pts["N"].max())
    fitted = idx[~at_edge] if edges == "clip" else idx
    if edges == "clip" and at_edge.any():
        notes.append(f"{int(at_edge.sum())} envelope points on the smallest or largest N left out of the fits "
                     "(the optimum may lie beyond the sampled sizes)")
    n_fitted = len(np.unique(pts["N"][fitted]))
    if n_fitted < 3:
        notes.append(f"{n_fitted} distinct N in the fitted envelope: a and b rest on a staircase, read them with care")
    diag = {"runs_on_envelope": on, "envelope_runs": int(len(runs)), "distinct_N": n_fitted, "edges": edges,
            "edge_points": int(at_edge.sum()), "min_fraction": float(min_fraction),
            "source": "curves" if inputs.curves is not None else "final points",
            "envelope": {"C": pts["C"][idx].tolist(), "L": pts["L"][idx].tolist()}, "notes": notes}
    drawn = None
    if bootstrap and len(fitted) >= MIN_LINE_POINTS:
        drawn = line_draws(pts, n_runs, edges, int(bootstrap), seed, inputs.offset_floor)
    coefs, method, gammas = draws_or_ols(drawn, bootstrap, diag, notes,
                                         f"left fewer than {MIN_LINE_POINTS} envelope points (or one compute)",
                                         "treat the correlated envelope points as independent (too narrow)")
    return laws_from_points("envelope", pts["C"][fitted], pts["N"][fitted], pts["D"][fitted], pts["L"][fitted],
                            budgets, bootstrap=bootstrap, seed=seed, confidence=confidence, workers=workers,
                            diagnostics=diag, line_draws=coefs, line_method=method, gamma_draws=gammas,
                            floor=inputs.offset_floor)
