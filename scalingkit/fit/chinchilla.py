"""Chinchilla 2-d form L = E + A / N^alpha + B / D^beta (Hoffmann 2022, Approach 3; Epoch 2024 replication).

Fitted in the log-sum-exp parameterisation log L_hat = LSE(a - alpha log N, b - beta log D, e), A = e^a,
B = e^b, E = e^e, by Huber (delta 1e-3) on log residuals summed over points.
Solvers: "varpro" (default: exponent grid with NNLS for E, A, B, then L-BFGS-B on all five from the best
cells) and "lbfgs" (multi-start L-BFGS-B, by default over Hoffmann's 4,500-point grid: the cross-check).
"""
from __future__ import annotations

import numpy as np

from scalingkit.errors import UserError
from scalingkit.fit import varpro
from scalingkit.fit.base import register_form
from scalingkit.fit.form2d import Form2D, Estimator2D

NAMES = ("E", "A", "B", "alpha", "beta")
HOFFMANN_2022 = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
EPOCH_2024 = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def logpred(theta, lN, lD, grad=True):
    """log L_hat and its gradient in theta = (a, b, e, alpha, beta)."""
    a, b, e, al, be = theta
    z0, z1 = a - al * lN, b - be * lD
    m = np.maximum(np.maximum(z0, z1), e)
    x0, x1, x2 = np.exp(z0 - m), np.exp(z1 - m), np.exp(e - m)
    s = x0 + x1 + x2
    pred = m + np.log(s)
    if not grad:
        return pred, None
    w0, w1, w2 = x0 / s, x1 / s, x2 / s
    return pred, np.column_stack([w0, w1, w2, -w0 * lN, -w1 * lD])


def to_public(theta) -> dict:
    a, b, e, al, be = np.asarray(theta, dtype=float)
    return {"E": np.exp(e), "A": np.exp(a), "B": np.exp(b), "alpha": al, "beta": be}


def from_public(p: dict) -> np.ndarray:
    return np.array([np.log(p["A"]), np.log(p["B"]), np.log(p["E"]), p["alpha"], p["beta"]])


def derived(params: dict, budget: float | None) -> dict:
    """Compute-optimal allocation implied by the fit (PAPER.md): a, b, G, and N_opt, D_opt, D/N at `budget`.

    N_opt = G (C/6)^a, D_opt = (C/6)^b / G with a = beta/(alpha+beta), b = alpha/(alpha+beta),
    G = (alpha A / (beta B))^(1/(alpha+beta)).
    """
    al, be, A, B = params["alpha"], params["beta"], params["A"], params["B"]
    s = al + be
    with np.errstate(all="ignore"):
        out = {"a": be / s, "b": al / s, "G": np.exp(np.log(al * A / (be * B)) / s)}
        if budget:
            c6 = budget / 6.0
            out["N_opt"] = out["G"] * c6 ** out["a"]
            out["D_opt"] = c6 ** out["b"] / out["G"]
            out["tokens_per_param"] = out["D_opt"] / out["N_opt"]
    return {k: float(v) for k, v in out.items()}


def hoffmann_grid() -> np.ndarray:
    """Hoffmann's 4,500 starts as used by Epoch: alpha, beta in {0,...,2}, e in {-1,...,1}, a, b in {0,...,25}."""
    al = np.arange(0, 2.5, 0.5)
    e = np.arange(-1, 1.5, 0.5)
    ab = np.arange(0, 30, 5)
    g = np.array(np.meshgrid(ab, ab, e, al, al, indexing="ij")).reshape(5, -1).T
    return g  # columns (a, b, e, alpha, beta)


class ChinchillaForm(Form2D):
    name = "chinchilla"
    names = NAMES
    n_params = 5

    def logpred(self, theta, lN, lD, grad=True):
        return logpred(theta, lN, lD, grad)

    def to_public(self, theta):
        return to_public(theta)

    def from_public(self, params):
        return from_public(params)

    def derived(self, params, settings):
        return derived(params, settings.get("budget"))

    def starts(self, data, settings):
        if settings["solver"] == "varpro":
            grid = varpro.default_grid(settings["grid"])
            rows = varpro.profile(data, grid, grid)
            return varpro.best_cells(rows, settings["refine"])
        if settings["solver"] == "lbfgs":
            return hoffmann_grid()
        raise UserError(f"chinchilla: unknown solver {settings['solver']!r} (varpro, lbfgs)")


class Chinchilla(Estimator2D):
    """L = E + A/N^alpha + B/D^beta by Huber (delta 1e-3) on log loss, with optional bootstrap over runs.

    Settings:
    - solver: "varpro" (exponent grid + NNLS, then L-BFGS-B on all five) or "lbfgs" (Hoffmann's 4,500 starts);
    - grid: exponent grid points per axis (varpro); refine: how many grid cells to refine;
    - crosscheck: also run the 4,500-start L-BFGS-B and report the agreement (an int k: k of those starts,
      evenly spread); a lower optimum found there marks the fit failed;
    - starts: explicit starting points (dicts of E, A, B, alpha, beta) replacing the solver's own;
    - bootstrap: resamples of the rows (0: none); interval: "bca" or "percentile" reported (both saved);
    - budget: FLOPs for N_opt, D_opt, tokens per parameter (default: the table's largest 6 N D);
    - confidence, seed, workers (processes; None: all cores), maxiter (L-BFGS-B iterations per start).
    """

    name = "chinchilla"
    form = ChinchillaForm()
    min_points = 6

    def __init__(self, *, solver="varpro", grid=40, refine=8, crosscheck=False, starts=None, bootstrap=0,
                 budget=None, confidence=0.95, seed=0, workers=None, interval="bca", maxiter=5000):
        super().__init__(solver=solver, grid=grid, refine=refine, crosscheck=crosscheck, starts=starts,
                         bootstrap=bootstrap, budget=budget, confidence=confidence, seed=seed, workers=workers,
                         interval=interval, maxiter=maxiter)


@register_form("chinchilla")
def predict(result, N, D):
    p = result.params
    return p["E"] + p["A"] * np.exp(-p["alpha"] * np.log(N)) + p["B"] * np.exp(-p["beta"] * np.log(D))
