"""Surrogate surfaces L^(N, D): the two regressions PAPER.md prefers to the Chinchilla and Kaplan forms.

- `MLPSurrogate`: a 3-layer GELU MLP 2 -> n -> n -> 1 trained full-batch with AdamW (torch, imported lazily
  inside `fit` only, so `import scalingkit.fit` and even this module never import torch). Prediction is plain
  numpy from the stored weights, so a saved result predicts without torch.
- `KernelSurrogate`: kernel ridge regression with an additive RBF kernel k_N + k_D + k_ND and Huber loss by
  iteratively reweighted least squares; numpy/scipy only.

Both regress the loss (linear units) on standardised (log10 N, log10 D); the target is standardised too, and
all scalers are stored in `result.state` with the model, so `result.predict(N, D)` and `predict_grid` work on a
result loaded from JSON. These are interpolators: inside the data's (N, D) range they are good, outside it
they have no law to extrapolate with (the kernel reverts to the mean loss, the MLP continues linearly in the
logs); `predict_grid` defaults to the data's range for that reason.
"""
from __future__ import annotations

import time

import numpy as np
from scipy import special
from scipy.linalg import cho_factor, cho_solve, eigh

from scalingkit.errors import UserError
from scalingkit.fit.base import Estimator, FitResult, register_form
from scalingkit.fit.provenance import provenance
from scalingkit.fit.threads import blas_single

__all__ = ["MLPSurrogate", "KernelSurrogate", "predict_grid", "log_grid", "additive_rbf_kernel"]


# -- shared pieces ------------------------------------------------------------------------------------------
def _log_inputs(N, D) -> np.ndarray:
    """(m, 2) array of (log10 N, log10 D); N and D broadcast against each other."""
    N, D = np.broadcast_arrays(np.asarray(N, dtype=float), np.asarray(D, dtype=float))
    if np.any(N <= 0) or np.any(D <= 0):
        raise UserError("surrogate prediction needs positive N and D")
    return np.column_stack([np.log10(N).ravel(), np.log10(D).ravel()])


def _scalers(X: np.ndarray, y: np.ndarray) -> dict:
    """Mean/std of the inputs and of the target. A constant column (one N only) gets scale 1, not 0."""
    x_scale = X.std(axis=0)
    x_scale = np.where(x_scale > 0, x_scale, 1.0)
    y_scale = float(y.std()) if y.std() > 0 else 1.0
    return {
        "x_mean": X.mean(axis=0).tolist(), "x_scale": x_scale.tolist(),
        "y_mean": float(y.mean()), "y_scale": y_scale,
        "N_range": [float(10 ** X[:, 0].min()), float(10 ** X[:, 0].max())],
        "D_range": [float(10 ** X[:, 1].min()), float(10 ** X[:, 1].max())],
    }


def _standardise(state: dict, X: np.ndarray) -> np.ndarray:
    return (X - np.asarray(state["x_mean"])) / np.asarray(state["x_scale"])


def log_grid(lo: float, hi: float, n: int = 100) -> np.ndarray:
    """n points log-spaced from lo to hi inclusive."""
    return np.logspace(np.log10(lo), np.log10(hi), int(n))


def predict_grid(result: FitResult, n: int = 100, N_range=None, D_range=None):
    """A fitted surface on a dense log grid: returns (N, D, L) with N (nN,), D (nD,), L[i, j] = L^(N[i], D[j]).

    n is the points per axis (an int, or a pair (nN, nD)). Ranges default to the data's range, stored in the
    state of a surrogate result; other forms need them given. This is what the compute-optimal code minimises
    along C = 6 N D.
    """
    nN, nD = (n, n) if np.isscalar(n) else n
    N_range = N_range if N_range is not None else result.state.get("N_range")
    D_range = D_range if D_range is not None else result.state.get("D_range")
    if N_range is None or D_range is None:
        raise UserError(f"predict_grid: give N_range and D_range for a {result.form} result")
    N = log_grid(*N_range, nN)
    D = log_grid(*D_range, nD)
    L = result.predict(N[:, None], D[None, :]).reshape(nN, nD)
    return N, D, L


def _check_fitted(result: FitResult, *keys: str) -> None:
    missing = [k for k in keys if k not in result.state]
    if missing:
        raise UserError(f"{result.form} result has no model state ({', '.join(missing)}); was it saved without it?")


