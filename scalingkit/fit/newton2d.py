"""Every bootstrap (or jackknife) refit of a 2-d form at once: damped Newton on the summed Huber-log objective.

Why hand-written: scipy's minimisers solve one problem per call, and a refit of the Chinchilla form by L-BFGS-B
costs ~5 ms, almost all of it Python overhead around 240-point arrays; 4,000 draws plus the jackknife took ~12 s.
Every draw shares the table and differs only in its row weights, so one loop over (draws, points) arrays does
them all, and each draw's 5 x 5 Newton system is solved with np.linalg.solve on the stacked matrices.

Newton, not Gauss-Newton: with delta = 1e-3 almost every residual lies on the linear arm of the Huber loss,
where the Gauss-Newton matrix sees nothing; the objective's curvature there comes from the curvature of the
prediction itself (psi(r) d2 log L_hat), which the form supplies (`batch_newton`). The objective is piecewise
quadratic in the residuals, so from the warm start at the estimate a draw settles in ~10 steps (on the Epoch
table; a draw whose fit is nearly least absolute deviations, with fewer points inside delta than free parameters,
can crawl, and is left to the fallback).
Damping (Levenberg-Marquardt on the Newton matrix, Nielsen's update): a step is kept only if it does not raise the
objective; otherwise the damping grows, which also handles an indefinite Newton matrix. Bounds: a parameter on
a bound that the gradient pushes against is held (active set), a fixed one (lower == upper) always; the rest are
stepped, then clipped.

Stopping, per draw: the projected gradient of f / delta below logfit.GTOL (L-BFGS-B's own test), or a kept step
that lowers the objective by less than logfit.FTOL relatively (float resolution), or damping beyond `LAM_MAX`
(nothing lowers the objective any more). The caller judges the end point with the same test as a per-draw
refit (form2d.at_minimum on the relative gradient) and refits the draws that fail it, or that did not stop,
by the per-draw path.
"""
from __future__ import annotations

import numpy as np
from scipy import special

from scalingkit.fit.logfit import DELTA, FTOL, GTOL, LogData

LAM0 = 1e-8  # start almost undamped: from the estimate the Newton step is usually right
LAM_MAX = 1e10
BLOCK = 500  # rows solved together: the (rows, points) temporaries then stay in cache


def bound_arrays(bounds, k: int):
    """L-BFGS-B style bounds (list of (lo, hi), None = open) as two arrays with -inf / inf."""
    if bounds is None:
        return np.full(k, -np.inf), np.full(k, np.inf)
    lo = np.array([-np.inf if b[0] is None else b[0] for b in bounds], dtype=float)
    hi = np.array([np.inf if b[1] is None else b[1] for b in bounds], dtype=float)
    return lo, hi


def _scaled_cost(pred, lL, W, delta):
    return np.sum(W * special.huber(delta, pred - lL), axis=1) / delta


def newton_refits(form, data: LogData, W, theta0, *, delta=DELTA, max_iter=100, block=BLOCK):
    """Minimise sum_i W_bi w_i H_delta(log L_hat(theta_b)_i - log L_i) for every row b of W, from theta0, w = data.w
    the fit's own weights (as data.reweighted(W_b) gives the per-draw path).

    `form` supplies batch_logpred(T, lN, lD) -> (pred (B, n), aux: an array, one row per draw),
    batch_newton(aux, lN, lD, c, p) -> (gradient sum_i p_i J_i (B, k),
    matrix sum_i c_i J_i J_i^T + p_i d2pred_i (B, k, k)) and batch_jacobian(aux, lN, lD) -> J (B, n, k).
    Rows are solved in blocks of `block` (each row's arithmetic does not depend on the others).
    Returns (theta (B, k), objective (B,), relative gradient (B,), projected gradient norm of f/delta (B,),
    stopped (B,): the row met a stopping rule within max_iter).
    """
    W = np.asarray(W, dtype=float) * data.w
    parts = [_newton_block(form, data, W[i: i + block], theta0, delta, max_iter) for i in range(0, len(W), block)]
    if not parts:
        k = len(theta0)
        return np.empty((0, k)), *(np.empty(0) for _ in range(3)), np.empty(0, bool)
    return tuple(np.concatenate(x) for x in zip(*parts))


