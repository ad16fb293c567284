"""Robust 1-d curve fits y(x) with a wild bootstrap: the machinery the power law and the exponential share.

PAPER.md, "Fitting": Huber loss on linear residuals (delta = 1.4826 MAD(y)), x scaled by x0 = median(x), bounded
trust-region least squares (scipy.optimize.least_squares, method "trf", loss "huber") from 40 starts, keep the
lowest objective. Uncertainty: fixed-x wild bootstrap (Rademacher signs on the residuals), each draw refitted
warm-started from the estimate, BCa intervals with the jackknife acceleration. Also: the window sensitivity
(refit without the smallest / the largest x) and the MSE against the competing form.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.optimize import least_squares

from scalingkit.errors import UserError
from scalingkit.fit import bootstrap as bs
from scalingkit.fit import registry
from scalingkit.fit.base import Estimator, FitResult
from scalingkit.fit.batchlm import batch_lm
from scalingkit.fit.huber import mad_delta
from scalingkit.fit.parallel import map_split
from scalingkit.fit.provenance import provenance
from scalingkit.fit.threads import blas_single


@dataclass(frozen=True)
class Curve:
    """A 3-parameter curve y = f(p, u) on the scaled axis u = x / x0 (internal parameters p)."""

    form: str
    names: tuple[str, str, str]  # public parameter names (defaults; an estimator may rename)
    f: Callable[[np.ndarray, np.ndarray], np.ndarray]
    jac: Callable[[np.ndarray, np.ndarray], np.ndarray]
    lower: tuple[float, float, float]
    upper: tuple[float, float, float]
    starts: Callable[[np.ndarray, np.ndarray, int], np.ndarray]  # (u, y, n_starts) -> (k, 3)
    to_public: Callable[[np.ndarray, float], np.ndarray]  # internal (..., 3), x0 -> public (..., 3)
    exponent: int  # index of the parameter whose sensitivity the window report follows


def _solve(curve: Curve, u, y, p0, delta, max_nfev=200):
    p0 = np.clip(p0, np.nextafter(curve.lower, np.inf), np.nextafter(curve.upper, -np.inf))
    return least_squares(
        lambda p: curve.f(p, u) - y,
        p0,
        jac=lambda p: curve.jac(p, u),
        bounds=(curve.lower, curve.upper),
        method="trf",
        loss="huber",
        f_scale=delta,
        max_nfev=max_nfev,
    )


def _batch(curve: Curve, u, Y, P0, delta, M=None):
    return batch_lm(curve.f, curve.jac, u, Y, P0, delta, np.array(curve.lower), np.array(curve.upper), M=M)


def multistart(curve: Curve, u, y, delta, n_starts=40):
    """All starts solved together (batch LM), the best polished by scipy's bounded trust region.

    Returns (OptimizeResult or None, array of every start's final cost).
    """
    P0 = curve.starts(u, y, n_starts)
    P, costs, ok = _batch(curve, u, np.broadcast_to(y, (len(P0), len(y))), P0, delta)
    costs = np.where(ok, costs, np.inf)
    if not np.isfinite(costs).any():
        return None, costs
    best = _solve(curve, u, y, P[np.argmin(costs)], delta)
    if not (best.status > 0 and np.all(np.isfinite(best.x))):
        return None, costs
    return best, costs


@blas_single
def refit_rows(Y: np.ndarray, curve: Curve, u, p0, delta) -> np.ndarray:
    """Refit each row of Y (bootstrap responses) warm-started at p0; NaN rows where a solve fails."""
    P, _, ok = _batch(curve, u, Y, np.tile(p0, (len(Y), 1)), delta)
    P[~ok] = np.nan
    return P


def jackknife(curve: Curve, u, y, p0, delta) -> np.ndarray:
    """Leave-one-out estimates (internal parameters), warm-started at p0: the BCa acceleration.

    Leaving a point out is a zero weight on it, so all n fits run as one batch.
    """
    n = len(y)
    P, _, ok = _batch(curve, u, np.broadcast_to(y, (n, n)), np.tile(p0, (n, 1)), delta, M=1.0 - np.eye(n))
    P[~ok] = np.nan
    return P


def leverage(J: np.ndarray) -> np.ndarray:
    """Diagonal of the hat matrix J (J'J)^-1 J' of the linearised fit."""
    Q, _ = np.linalg.qr(J)
    return np.sum(Q**2, axis=1)


class Curve1D(Estimator):
    """Common estimator for 1-d forms; subclasses set `curve`."""

    curve: Curve
    ndim = 1
    min_points = 4  # three parameters and at least one degree of freedom

    def __init__(
        self,
        *,
        starts: int = 40,
        bootstrap: int = 4000,
        confidence: float = 0.95,
        seed: int | None = 0,
        workers: int | None = None,
        leverage_adjust: str = "hc3",
        window: bool = True,
        alternative: bool = True,
        delta: float | None = None,
        names: tuple[str, str, str] | None = None,
    ):
        # leverage_adjust: raw residuals are smaller than the errors by about the share of parameters to points
        # and make intervals too short; "hc3" resamples r / (1 - h), "hc2" r / sqrt(1 - h) (Davidson &
        # Flachaire 2008, MacKinnon 2012), h the leverage of the linearised fit.
        super().__init__(
            starts=starts, bootstrap=bootstrap, confidence=confidence, seed=seed, workers=workers,
            leverage_adjust=leverage_adjust, window=window, alternative=alternative, delta=delta,
            names=tuple(names or self.curve.names),
        )
        self._check_settings(leverage_adjust=("hc3", "hc2", "none"))
        if int(starts) < 1 or len(self.settings["names"]) != 3:
            raise UserError(f"{self.name}: starts must be >= 1 and names three parameter names")

    # -- the fit --------------------------------------------------------------------------------------------
    @blas_single
    def fit(self, x, y=None, loss=None, *, xcol: str = "N", label: str = "") -> FitResult:
        x, y = self._arrays_1d(x, y, xcol=xcol)
        s = self.settings
        names = list(s["names"])
        x0 = float(np.median(x))
        u = x / x0
        delta = float(s["delta"]) if s["delta"] else mad_delta(y)
        best, costs = multistart(self.curve, u, y, delta, s["starts"])
        prov = provenance(self.name, "least_squares(trf, huber), multi-start", s, {"x": x, "y": y}, label=label)
        if best is None:
            diag = {"failure": "no start converged", "starts": s["starts"], "delta": delta}
            return FitResult(self.name, dict.fromkeys(names, np.nan), diagnostics=diag, converged=False,
                             provenance=prov, state={"names": names, "x0": x0})
        p = best.x
        theta = self.curve.to_public(p, x0)
        yhat = self.curve.f(p, u)
        r = y - yhat
        near = costs <= best.cost * (1 + 1e-6) + 1e-15
        diag = {
            "delta": delta, "x0": x0, "mse": float(np.mean(r**2)), "optimality": float(best.optimality),
            "starts": int(s["starts"]), "starts_at_best": int(near.sum()),
            "at_bound": [n for n, v, lo, hi in zip(names, p, self.curve.lower, self.curve.upper)
                         if np.isclose(v, lo) or np.isclose(v, hi)],
        }
        result = FitResult(
            self.name, dict(zip(names, map(float, theta))), objective=float(best.cost), diagnostics=diag,
            provenance=prov, state={"names": names, "x0": x0},
        )
        if s["bootstrap"]:
            self._wild_bootstrap(result, u, y, p, yhat, r, delta, x0)
        if s["window"]:
            diag["window"] = self._window(x, y, theta)
        if s["alternative"]:
            self._compare_alternative(diag, x, y)
        return result

    # -- uncertainty ----------------------------------------------------------------------------------------
    def _wild_bootstrap(self, result, u, y, p, yhat, r, delta, x0):
        s = self.settings
        resid = r
        if s["leverage_adjust"] in ("hc2", "hc3"):
            h = np.clip(leverage(self.curve.jac(p, u)), 0.0, 0.99)
            resid = r / (np.sqrt(1.0 - h) if s["leverage_adjust"] == "hc2" else (1.0 - h))
        signs = bs.wild_signs(s["seed"], int(s["bootstrap"]), len(y))
        Y = yhat + signs * resid
        # Batched refits run ~10 us each: only very large jobs are worth spreading over processes.
        draws = map_split(refit_rows, Y, self.curve, u, p, delta, workers=s["workers"], min_per_worker=20000)
        jack = jackknife(self.curve, u, y, p, delta)
        pub_draws = self.curve.to_public(draws, x0)
        pub_jack = self.curve.to_public(jack, x0)
        theta = np.array(list(result.params.values()))
        alpha = 1 - s["confidence"]
        lo, hi = bs.bca_interval(theta, pub_draws, pub_jack, alpha)
        names = list(result.params)
        result.intervals = {n: (float(a), float(b)) for n, a, b in zip(names, lo, hi)}
        se = bs.standard_error(pub_draws)
        result.diagnostics.update(
            interval_method="wild bootstrap, BCa", bootstrap_draws=int(s["bootstrap"]),
            bootstrap_failed=int(np.sum(~np.all(np.isfinite(draws), axis=1))),
            **{f"se_{n}": float(v) for n, v in zip(names, se)},
        )

    def _window(self, x, y, theta) -> dict:
        """Refit without the smallest x, the largest x, and both: how far the exponent moves."""
        order = np.argsort(x)
        k = self.curve.exponent
        name = self.settings["names"][k]
        out = {}
        for label, drop in (("drop_smallest", order[:1]), ("drop_largest", order[-1:]),
                            ("drop_both", np.r_[order[:1], order[-1:]])):
            keep = np.setdiff1d(np.arange(len(x)), drop)
            if len(keep) < self.min_points:
                continue
            xs, ys = x[keep], y[keep]
            x0 = float(np.median(xs))
            best, _ = multistart(self.curve, xs / x0, ys, mad_delta(ys) if not self.settings["delta"]
                                 else self.settings["delta"], self.settings["starts"])
            if best is not None:
                out[label] = float(self.curve.to_public(best.x, x0)[k])
        if out:
            out["max_shift"] = float(max(abs(v - theta[k]) for v in out.values()))
            out["parameter"] = name
        return out

    def _compare_alternative(self, diag, x, y):
        other_cls = registry.estimator_class("exponential" if self.name == "powerlaw" else "powerlaw")
        other = other_cls(starts=self.settings["starts"], bootstrap=0, window=False, alternative=False,
                          delta=self.settings["delta"]).fit(x, y)
        if other.converged:
            diag[f"mse_{other.form}"] = other.diagnostics["mse"]
            mse_pow = diag["mse"] if self.name == "powerlaw" else other.diagnostics["mse"]
            mse_exp = other.diagnostics["mse"] if self.name == "powerlaw" else diag["mse"]
            # < 1: the power law fits better than the exponential.
            diag["mse_ratio_power_vs_exp"] = float(mse_pow / mse_exp) if mse_exp > 0 else np.nan


def offset_guesses(y: np.ndarray, n: int) -> np.ndarray:
    """Starting offsets from quantiles of y (half) and fractions of min(y) (half): from the data's floor up."""
    half = n - n // 2
    q = np.quantile(y, np.linspace(0.0, 0.5, n // 2)) if n // 2 else np.empty(0)
    below = np.min(y) * np.linspace(0.0, 0.975, half)
    return np.r_[below, q][:n]
