"""Chinchilla 2-d form L = E + A / N^alpha + B / D^beta (Hoffmann 2022, Approach 3; Epoch 2024 replication).

Fitted in the log-sum-exp parameterisation log L_hat = LSE(a - alpha log N, b - beta log D, e), A = e^a,
B = e^b, E = e^e, by Huber (delta 1e-3) on log residuals summed over points.
Solvers: "varpro" (default: exponent grid with NNLS for E, A, B, then L-BFGS-B on all five from the best
cells) and "lbfgs" (multi-start L-BFGS-B, by default over Hoffmann's 4,500-point grid: the cross-check).
A known loss floor (the data's entropy: no model's expected loss goes below it) bounds E from below, or fixes it.
"""
from __future__ import annotations

import numpy as np

from scalingkit.errors import UserError
from scalingkit.fit import varpro
from scalingkit.fit.base import FitResult, register_form
from scalingkit.fit.form2d import Form2D, Estimator2D

NAMES = ("E", "A", "B", "alpha", "beta")
HOFFMANN_2022 = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
EPOCH_2024 = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
AT_ZERO = 1e-6  # E below this fraction of the median loss sits on its bound 0
AT_FLOOR_RTOL = 1e-6  # E within this of the loss floor counts as on the bound (L-BFGS-B puts it exactly there)


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


def batch_logpred(T, lN, lD):
    """logpred for many parameter rows T (B, 5) at once: log L_hat (B, n) and the log-sum-exp weights (B, 3, n)
    of the three terms (A/N^alpha, B/D^beta, E), from which the derivatives follow."""
    a, b, e, al, be = (T[:, [j]] for j in range(5))
    z0, z1 = a - al * lN, b - be * lD
    m = np.maximum(np.maximum(z0, z1), e)
    x = np.empty((len(T), 3, len(lN)))
    np.exp(z0 - m, out=x[:, 0])
    np.exp(z1 - m, out=x[:, 1])
    np.exp(e - m, out=x[:, 2])
    s = x.sum(axis=1)
    x /= s[:, None, :]
    return m + np.log(s), x


def batch_jacobian(aux, lN, lD):
    """d log L_hat / d theta, (B, n, 5), from batch_logpred's weights."""
    w0, w1, w2 = aux[:, 0], aux[:, 1], aux[:, 2]
    return np.stack([w0, w1, w2, -w0 * lN, -w1 * lD], axis=-1)


def batch_newton(aux, lN, lD, c, p):
    """Gradient sum_i p_i J_i and matrix sum_i (c_i J_i J_i^T + p_i d2 log L_hat_i) for every row (B, 5), (B, 5, 5).

    With weights w of the log-sum-exp and z_k = (a - alpha lN, b - beta lD, e), d2 log L_hat = Z^T diag(w) Z - J J^T.
    Each parameter enters one z_k only, so every entry is a sum over points of a product of two weights times
    1, lN, lD or their squares: nine (B, n) products, each row multiplied by that (n, 6) basis, give them all,
    3-4x faster than einsum over the (B, n, 5) Jacobian (measured at B = 500, n = 240; the refits spend a third
    of their time here).
    """
    w0, w1, w2 = aux[:, 0], aux[:, 1], aux[:, 2]
    q = c - p
    B, n = c.shape
    U = np.empty((B, 9, n))
    np.multiply(q * w0 + p, w0, out=U[:, 0])  # (a, alpha) block: q w0^2 + p w0
    np.multiply(q * w1 + p, w1, out=U[:, 1])  # (b, beta) block
    np.multiply(q * w2 + p, w2, out=U[:, 2])  # e
    qw0 = q * w0
    np.multiply(qw0, w1, out=U[:, 3])  # cross terms
    np.multiply(qw0, w2, out=U[:, 4])
    np.multiply(q * w1, w2, out=U[:, 5])
    np.multiply(p, w0, out=U[:, 6])  # gradient
    np.multiply(p, w1, out=U[:, 7])
    np.multiply(p, w2, out=U[:, 8])
    basis = np.column_stack([np.ones_like(lN), lN, lD, lN * lN, lD * lD, lN * lD])  # (n, 6)
    S = U @ basis  # (B, 9, 6): one small product per row, so a row's sums do not depend on the other rows
    g = np.column_stack([S[:, 6, 0], S[:, 7, 0], S[:, 8, 0], -S[:, 6, 1], -S[:, 7, 2]])
    H = np.empty((B, 5, 5))
    H[:, 0, 0], H[:, 0, 3], H[:, 3, 3] = S[:, 0, 0], -S[:, 0, 1], S[:, 0, 3]
    H[:, 1, 1], H[:, 1, 4], H[:, 4, 4] = S[:, 1, 0], -S[:, 1, 2], S[:, 1, 4]
    H[:, 2, 2] = S[:, 2, 0]
    H[:, 0, 1], H[:, 0, 4], H[:, 1, 3], H[:, 3, 4] = S[:, 3, 0], -S[:, 3, 2], -S[:, 3, 1], S[:, 3, 5]
    H[:, 0, 2], H[:, 2, 3] = S[:, 4, 0], -S[:, 4, 1]
    H[:, 1, 2], H[:, 2, 4] = S[:, 5, 0], -S[:, 5, 2]
    upper = np.triu_indices(5, 1)
    H[:, upper[1], upper[0]] = H[:, upper[0], upper[1]]
    return g, H