def _newton_block(form, data, W, theta0, delta, max_iter):
    lN, lD, lL = data.lN, data.lD, data.lL
    B = len(W)
    Wd = W / delta  # derivatives of f / delta: the numbers stay O(1) per point
    T = np.repeat(np.asarray(theta0, dtype=float)[None, :], B, axis=0)
    k = T.shape[1]
    lo, hi = bound_arrays(form.bounds, k)
    T = np.clip(T, lo, hi)
    fixed = lo == hi
    pred, aux = form.batch_logpred(T, lN, lD)
    cost = _scaled_cost(pred, lL, W, delta)
    lam = np.full(B, LAM0)
    nu = np.full(B, 2.0)
    stopped = ~np.isfinite(cost)  # not at a minimum: the verdict rejects these rows
    # Gradient and Newton matrix at each row's current point, kept while the row's trial steps are rejected
    # (only the damping changes then): a rejected step then costs one evaluation, not a new matrix.
    G, H, held, fresh = np.zeros((B, k)), np.zeros((B, k, k)), np.zeros((B, k), bool), np.zeros(B, bool)
    eye = np.eye(k)
    for _ in range(max_iter):
        need = np.flatnonzero(~stopped & ~fresh)
        if need.size:
            r = pred[need] - lL
            c = Wd[need] * (np.abs(r) <= delta)  # psi'(r) / delta
            p = Wd[need] * np.clip(r, -delta, delta)  # psi(r) / delta
            g, Hn = form.batch_newton(aux[need], lN, lD, c, p)
            Tn = T[need]
            h = fixed | ((Tn <= lo) & (g > 0)) | ((Tn >= hi) & (g < 0))
            G[need], held[need], fresh[need] = np.where(h, 0.0, g), h, True
            H[need] = Hn * (~h[:, :, None] & ~h[:, None, :]) + h[:, :, None] * eye
            small = np.max(np.abs(G[need]), axis=1) <= GTOL  # L-BFGS-B's projected-gradient test
            stopped[need[small]] = True
        act = np.flatnonzero(~stopped)
        if act.size == 0:
            break
        g, Ha = G[act], H[act]
        dH = np.abs(np.einsum("bii->bi", Ha))
        dH = np.maximum(dH, 1e-12 * dH.max(axis=1, keepdims=True) + 1e-300)
        A = Ha + (lam[act, None] * dH)[:, :, None] * eye
        try:
            step = np.linalg.solve(A, -g[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:  # a singular row: least squares row by row (rare)
            step = np.stack([np.linalg.lstsq(a, -b, rcond=None)[0] for a, b in zip(A, g)])
        step = np.where(held[act], 0.0, step)
        Ta = T[act]
        Tn = np.clip(Ta + step, lo, hi)
        s = Tn - Ta
        predicted = -(np.einsum("bi,bi->b", g, s) + 0.5 * np.einsum("bi,bij,bj->b", s, Ha, s))
        pn, auxn = form.batch_logpred(Tn, lN, lD)
        cn = _scaled_cost(pn, lL, W[act], delta)
        ok = np.isfinite(cn) & (cn <= cost[act])
        gain = cost[act] - cn
        keep = act[ok]
        T[keep], cost[keep], pred[keep], aux[keep] = Tn[ok], cn[ok], pn[ok], auxn[ok]
        fresh[keep] = False
        # Nielsen's damping update (Madsen, Nielsen & Tingleff 2004, eq. 3.16): shrink the damping by how well
        # the quadratic model predicted the decrease, grow it geometrically after a rejected step.
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = np.where(predicted > 0, gain / predicted, 0.0)
        good = ok & (rho > 0)
        lam[act[good]] *= np.maximum(1.0 / 3.0, 1.0 - (2.0 * rho[good] - 1.0) ** 3)
        nu[act[good]] = 2.0
        bad = act[~good]
        lam[bad] *= nu[bad]
        nu[bad] *= 2.0
        lam[act] = np.maximum(lam[act], 1e-12)
        stopped[act[ok & (gain <= FTOL * np.abs(cost[act] + gain))]] = True
        stopped[act[lam[act] > LAM_MAX]] = True
    rel, gnorm = _verdict_terms(form, T, pred, aux, data, W, lo, hi, fixed, delta)
    return T, cost * delta, rel, gnorm, stopped


def _verdict_terms(form, T, pred, aux, data, W, lo, hi, fixed, delta):
    """logfit.relative_gradient and the projected gradient norm of f / delta, row by row (the same quantities
    form2d.at_minimum judges a per-draw L-BFGS-B refit by)."""
    J = form.batch_jacobian(aux, data.lN, data.lD)
    G = (W * np.clip(pred - data.lL, -delta, delta) / delta)[:, :, None] * J
    g = G.sum(axis=1)
    mask = fixed | ((T <= lo) & (g > 0)) | ((T >= hi) & (g < 0))
    size = np.abs(G).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(size > 0, np.abs(g) / np.where(size > 0, size, 1.0), 0.0)
    rel = np.where(mask, 0.0, rel)
    rel = np.where(np.all(np.isfinite(rel), axis=1), rel.max(axis=1), np.inf)
    gnorm = np.max(np.abs(np.where(mask, 0.0, g)), axis=1)
    return rel, gnorm
