"""Variable projection starts for L = E + A N^-alpha + B D^-beta.

For fixed (alpha, beta) the form is linear in (E, A, B) >= 0, so a grid over the two exponents with
non-negative least squares (scipy.optimize.nnls) for the rest maps the whole landscape cheaply.

NNLS minimises squared *linear* residuals, while the fit minimises Huber (delta 1e-3) on *log* residuals. Two
bridges: rows are divided by L, since (L_hat - L) / L ~ log L_hat - log L to first order; and a couple of
iteratively reweighted passes with Huber weights min(1, delta/|r|) pull the squared loss towards the Huber one
(with residuals ~1e-2 >> delta that is nearly least absolute deviations). The NNLS solution is still only an
approximation of the profile, so each grid cell is ranked by the true objective evaluated there, and the best
cells become starting points for a refinement of all five parameters with the real objective (logfit.refine).

A known loss floor f (E >= f): substitute E = f + E' and fit E' >= 0, so NNLS keeps E on or above the floor,
i.e. fit L - f with the columns (1, N^-alpha, D^-beta). With the offset fixed at the floor the column 1 is left out.
"""
from __future__ import annotations

import numpy as np
from scipy import special
from scipy.optimize import nnls

from scalingkit.fit.logfit import DELTA, LogData


def default_grid(n: int = 40, lo: float = 0.02, hi: float = 2.0) -> np.ndarray:
    """Exponent values for each axis: Hoffmann's start grid spans 0 to 2 in alpha and beta."""
    return np.linspace(lo, hi, n)


def profile(data: LogData, alphas, betas, delta=DELTA, irls: int = 2, floor: float = 0.0, free_offset=True):
    """For each (alpha, beta): NNLS (E, A, B) and the Huber-log objective there.

    `floor`: a lower bound on E (0: E >= 0); `free_offset=False` fixes E at the floor.
    Returns an array of rows (alpha, beta, E, A, B, objective), one per grid cell.
    """
    L = np.exp(data.lL)
    sw = np.sqrt(data.w)
    y = 1.0 - floor / L  # (L - floor) / L: what E', A, B must explain, relative to L
    rows = []
    for al in alphas:
        xn = np.exp(-al * data.lN)
        for be in betas:
            cols = [np.ones_like(L), xn, np.exp(-be * data.lD)] if free_offset else [xn, np.exp(-be * data.lD)]
            X = np.column_stack(cols) / L[:, None]
            scale = np.linalg.norm(X, axis=0)
            scale[scale == 0] = 1.0
            Xs = X / scale
            h = sw.copy()
            for it in range(irls + 1):
                coef, _ = nnls(Xs * h[:, None], h * y)
                if it < irls:
                    r = Xs @ coef - y  # relative residual ~ log residual
                    h = sw * np.sqrt(np.minimum(1.0, delta / np.maximum(np.abs(r), 1e-300)))
            coef = coef / scale
            e_above = coef[0] if free_offset else 0.0
            rows.append((al, be, floor + e_above, *coef[-2:]))
    rows = np.array(rows)
    rows = np.column_stack([rows, grid_objective(rows, data, delta)])
    return rows


def grid_objective(rows, data: LogData, delta=DELTA):
    """Summed Huber on log residuals at each (alpha, beta, E, A, B) row, all rows at once."""
    al, be, E, A, B = (rows[:, [j]] for j in range(5))
    pred = E + A * np.exp(-al * data.lN) + B * np.exp(-be * data.lD)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log(pred) - data.lL
    obj = np.sum(data.w * special.huber(delta, r), axis=1)
    return np.where(np.isfinite(obj), obj, np.inf)


def best_cells(rows, k: int, tiny: float = 1e-12):
    """k starting points from the grid: its best local minima and its best cells, as lse vectors.

    Start vector (log A, log B, log E, alpha, beta); zero coefficients (NNLS bounds) become a tiny positive value.
    """
    alphas, betas = np.unique(rows[:, 0]), np.unique(rows[:, 1])
    obj = rows[:, 5].reshape(len(alphas), len(betas))
    padded = np.pad(obj, 1, constant_values=np.inf)
    neigh = np.stack([padded[1 + di: 1 + di + obj.shape[0], 1 + dj: 1 + dj + obj.shape[1]]
                      for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di, dj) != (0, 0)])
    local = (obj <= neigh.min(axis=0)).ravel() & np.isfinite(rows[:, 5])
    order = np.argsort(rows[:, 5])
    # Half the starts at distinct grid minima (other basins), the rest at the best cells overall, which sit
    # around the best minimum, so that its basin gets several starts and their agreement can be checked.
    picked = [i for i in order if local[i]][: max(1, k // 2)]
    picked += [i for i in order if i not in picked][: k - len(picked)]
    sel = rows[picked]
    scale = np.max(sel[:, 2:5]) if sel.size else 1.0
    lse = np.log(np.maximum(sel[:, [3, 4, 2]], tiny * max(scale, 1.0)))
    return np.column_stack([lse, sel[:, 0], sel[:, 1]])