def to_public(theta) -> dict:
    a, b, e, al, be = np.asarray(theta, dtype=float)
    with np.errstate(over="ignore"):  # an unidentified term's amplitude can be beyond float range: inf, said so
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
    """The form; with a loss `floor`, E >= floor (bound e >= log floor), or E = floor with offset="floor"."""

    name = "chinchilla"
    names = NAMES
    n_params = 5
    batched = True

    def __init__(self, floor: float | None = None, offset: str = "free"):
        self.floor, self.offset = floor, offset
        if floor is not None:
            le = float(np.log(floor))
            self.bounds = [(None, None), (None, None), (le, le if offset == "floor" else None), (None, None),
                           (None, None)]

    def logpred(self, theta, lN, lD, grad=True):
        return logpred(theta, lN, lD, grad)

    def batch_logpred(self, T, lN, lD):
        return batch_logpred(T, lN, lD)

    def batch_jacobian(self, aux, lN, lD):
        return batch_jacobian(aux, lN, lD)

    def batch_newton(self, aux, lN, lD, c, p):
        return batch_newton(aux, lN, lD, c, p)

    def to_public(self, theta):
        p = to_public(theta)
        if self.floor is not None:  # exp(log floor) may round one ulp below the floor: report the floor itself
            p["E"] = self.floor if self.offset == "floor" else max(p["E"], self.floor)
        return p

    def from_public(self, params):
        return from_public(params)

    def derived(self, params, settings):
        return derived(params, settings.get("budget"))

    def starts(self, data, settings):
        if settings["solver"] == "varpro":
            grid = varpro.default_grid(settings["grid"])
            rows = varpro.profile(data, grid, grid, floor=self.floor or 0.0, free_offset=self.offset == "free")
            return varpro.best_cells(rows, settings["refine"])
        if settings["solver"] == "lbfgs":
            return self.clip(hoffmann_grid())
        raise UserError(f"chinchilla: unknown solver {settings['solver']!r} (varpro, lbfgs)")


