"""Kaplan 2020 joint form L = [(Nc/N)^(alpha/beta) + Dc/D]^beta (no irreducible term).

Same objective as Chinchilla (Huber, delta 1e-3, on log residuals, summed), parameterised as
log L_hat = beta * logaddexp((alpha/beta)(log Nc - log N), log Dc - log D), theta = (log Nc, log Dc, alpha, beta).
Starts by the same variable-projection idea: for fixed (alpha, beta), L^(1/beta) = Nc^p N^-p + Dc / D (p =
alpha/beta) is linear in (Nc^p, Dc) >= 0, so NNLS on rows divided by L^(1/beta) (relative ~ log residuals / beta)
maps a grid of exponents; the best cells are refined with L-BFGS-B on all four parameters.
"""
from __future__ import annotations

import numpy as np
from scipy import special
from scipy.optimize import nnls

from scalingkit.errors import UserError
from scalingkit.fit import logfit
from scalingkit.fit.base import register_form
from scalingkit.fit.form2d import Estimator2D, Form2D

NAMES = ("Nc", "Dc", "alpha", "beta")
KAPLAN_2020 = {"Nc": 6.4e13, "Dc": 1.8e13, "alpha": 0.076, "beta": 0.103}


def logpred(theta, lN, lD, grad=True):
    lnc, ldc, al, be = theta
    p = al / be
    z1, z2 = p * (lnc - lN), ldc - lD
    s = np.logaddexp(z1, z2)
    pred = be * s
    if not grad:
        return pred, None
    w1 = special.expit(z1 - z2)
    return pred, np.column_stack([al * w1, be * (1.0 - w1), w1 * (lnc - lN), s - w1 * z1])


def derived(params: dict, budget: float | None) -> dict:
    """Compute-optimal allocation at `budget` (minimise L along C = 6 N D): N_opt ~ C^a, a = beta/(alpha+beta)."""
    al, be, Nc, Dc = params["alpha"], params["beta"], params["Nc"], params["Dc"]
    p = al / be
    out = {"a": be / (al + be), "b": al / (al + be)}
    if budget:
        with np.errstate(all="ignore"):
            lnopt = (np.log(p) + p * np.log(Nc) + np.log(budget / 6.0) - np.log(Dc)) / (p + 1.0)
            out["N_opt"] = np.exp(lnopt)
            out["D_opt"] = budget / (6.0 * out["N_opt"])
            out["tokens_per_param"] = out["D_opt"] / out["N_opt"]
    return {k: float(v) for k, v in out.items()}


def profile_starts(data: logfit.LogData, n_grid=16, k=6, delta=logfit.DELTA):
    """NNLS over a (alpha, beta) grid; the k best cells by the true objective as starts (log Nc, log Dc, a, b)."""
    grid = np.geomspace(0.02, 1.5, n_grid)
    rows = []
    for al in grid:
        for be in grid:
            p = al / be
            with np.errstate(all="ignore"):
                y = np.exp(data.lL / be)
                X = np.column_stack([np.exp(-p * data.lN), np.exp(-data.lD)]) / y[:, None]
            if not np.all(np.isfinite(X)):
                continue
            scale = np.linalg.norm(X, axis=0)
            scale[scale == 0] = 1.0
            sw = np.sqrt(data.w)
            coef, _ = nnls(X / scale * sw[:, None], sw)
            c1, c2 = np.maximum(coef / scale, 1e-300)
            theta = np.array([np.log(c1) / p, np.log(c2), al, be])
            rows.append((*theta, logfit.objective(theta, logpred, data, delta)))
    rows = np.array(rows)
    rows = rows[np.isfinite(rows[:, 4])]
    if not len(rows):
        raise UserError("kaplan: no usable starting point (check the table)")
    return rows[np.argsort(rows[:, 4])[:k], :4]


class KaplanForm(Form2D):
    name = "kaplan"
    names = NAMES
    n_params = 4
    bounds = [(None, None), (None, None), (1e-6, None), (1e-6, None)]

    def logpred(self, theta, lN, lD, grad=True):
        return logpred(theta, lN, lD, grad)

    def to_public(self, theta):
        lnc, ldc, al, be = np.asarray(theta, dtype=float)
        return {"Nc": np.exp(lnc), "Dc": np.exp(ldc), "alpha": al, "beta": be}

    def from_public(self, params):
        return np.array([np.log(params["Nc"]), np.log(params["Dc"]), params["alpha"], params["beta"]])

    def derived(self, params, settings):
        return derived(params, settings.get("budget"))

    def starts(self, data, settings):
        if settings["solver"] not in ("varpro", "lbfgs"):
            raise UserError(f"kaplan: unknown solver {settings['solver']!r} (varpro, lbfgs)")
        n = settings["grid"] if settings["solver"] == "varpro" else 2 * settings["grid"]
        return profile_starts(data, n_grid=n, k=settings["refine"])


class Kaplan(Estimator2D):
    """L = [(Nc/N)^(alpha/beta) + Dc/D]^beta, Huber (delta 1e-3) on log loss; settings as for Chinchilla (weights
    too: "se" weights the runs by their standard errors, fit(..., se=...))."""

    name = "kaplan"
    form = KaplanForm()
    min_points = 5

    def __init__(self, *, solver="varpro", grid=16, refine=6, crosscheck=False, starts=None, bootstrap=0,
                 budget=None, confidence=0.95, seed=0, workers=None, interval="bca", maxiter=5000, weights="none"):
        super().__init__(solver=solver, grid=grid, refine=refine, crosscheck=crosscheck, starts=starts,
                         bootstrap=bootstrap, budget=budget, confidence=confidence, seed=seed, workers=workers,
                         interval=interval, maxiter=maxiter, weights=weights)


@register_form("kaplan")
def predict(result, N, D):
    theta = KaplanForm().from_public(result.params)
    return np.exp(logpred(theta, np.log(N), np.log(D), grad=False)[0])