# -- the MLP surrogate ----------------------------------------------------------------------------------------
class MLPSurrogate(Estimator):
    """3-layer GELU MLP regression of loss on standardised (log10 N, log10 D) (PAPER.md, "Fitting").

    Settings: hidden width n (256; the paper uses 512 on the Chinchilla table), AdamW with `lr` and
    `weight_decay`, up to `max_epochs` full-batch epochs, early stop once the training objective has not
    improved by more than `tol` for `patience` consecutive epochs; the weights with the lowest training
    objective seen are kept. `lr` 1e-3 is AdamW's usual default (the paper gives none). `threads` is torch's
    intra-op thread count during the fit (restored after); 1 by default, measured on the 2-core machine with
    other work running: on the 241-run Chinchilla table, 1,000 epochs took 2.2 s with 1 thread and 120-220 s
    with 2 at n = 256 (torch's worker threads spin-wait for a core), 7.0 s against 5.5 s at n = 512; and
    `compare` already runs one fit per core.

    Model selection uses the training loss, not an internal validation split: the tables this sees are small
    (tens to a few hundred runs laid out on an N x D grid), so holding out 20% would remove whole stretches of
    the surface the surrogate must interpolate; weight decay and early stopping are the regularisers, and
    out-of-sample error is measured where it belongs, by the cross-validation in `scalingkit.fit.compare`.

    The objective (and so `tol`) is the mean squared error of the *standardised* loss (y - mean) / std: for
    the Chinchilla table std(loss) = 0.3, so tol 1e-6 is an improvement of about 1e-7 in MSE of the loss.
    """

    name = "mlp"
    min_points = 8
    ndim = 2

    def __init__(self, hidden: int = 256, weight_decay: float = 1e-4, max_epochs: int = 5000, patience: int = 200,
                 tol: float = 1e-6, lr: float = 1e-3, seed: int = 0, threads: int = 1):
        if int(hidden) < 1 or int(max_epochs) < 1 or int(patience) < 1 or float(lr) <= 0 or int(threads) < 1:
            raise UserError("mlp: hidden, max_epochs, patience, threads must be >= 1 and lr > 0")
        super().__init__(hidden=int(hidden), weight_decay=float(weight_decay), max_epochs=int(max_epochs),
                         patience=int(patience), tol=float(tol), lr=float(lr), seed=int(seed), threads=int(threads))

    @blas_single  # numpy's part is tiny; OpenBLAS threads only spin (torch has its own `threads` setting)
    def fit(self, N, D=None, loss=None, *, label: str = "") -> FitResult:
        N, D, y = self._arrays_2d(N, D, loss)
        s = self.settings
        X = _log_inputs(N, D)
        state = _scalers(X, y)
        Z = _standardise(state, X)
        t = (y - state["y_mean"]) / state["y_scale"]

        t0 = time.perf_counter()
        weights, train = _train_mlp(Z, t, s)
        seconds = time.perf_counter() - t0
        state.update(weights)

        ys2 = state["y_scale"] ** 2
        diagnostics = {
            "epochs": train["epochs"], "best_epoch": train["best_epoch"], "stopped_early": train["stopped_early"],
            "objective_standardised": train["best"], "seconds": seconds,
        }
        prov = provenance(self.name, "AdamW, full batch, early stopping (torch float32)", s,
                          {"N": N, "D": D, "loss": y}, label=label)
        prov["versions"]["torch"] = train["torch"]
        finite = np.isfinite(train["best"]) and all(np.all(np.isfinite(w)) for w in weights.values())
        result = FitResult(self.name, {}, objective=train["best"] * ys2, diagnostics=diagnostics,
                           converged=bool(finite), provenance=prov, state=state)
        if not finite:
            diagnostics["failure"] = "training diverged (non-finite loss or weights)"
            return result
        mse = float(np.mean((result.predict(N, D) - y) ** 2))
        diagnostics["train_mse"] = mse
        diagnostics["train_rmse"] = float(np.sqrt(mse))
        result.params = {
            "hidden": float(s["hidden"]), "weight_decay": s["weight_decay"], "lr": s["lr"],
            "epochs": float(train["epochs"]), "train_rmse": float(np.sqrt(mse)),
        }
        return result