def _check_floor(floor):
    if floor is None:
        return None
    try:
        value = float(floor)
    except (TypeError, ValueError):
        raise UserError(f"chinchilla: floor must be a number, not {floor!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise UserError(f"chinchilla: floor must be a positive finite loss, got {floor!r}")
    return value


class Chinchilla(Estimator2D):
    """L = E + A/N^alpha + B/D^beta by Huber (delta 1e-3) on log loss, with optional bootstrap over runs.

    Settings:
    - solver: "varpro" (exponent grid + NNLS, then L-BFGS-B on all five) or "lbfgs" (Hoffmann's 4,500 starts);
    - grid: exponent grid points per axis (varpro); refine: how many grid cells to refine;
    - crosscheck: also run the 4,500-start L-BFGS-B and report the agreement (an int k: k of those starts,
      evenly spread); a lower optimum found there marks the fit failed;
    - starts: explicit starting points (dicts of E, A, B, alpha, beta) replacing the solver's own;
    - bootstrap: resamples of the rows (0: none); interval: "bca" or "percentile" reported (both saved);
    - bootstrap_solver: "newton" (all draws at once, newton2d; draws it does not settle are refitted one by one)
      or "lbfgs" (every draw by L-BFGS-B, the reference path);
    - budget: FLOPs for N_opt, D_opt, tokens per parameter (default: the table's largest 6 N D);
    - floor: a known loss floor (the data's entropy), a lower bound on E in the fit and in every refit
      (None: E >= 0); offset: "free" (E fitted, >= floor) or "floor" (E fixed at the floor, needs a floor);
    - weights: "none" (every run alike) or "se": w_i ~ (L_i / se_i)^2, mean 1, from fit(..., se=...), in the fit
      and every bootstrap and jackknife refit (fit/weights.py);
    - confidence, seed, workers (processes; None: all cores), maxiter (L-BFGS-B iterations per start).
    """

    name = "chinchilla"
    form = ChinchillaForm()
    min_points = 6

    def __init__(self, *, solver="varpro", grid=40, refine=8, crosscheck=False, starts=None, bootstrap=0,
                 budget=None, confidence=0.95, seed=0, workers=None, interval="bca", maxiter=5000,
                 bootstrap_solver="newton", floor=None, offset="free", weights="none"):
        super().__init__(solver=solver, grid=grid, refine=refine, crosscheck=crosscheck, starts=starts,
                         bootstrap=bootstrap, budget=budget, confidence=confidence, seed=seed, workers=workers,
                         interval=interval, maxiter=maxiter, bootstrap_solver=bootstrap_solver,
                         floor=_check_floor(floor), offset=offset, weights=weights)
        self._check_settings(offset=("free", "floor"), bootstrap_solver=("newton", "lbfgs"))
        if offset == "floor" and floor is None:
            raise UserError("chinchilla: offset='floor' fixes E at the loss floor and needs one (floor=...)")
        self.form = ChinchillaForm(self.settings["floor"], offset)

    def fit(self, N, D=None, loss=None, *, label: str = "", se=None) -> FitResult:
        result = super().fit(N, D, loss, label=label, se=se)
        if result.converged:
            record_term_sizes(result, N, D, loss)
        floor = self.settings["floor"]
        if floor is None:
            E = result.params.get("E", np.nan)
            # no floor known: E's bound is 0. An offset of 0 is no estimate of a loss the runs tend to (data with
            # any entropy has a positive one): the fit described the sampled range with a pure sum of power laws
            if result.converged and np.isfinite(E) and E <= AT_ZERO * float(np.median(np.asarray(loss, float))):
                result.diagnostics.setdefault("at_bound", []).append("E")
                result.diagnostics.setdefault("notes", []).append(
                    f"E reached its lower bound 0 (no loss floor is known for these runs): the offset is not "
                    "identified, and alpha and beta describe the sampled range, not the limit")
            return result
        diag, E = result.diagnostics, result.params["E"]
        fixed = self.settings["offset"] == "floor"
        diag.update(loss_floor=floor, offset="fixed at the floor" if fixed else "bounded by the floor")
        if fixed:
            diag["fixed"] = ["E"]
            diag.setdefault("notes", []).append(
                f"E is fixed at the loss floor {floor:.6g} (offset='floor'); A, B, alpha and beta are fitted with it")
        elif np.isfinite(E) and E <= floor * (1 + AT_FLOOR_RTOL):
            diag.setdefault("at_bound", []).append("E")
            diag.setdefault("notes", []).append(
                f"E reached the loss floor {floor:.6g}: the offset is not identified above the floor, and the fit "
                "is constrained there")
        return result

    def _draw_diagnostics(self, diag, names, draws):
        floor = self.settings["floor"]
        if floor is not None and self.settings["offset"] == "free":
            E = draws[:, names.index("E")]
            diag["bootstrap_E_at_floor"] = int(np.sum(E <= floor * (1 + AT_FLOOR_RTOL)))


def record_term_sizes(result: FitResult, N, D, loss) -> None:
    """How much each term of the fit moves the loss over the sampled sizes, against the fit's residual scatter.

    A term whose change over the sampled range (A (N_min^-alpha - N_max^-alpha), and likewise in D) is less than
    twice the residuals' RMS is not identified, whatever its exponent's interval says: on runs whose loss does not move
    with N the fit can put alpha at 2 with A tiny, an interval clear of 0, and an N_opt of 0.2 parameters (measured,
    benchmarks/RESULTS.md, "The N axis"). fit/resolved.py reads these."""
    N, D, L = (np.asarray(v, dtype=float) for v in (N, D, loss))
    p = result.params
    with np.errstate(over="ignore", invalid="ignore"):
        moves = {"alpha": p["A"] * (N.min() ** -p["alpha"] - N.max() ** -p["alpha"]),
                 "beta": p["B"] * (D.min() ** -p["beta"] - D.max() ** -p["beta"])}
        rms = float(np.sqrt(np.mean((L - predict(result, N, D)) ** 2)))
    result.diagnostics["term_moves"] = {k: float(v) for k, v in moves.items()}
    result.diagnostics["residual_rms"] = rms


@register_form("chinchilla")
def predict(result, N, D):
    p = result.params
    # a wild fit (a form comparison's split, a bootstrap draw) can overflow far from its data: the prediction is
    # then inf or nan, which every caller treats as no prediction, not a warning on the user's terminal
    with np.errstate(over="ignore", invalid="ignore"):
        return p["E"] + p["A"] * np.exp(-p["alpha"] * np.log(N)) + p["B"] * np.exp(-p["beta"] * np.log(D))
