"""Huber on log-loss residuals, summed over points, minimised by L-BFGS-B: the 2-d forms' objective and solver.

A form supplies `logpred(theta, lN, lD) -> (log L_hat, d log L_hat / d theta)`. The objective is
sum_i w_i H_delta(log L_hat_i - log L_i); w are row weights: the fit's own (all 1, or from the standard errors
with weights="se", fit/weights.py) times a refit's (bootstrap counts, zeros to leave points out).

The early-stop trap (Epoch 2024 on Hoffmann 2022): with delta = 1e-3 the objective is ~1e-3 in total, and
L-BFGS-B's relative-decrease test divides by max(|f|, 1), i.e. becomes an absolute test on a tiny number, and
stops near the start. We minimise f / delta (O(1) per point) and ask for ftol ~ machine precision with a
small projected-gradient tolerance, so the stopping rule is the gradient, not the size of the objective.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import special
from scipy.optimize import minimize

from scalingkit.fit.parallel import map_split
from scalingkit.fit.threads import blas_single

DELTA = 1e-3
GTOL = 1e-8  # on the gradient of f / delta
FTOL = 1e-15


@dataclass(frozen=True)
class LogData:
    """The fitted table in logs, plus row weights (ones for the plain fit; the standard errors' with weights="se")."""

    lN: np.ndarray
    lD: np.ndarray
    lL: np.ndarray
    w: np.ndarray

    @classmethod
    def of(cls, N, D, loss, w=None):
        lN, lD, lL = np.log(N), np.log(D), np.log(loss)
        return cls(lN, lD, lL, np.ones_like(lL) if w is None else np.asarray(w, dtype=float))

    def reweighted(self, w) -> "LogData":
        """The same table with a refit's row weights (bootstrap counts, a leave-one-out mask) multiplying the
        fit's own."""
        return LogData(self.lN, self.lD, self.lL, self.w * np.asarray(w, dtype=float))


def objective(theta, logpred, data: LogData, delta=DELTA):
    """Summed Huber on log residuals (the reported objective), no gradient."""
    pred, _ = logpred(theta, data.lN, data.lD, grad=False)
    return float(np.sum(data.w * special.huber(delta, pred - data.lL)))


def scaled_value_and_grad(theta, logpred, data: LogData, delta=DELTA):
    """f / delta and its gradient (what the optimiser sees)."""
    pred, dpred = logpred(theta, data.lN, data.lD, grad=True)
    r = pred - data.lL
    f = np.sum(data.w * special.huber(delta, r)) / delta
    g = (data.w * np.clip(r, -delta, delta) / delta) @ dpred
    if not np.isfinite(f):
        return np.inf, np.zeros_like(theta)
    return f, g


def relative_gradient(theta, logpred, data: LogData, delta=DELTA, mask=None) -> float:
    """max_k |sum_i g_ik| / sum_i |g_ik| over the per-point gradient contributions g_ik.

    Scale-free: ~1e-8 at a minimum, O(0.01-1) away from one. (The plain gradient norm is not: with delta = 1e-3
    the curvature is ~1/delta^2, so rounding alone leaves a gradient of ~1e-5 at the true optimum.)
    `mask` zeroes components that push against an active bound.
    """
    pred, dpred = logpred(theta, data.lN, data.lD, grad=True)
    G = (data.w * np.clip(pred - data.lL, -delta, delta) / delta)[:, None] * dpred
    total, size = np.abs(G.sum(axis=0)), np.abs(G).sum(axis=0)
    rel = np.where(size > 0, total / np.where(size > 0, size, 1.0), 0.0)
    if mask is not None:
        rel = np.where(mask, 0.0, rel)
    return float(np.max(rel)) if np.all(np.isfinite(rel)) else np.inf


def refine(theta0, logpred, data: LogData, delta=DELTA, bounds=None, maxiter=5000):
    """One L-BFGS-B run from theta0 with the trap-proof tolerances. Returns (theta, objective, info)."""
    res = minimize(
        scaled_value_and_grad, np.asarray(theta0, dtype=float), args=(logpred, data, delta), jac=True,
        method="L-BFGS-B", bounds=bounds,
        options={"maxiter": maxiter, "maxfun": 4 * maxiter, "ftol": FTOL, "gtol": GTOL, "maxcor": 20},
    )
    g = scaled_value_and_grad(res.x, logpred, data, delta)[1]
    mask = np.zeros(len(g), bool)
    if bounds is not None:  # projected gradient: components pushing against an active bound do not count
        lo = np.array([b[0] if b[0] is not None else -np.inf for b in bounds])
        hi = np.array([b[1] if b[1] is not None else np.inf for b in bounds])
        mask = ((res.x <= lo) & (g > 0)) | ((res.x >= hi) & (g < 0))
        g = np.where(mask, 0.0, g)
    info = {"nit": int(res.nit), "grad_norm": float(np.max(np.abs(g))), "message": str(res.message),
            "success": bool(res.success), "rel_grad": relative_gradient(res.x, logpred, data, delta, mask)}
    return res.x, res.fun * delta, info


@blas_single
def _refine_rows(starts, logpred, data, delta, bounds, maxiter):
    out = np.full((len(starts), starts.shape[1] + 3), np.nan)
    for i, t0 in enumerate(starts):
        theta, f, info = refine(t0, logpred, data, delta, bounds, maxiter)
        out[i] = np.r_[theta, f, info["grad_norm"], info["rel_grad"]]
    return out


def refine_many(starts, logpred, data: LogData, delta=DELTA, bounds=None, workers=None, min_per_worker=200,
                maxiter=5000):
    """L-BFGS-B from every start (rows), spread over processes.

    Returns (thetas, objectives, grad_norms, relative gradients)."""
    starts = np.atleast_2d(np.asarray(starts, dtype=float))
    out = map_split(_refine_rows, starts, logpred, data, delta, bounds, maxiter, workers=workers,
                    min_per_worker=min_per_worker)
    k = starts.shape[1]
    return out[:, :k], out[:, k], out[:, k + 1], out[:, k + 2]


def agreement(thetas, objectives, rtol_f=1e-6, rtol_x=1e-3):
    """How many starts reached the best objective, and the parameters' largest relative spread among them."""
    ok = np.isfinite(objectives)
    if not ok.any():
        return 0, np.inf
    best = np.nanmin(objectives)
    near = ok & (objectives <= best + rtol_f * abs(best) + 1e-15)
    T = thetas[near]
    spread = np.max(np.abs(T - T[np.argmin(objectives[near])]) / np.maximum(np.abs(T).max(axis=0), 1e-12))
    return int(near.sum()), float(spread)


LogPred = Callable[..., tuple]