def _train_mlp(Z: np.ndarray, t: np.ndarray, s: dict):
    """Full-batch AdamW on the standardised problem. Returns (weights as float64 numpy arrays, diagnostics)."""
    import torch  # the only place the statistics layer touches torch

    old_threads = torch.get_num_threads()
    torch.set_num_threads(s["threads"])
    try:
        # fork_rng: seed the initialisation without disturbing the caller's global torch RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s["seed"])
            n = s["hidden"]
            net = torch.nn.Sequential(
                torch.nn.Linear(2, n), torch.nn.GELU(),
                torch.nn.Linear(n, n), torch.nn.GELU(),
                torch.nn.Linear(n, 1),
            )
        # float32: twice as fast as float64 on CPU here, and ample for a standardised target (tol 1e-6 on an
        # objective of order 1e-3 is far above float32 rounding).
        x = torch.as_tensor(Z, dtype=torch.float32)
        y = torch.as_tensor(t, dtype=torch.float32).reshape(-1, 1)
        opt = torch.optim.AdamW(net.parameters(), lr=s["lr"], weight_decay=s["weight_decay"])
        params = list(net.parameters())
        best, best_epoch = float("inf"), -1
        reference, stall = float("inf"), 0
        best_params = [p.detach().clone() for p in params]
        epoch = 0
        stopped_early = False
        for epoch in range(1, s["max_epochs"] + 1):
            opt.zero_grad(set_to_none=True)
            objective = torch.mean((net(x) - y) ** 2)
            value = float(objective.detach())
            if not np.isfinite(value):
                break
            # `value` belongs to the weights before this epoch's step: snapshot them if they are the best.
            if value < best:
                best, best_epoch = value, epoch
                for b, p in zip(best_params, params):
                    b.copy_(p.detach())
            # Patience as in Keras/Lightning EarlyStopping(min_delta=tol): the count restarts only when the
            # objective beats the reference by more than tol, and only then does the reference move, so a slow
            # steady descent (less than tol per epoch, more than tol in all) is not mistaken for a plateau.
            if value < reference - s["tol"]:
                reference, stall = value, 0
            else:
                stall += 1
            if stall >= s["patience"]:
                stopped_early = True
                break
            objective.backward()
            opt.step()
        names = ("W1", "b1", "W2", "b2", "W3", "b3")
        weights = {k: p.numpy().astype(np.float64) for k, p in zip(names, best_params)}
    finally:
        torch.set_num_threads(old_threads)
    return weights, {"epochs": epoch, "best_epoch": best_epoch, "best": best, "stopped_early": stopped_early,
                     "torch": torch.__version__}


def _gelu(x: np.ndarray) -> np.ndarray:
    return x * special.ndtr(x)  # exact GELU, x * Phi(x), as torch.nn.GELU() computes it


@register_form("mlp")
def predict_mlp(result: FitResult, N, D) -> np.ndarray:
    """Numpy forward pass of a fitted MLP surrogate; N and D broadcast, the output has their shape."""
    st = result.state
    _check_fitted(result, "W1", "W2", "W3")
    shape = np.broadcast_shapes(np.shape(N), np.shape(D))
    Z = _standardise(st, _log_inputs(N, D))
    W1, b1, W2, b2, W3, b3 = (np.asarray(st[k], dtype=float) for k in ("W1", "b1", "W2", "b2", "W3", "b3"))
    out = np.empty(len(Z))
    for i in range(0, len(Z), 8192):  # bounded memory on big grids
        h = _gelu(Z[i:i + 8192] @ W1.T + b1)
        h = _gelu(h @ W2.T + b2)
        out[i:i + 8192] = (h @ W3.T + b3)[:, 0]
    return (st["y_mean"] + st["y_scale"] * out).reshape(shape)


# -- the kernel ridge surrogate -------------------------------------------------------------------------------
def additive_rbf_kernel(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """k(a, b) = k_N + k_D + k_ND on standardised (log10 N, log10 D): three unit-weight, unit-length RBFs.

    k_N = exp(-(aN - bN)^2 / 2), k_D likewise in D, k_ND = exp(-|a - b|^2 / 2) = k_N * k_D.
    Written by hand: scikit-learn is not a dependency, and the kernel is three lines of numpy.
    """
    dN = (A[:, None, 0] - B[None, :, 0]) ** 2
    dD = (A[:, None, 1] - B[None, :, 1]) ** 2
    kN = np.exp(-0.5 * dN)
    kD = np.exp(-0.5 * dD)
    return kN + kD + kN * kD


# Ridge strengths tried by leave-one-out (on the standardised target): 1e-8 ... 1e2, four per decade.
RIDGE_GRID = 10.0 ** np.arange(-8.0, 2.01, 0.25)
ROUNDS = 8  # ridge/delta selection rounds, each followed by IRLS: 2 on clean data, 4-6 with gross outliers


def _loo_for_weights(K: np.ndarray, t: np.ndarray, w: np.ndarray):
    """Closed-form leave-one-out residuals of the weighted kernel ridge fit, for any ridge, from one eigh.

    With W = diag(w): the fit is f = W^-1/2 H~ W^1/2 t, H~ = K~ (K~ + ridge I)^-1, K~ = W^1/2 K W^1/2; with the
    weights held fixed the leave-one-out residual is (t_i - f_i) / (1 - H~_ii). Returns (function, eigenvalues).
    """
    sw = np.sqrt(np.maximum(w, 1e-12))
    e, Q = eigh(sw[:, None] * K * sw[None, :])
    e = np.clip(e, 0.0, None)
    u = Q.T @ (sw * t)
    Q2 = Q ** 2

    def loo_residuals(ridge: float) -> np.ndarray:
        shrink = e / (e + ridge)
        fitted = (Q @ (shrink * u)) / sw
        h = Q2 @ shrink  # diagonal of the hat matrix
        return (t - fitted) / np.maximum(1.0 - h, 1e-12)

    return loo_residuals, e


def _irls(K: np.ndarray, t: np.ndarray, ridge: float, delta: float, max_iter: int, tol: float):
    """Huber kernel ridge by IRLS from unit weights: (K + ridge W^-1) alpha = t, w = min(1, delta/|r|).

    The penalised Huber objective is strictly convex, so the start does not matter; stops when the largest
    weight change is below tol. Returns (alpha, residuals, weights, iterations, converged, last change).
    """
    w = np.ones_like(t)
    change, it = np.inf, 0
    for it in range(1, max_iter + 1):
        alpha = cho_solve(cho_factor(K + np.diag(ridge / w), lower=True, check_finite=False), t, check_finite=False)
        r = t - K @ alpha
        w_new = np.minimum(1.0, delta / np.maximum(np.abs(r), 1e-300))
        change = float(np.max(np.abs(w_new - w)))
        w = w_new
        if change < tol:
            return alpha, r, w, it, True, change
    return alpha, r, w, it, False, change


class KernelSurrogate(Estimator):
    """Kernel ridge regression with the additive RBF kernel and Huber loss by IRLS (PAPER.md, "Fitting").

    Minimises sum_i rho_delta(t_i - f(z_i)) + ridge/2 |f|^2_K over f = sum_j alpha_j k(., z_j), on the
    standardised target t; IRLS solves (K + ridge W^-1) alpha = t by Cholesky with Huber weights
    w_i = min(1, delta/|r_i|) until the weights stop changing (max |dw| < tol).

    Settings:
    - ridge: a number, or "loo" (default): the value in RIDGE_GRID with the lowest closed-form leave-one-out
      MSE. The paper gives no value, and the best one moves by orders of magnitude between tables (about 1e-5
      on a smooth synthetic grid, 3e-3 on the noisier Chinchilla table), so a fixed default would be wrong for
      one of them.
    - huber_delta: a number in loss units, "mad" (default) or None (plain least squares). "mad" is
      1.4826 * MAD of the leave-one-out residuals, a robust estimate of the noise scale: the same rule as the
      1-d fits (delta = 1.4826 MAD), applied to residuals. Leave-one-out residuals, because in-sample residuals
      of a flexible fit are shrunk toward 0 and would make delta too small.

    Choosing the ridge by a plain leave-one-out would let outliers choose it (they inflate their neighbours'
    leave-one-out residuals, and the choice swings to heavy smoothing), so the choice is made in rounds: round 1
    is plain ridge LOO, then delta, then IRLS; the next round repeats the choice with the leave-one-out
    residuals of the weighted fit, weighted by the Huber weights; it stops when the ridge and delta settle
    (2 rounds on clean data, 4-6 with gross outliers; at most ROUNDS). Within a round delta and the ridge are
    fixed, so IRLS descends one convex objective.
    """

    name = "kernel"
    min_points = 8
    ndim = 2

    def __init__(self, ridge: float | str = "loo", huber_delta: float | str | None = "mad", max_iter: int = 100,
                 tol: float = 1e-6):
        if not (ridge == "loo" or (isinstance(ridge, (int, float)) and ridge > 0)):
            raise UserError(f"kernel: ridge must be a positive number or 'loo', got {ridge!r}")
        if not (huber_delta is None or huber_delta == "mad" or (isinstance(huber_delta, (int, float))
                                                                  and huber_delta > 0)):
            raise UserError(f"kernel: huber_delta must be a positive number, 'mad' or None, got {huber_delta!r}")
        if int(max_iter) < 1:
            raise UserError("kernel: max_iter must be >= 1")
        super().__init__(ridge=ridge if ridge == "loo" else float(ridge), huber_delta=huber_delta,
                         max_iter=int(max_iter), tol=float(tol))

    @blas_single  # 240 x 240 problems: OpenBLAS threads gain nothing and, on a busy machine, cost 5-100x
    def fit(self, N, D=None, loss=None, *, label: str = "") -> FitResult:
        N, D, y = self._arrays_2d(N, D, loss)
        s = self.settings
        t0 = time.perf_counter()
        X = _log_inputs(N, D)
        state = _scalers(X, y)
        Z = _standardise(state, X)
        ys = state["y_scale"]
        t = (y - state["y_mean"]) / ys
        K = additive_rbf_kernel(Z, Z)

        # Rounds: pick the ridge by leave-one-out (weighted by the current Huber weights, so that outliers pull
        # on neither the fit nor the choice), set delta from the leave-one-out residuals, run IRLS; repeat with
        # the new weights until the ridge and delta settle (at most ROUNDS). Round 1 is plain ridge LOO.
        w = np.ones_like(t)
        ridge = delta = None
        at_edge, rounds, settled = False, 0, False
        for _ in range(ROUNDS):
            loo_residuals, e = _loo_for_weights(K, t, w)
            if s["ridge"] == "loo":
                crit = np.array([np.sum(w * loo_residuals(r) ** 2) / np.sum(w) for r in RIDGE_GRID])
                i = int(np.nanargmin(crit))
                new_ridge, at_edge = float(RIDGE_GRID[i]), i in (0, len(RIDGE_GRID) - 1)
            else:
                new_ridge = s["ridge"]
            r_loo = loo_residuals(new_ridge)
            if s["huber_delta"] is None:
                new_delta = np.inf
            elif s["huber_delta"] == "mad":
                mad = float(np.median(np.abs(r_loo - np.median(r_loo))))
                new_delta = 1.4826 * mad if mad > 0 else 0.1  # fallback 0.1 std(loss), as for the 1-d fits
            else:
                new_delta = float(s["huber_delta"]) / ys
            if new_ridge == ridge and (new_delta == delta or abs(new_delta / delta - 1) < 0.05):
                settled = True  # the fit of the previous round stands
                break
            ridge, delta = new_ridge, new_delta
            alpha, r, w, it, converged, change = _irls(K, t, ridge, delta, s["max_iter"], s["tol"])
            rounds += 1
            if not np.isfinite(delta):
                settled = True  # plain least squares: nothing to reweight
                break
        seconds = time.perf_counter() - t0

        absr = np.abs(r)
        rho = np.where(absr <= delta, 0.5 * r ** 2, delta * absr - 0.5 * delta ** 2) if np.isfinite(delta) \
            else 0.5 * r ** 2
        objective = float(np.sum(rho) + 0.5 * ridge * alpha @ K @ alpha) * ys ** 2
        train_mse = float(np.mean(r ** 2)) * ys ** 2
        state.update({"Z": Z, "alpha": alpha})
        diagnostics = {
            "irls_iterations": it, "irls_converged": converged, "rounds": rounds, "selection_settled": settled,
            "ridge_selected_by": str(s["ridge"]),
            "ridge_at_grid_edge": at_edge, "loo_mse": float(np.mean(r_loo ** 2)) * ys ** 2,
            "n_downweighted": int(np.sum(w < 1.0)), "effective_dof": float(np.sum(e / (e + ridge))),
            "train_mse": train_mse, "train_rmse": float(np.sqrt(train_mse)), "seconds": seconds,
        }
        if not converged:
            diagnostics["failure"] = (f"IRLS did not settle in {s['max_iter']} iterations "
                                      f"(max weight change {change:.2g})")
        params = {
            "ridge": ridge, "huber_delta": float(delta * ys), "irls_iterations": float(it),
            "train_rmse": float(np.sqrt(train_mse)),
        }
        prov = provenance(self.name, "kernel ridge, additive RBF, Huber IRLS (Cholesky)", s,
                          {"N": N, "D": D, "loss": y}, label=label)
        return FitResult(self.name, params, objective=objective, diagnostics=diagnostics, converged=converged,
                         provenance=prov, state=state)


@register_form("kernel")
def predict_kernel(result: FitResult, N, D) -> np.ndarray:
    """f(z) = sum_j alpha_j k(z, z_j), back in loss units; N and D broadcast, the output has their shape."""
    st = result.state
    _check_fitted(result, "Z", "alpha")
    shape = np.broadcast_shapes(np.shape(N), np.shape(D))
    Z = _standardise(st, _log_inputs(N, D))
    Zt = np.asarray(st["Z"], dtype=float)
    alpha = np.asarray(st["alpha"], dtype=float)
    out = np.empty(len(Z))
    for i in range(0, len(Z), 4096):
        out[i:i + 4096] = additive_rbf_kernel(Z[i:i + 4096], Zt) @ alpha
    return (st["y_mean"] + st["y_scale"] * out).reshape(shape)
