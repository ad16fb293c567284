"""Robust 1-d curve fits y(x) with a wild bootstrap: the machinery the power law and the exponential share.

PAPER.md, "Fitting": Huber loss on linear residuals (delta = 1.4826 MAD(y)), x scaled by x0 = median(x), bounded
trust-region least squares (scipy.optimize.least_squares, method "trf", loss "huber") from 40 starts, keep the
lowest objective. Uncertainty: fixed-x wild bootstrap (Rademacher signs on the residuals), each draw refitted
warm-started from the estimate, BCa intervals with the jackknife acceleration. Also: the window sensitivity
(refit without the smallest / the largest x), the MSE against the competing form and the verdict on which form
the slice follows (fit/verdict.py).

The offset (E of the power law, a of the exponential) can be tied to the data's exact loss floor (its entropy:
no model's expected loss goes below it). `floor=F` makes F the offset's lower bound (instead of 0); adding
`offset="floor"` fixes the offset at F and fits the other two parameters (fit/offset.py). Every refit (bootstrap draws,
jackknife, window refits, the competing form) keeps the same constraint, so like is compared with like.

weights="se" weights the points by their standard errors (fit(..., se=...); fit/weights.py): the objective becomes
sum_i w_i H_delta(r_i), w_i ~ 1/se_i^2 with mean 1, in every fit and refit above (bootstrap draws, jackknife,
window, competing form, the verdict's leave-one-out refits), and the MSEs and the verdict's errors are weighted
means with the same w. The wild bootstrap's residuals keep their own sizes (the signs carry the heteroscedasticity);
their leverage is the weighted fit's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.optimize import least_squares

from scalingkit.errors import UserError
from scalingkit.fit import bootstrap as bs
from scalingkit.fit import registry
from scalingkit.fit import weights as wts
from scalingkit.fit.base import Estimator, FitResult
from scalingkit.fit.batchlm import batch_lm
from scalingkit.fit.huber import mad_delta
from scalingkit.fit.offset import OFFSETS, constrained
from scalingkit.fit.parallel import map_split
from scalingkit.fit.provenance import provenance
from scalingkit.fit.threads import blas_single


@dataclass(frozen=True)
class Curve:
    """A curve y = f(p, u) = offset + amplitude * g(rate, u) on the scaled axis u = x / x0.

    The internal parameters p are (offset, amplitude, rate), or (amplitude, rate) when the offset is fixed
    (offset.constrained); `free` says which of the three public parameters p holds.
    """

    form: str
    names: tuple[str, str, str]  # public parameter names (defaults; an estimator may rename)
    f: Callable[[np.ndarray, np.ndarray], np.ndarray]
    jac: Callable[[np.ndarray, np.ndarray], np.ndarray]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    starts: Callable[..., np.ndarray]  # (u, y, n_starts[, lo: the offset's lower bound]) -> (k, len(free))
    to_public: Callable[[np.ndarray, float], np.ndarray]  # internal (..., len(free)), x0 -> public (..., 3)
    exponent: int  # index of the public parameter whose sensitivity the window report follows
    rates: tuple[float, float] = (0.05, 20.0)  # range of starting rates (on u) when the offset is fixed
    free: tuple[int, ...] = (0, 1, 2)  # the public parameters p holds, in order
    fixed_offset: float | None = None  # the offset's value where p does not hold it

    def full(self, p) -> np.ndarray:
        """Internal parameters (..., len(free)) -> (offset, amplitude, rate) (..., 3)."""
        p = np.asarray(p, dtype=float)
        if self.fixed_offset is None:
            return p
        return np.concatenate([np.full(p.shape[:-1] + (1,), self.fixed_offset), p], axis=-1)


def _solve(curve: Curve, u, y, p0, delta, max_nfev=200, w=None):
    p0 = np.clip(p0, np.nextafter(curve.lower, np.inf), np.nextafter(curve.upper, -np.inf))
    return least_squares(
        lambda p: curve.f(p, u) - y,
        p0,
        jac=lambda p: curve.jac(p, u),
        bounds=(curve.lower, curve.upper),
        method="trf",
        loss="huber" if w is None else _weighted_huber(w),
        f_scale=delta,
        max_nfev=max_nfev,
    )


def _weighted_huber(w):
    """scipy's "huber" rho with point i's rho, rho' and rho'' multiplied by w_i: the exact weighted polish.

    least_squares minimises 0.5 f_scale^2 sum_i rho_i((r_i / f_scale)^2); with rho_i = w_i rho_huber that is
    sum_i w_i H_delta(r_i), the objective batch_lm minimises with M = w. (A scalar f_scale cannot express the
    weights otherwise: w H_d(r) = H_(d sqrt w)(sqrt(w) r) would need a delta per point.) Same formulas as
    scipy.optimize._lsq.least_squares.huber, so weights of 1 give its numbers.
    """
    w = np.asarray(w, dtype=float)

    def rho(z):
        out = np.empty((3, z.size))
        inside = z <= 1
        zo = np.where(inside, 1.0, z)  # no 0 ** -0.5 on the inside rows (discarded there)
        out[0] = np.where(inside, z, 2 * zo**0.5 - 1)
        out[1] = np.where(inside, 1.0, zo**-0.5)
        out[2] = np.where(inside, 0.0, -0.5 * zo**-1.5)
        return out * w

    return rho


def _batch(curve: Curve, u, Y, P0, delta, M=None):
    return batch_lm(curve.f, curve.jac, u, Y, P0, delta, np.array(curve.lower), np.array(curve.upper), M=M)


def multistart(curve: Curve, u, y, delta, n_starts=40, w=None):
    """All starts solved together (batch LM), the best polished by scipy's bounded trust region.

    w: per-point weights (None: all 1), the objective sum_i w_i H_delta(r_i) in the starts and the polish.
    Returns (OptimizeResult or None, array of every start's final cost).
    """
    P0 = curve.starts(u, y, n_starts)
    M = None if w is None else np.broadcast_to(np.asarray(w, dtype=float), (len(P0), len(y)))
    P, costs, ok = _batch(curve, u, np.broadcast_to(y, (len(P0), len(y))), P0, delta, M=M)
    costs = np.where(ok, costs, np.inf)
    if not np.isfinite(costs).any():
        return None, costs
    best = _solve(curve, u, y, P[np.argmin(costs)], delta, w=w)
    if not (best.status > 0 and np.all(np.isfinite(best.x))):
        return None, costs
    return best, costs


@blas_single
def refit_rows(Y: np.ndarray, curve: Curve, u, p0, delta, w=None) -> np.ndarray:
    """Refit each row of Y (bootstrap responses) warm-started at p0, with per-point weights w (None: all 1);
    NaN rows where a solve fails."""
    M = None if w is None else np.broadcast_to(np.asarray(w, dtype=float), np.shape(Y))
    P, _, ok = _batch(curve, u, Y, np.tile(p0, (len(Y), 1)), delta, M=M)
    P[~ok] = np.nan
    return P


def jackknife(curve: Curve, u, y, p0, delta, w=None) -> np.ndarray:
    """Leave-one-out estimates (internal parameters), warm-started at p0: the BCa acceleration.

    Leaving a point out is a zero weight on it, so all n fits run as one batch; with weights w the others keep
    theirs (M = w with the left-out point zeroed).
    """
    n = len(y)
    M = 1.0 - np.eye(n) if w is None else (1.0 - np.eye(n)) * np.asarray(w, dtype=float)
    P, _, ok = _batch(curve, u, np.broadcast_to(y, (n, n)), np.tile(p0, (n, 1)), delta, M=M)
    P[~ok] = np.nan
    return P


def leverage(J: np.ndarray) -> np.ndarray:
    """Diagonal of the hat matrix J (J'J)^-1 J' of the linearised fit."""
    Q, _ = np.linalg.qr(J)
    return np.sum(Q**2, axis=1)


class Curve1D(Estimator):
    """Common estimator for 1-d forms; subclasses set `curve`.

    floor: the data's exact loss floor (its entropy), a lower bound on the offset (E of the power law, a of the
    exponential) in place of 0. A free fit whose offset ends on it lists the offset in diagnostics["at_bound"]
    and says so in diagnostics["notes"]. offset="floor" fixes the offset at the floor and fits the other two
    parameters (its interval is then [floor, floor]).
    Physics: at a capacity-limited N, L(D)_N tends to E_N above the floor (the model, not the data, limits it),
    so fixing the offset at the floor biases that slice (the exponent comes out low, the curve is forced down to
    a loss the model cannot reach). That is why the free, floor-bounded fit is the default and the fixed one is
    a second report beside it.
    With a floor, diagnostics["excess"] also holds the excess-loss fits of log(L - floor) (fit/excess.py).
    With the alternative on, diagnostics["verdict"] says which form the points follow (fit/verdict.py).
    weights: "none" (every point alike) or "se" (w_i ~ 1/se_i^2, mean 1, from fit(..., se=...); see the module
    docstring); a weighted fit's mse and mse_<other form> are means of w r^2.
    """

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
        floor: float | None = None,
        offset: str = "free",
        weights: str = "none",
    ):
        # leverage_adjust: raw residuals are smaller than the errors by about the share of parameters to points
        # and make intervals too short; "hc3" resamples r / (1 - h), "hc2" r / sqrt(1 - h) (Davidson &
        # Flachaire 2008, MacKinnon 2012), h the leverage of the linearised fit.
        super().__init__(
            starts=starts, bootstrap=bootstrap, confidence=confidence, seed=seed, workers=workers,
            leverage_adjust=leverage_adjust, window=window, alternative=alternative, delta=delta,
            names=tuple(names or self.curve.names), floor=None if floor is None else float(floor), offset=offset,
            weights=weights,
        )
        self._check_settings(leverage_adjust=("hc3", "hc2", "none"), offset=OFFSETS, weights=wts.WEIGHTS)
        if int(starts) < 1 or len(self.settings["names"]) != 3:
            raise UserError(f"{self.name}: starts must be >= 1 and names three parameter names")
        if floor is not None and not math.isfinite(self.settings["floor"]):
            raise UserError(f"{self.name}: the loss floor must be a finite number, got {floor!r}")
        if offset == "floor" and floor is None:
            raise UserError(f"{self.name}: offset='floor' needs the loss floor (floor=...)")

    @property
    def fit_curve(self) -> Curve:
        """The curve as fitted: the offset bounded by the floor, or fixed at it."""
        return constrained(self.curve, self.settings["floor"], self.settings["offset"])

    # -- the fit --------------------------------------------------------------------------------------------
    @blas_single
    def fit(self, x, y=None, loss=None, *, xcol: str = "N", label: str = "", se=None) -> FitResult:
        """se: standard errors of the losses (a number or one per point), for the verdict's transient test and,
        with weights="se", the weights."""
        x, y = self._arrays_1d(x, y, xcol=xcol)
        s = self.settings
        w = wts.from_se(self.name, se, len(y)) if s["weights"] == "se" else None
        se = self._standard_errors(se, len(y))
        curve = self.fit_curve
        names = list(s["names"])
        x0 = float(np.median(x))
        u = x / x0
        delta = float(s["delta"]) if s["delta"] else mad_delta(y)
        best, costs = multistart(curve, u, y, delta, s["starts"], w=w)
        columns = {"x": x, "y": y} if w is None else {"x": x, "y": y, "se": se}
        prov = provenance(self.name, "least_squares(trf, huber), multi-start", s, columns, label=label)
        if best is None:
            diag = {"failure": "no start converged", "starts": s["starts"], "delta": delta}
            return FitResult(self.name, dict.fromkeys(names, np.nan), diagnostics=diag, converged=False,
                             provenance=prov, state={"names": names, "x0": x0})
        p = best.x
        theta = curve.to_public(p, x0)
        yhat = curve.f(p, u)
        r = y - yhat
        near = costs <= best.cost * (1 + 1e-6) + 1e-15
        fitted_names = [names[i] for i in curve.free]
        diag = {
            "delta": delta, "x0": x0, "mse": _mse(r, w), "optimality": float(best.optimality),
            "starts": int(s["starts"]), "starts_at_best": int(near.sum()),
            "at_bound": [n for n, v, lo, hi in zip(fitted_names, p, curve.lower, curve.upper)
                         if np.isclose(v, lo) or np.isclose(v, hi)],
        }
        result = FitResult(
            self.name, dict(zip(names, map(float, theta))), objective=float(best.cost), diagnostics=diag,
            provenance=prov, state={"names": names, "x0": x0},
        )
        self._offset_report(diag, names[0])
        if s["bootstrap"]:
            self._wild_bootstrap(result, u, y, p, yhat, r, delta, x0, w)
        if s["window"]:
            diag["window"] = self._window(x, y, theta, w)
        if s["floor"] is not None:
            from scalingkit.fit.excess import fit_excess

            diag["excess"] = fit_excess(x, y, s["floor"], s["confidence"], se=se)
        if s["alternative"]:
            self._compare_alternative(result, x, y, curve.full(p), delta, se, w)
        return result

    def _standard_errors(self, se, n):
        if se is None:
            return None
        se = np.broadcast_to(np.asarray(se, dtype=float), (n,)) if np.ndim(se) == 0 or np.size(se) == n else None
        if se is None or not np.all(np.isfinite(se)) or np.any(se < 0):
            raise UserError(f"{self.name}: se must be one finite non-negative number or one per point ({n})")
        return se

    def _offset_report(self, diag, offset_name):
        """Say how the offset was constrained, and where a free fit ran onto the floor."""
        floor, mode = self.settings["floor"], self.settings["offset"]
        if floor is None:
            return
        diag.update(loss_floor=floor, offset=("fixed at the floor" if mode == "floor" else "bounded by the floor"))
        if mode == "floor":
            diag.setdefault("notes", []).append(
                f"{offset_name} fixed at the exact loss floor {floor:.6g} (offset='floor'); biased where the model, "
                "not the data, limits the loss")
        elif offset_name in diag["at_bound"]:
            diag.setdefault("notes", []).append(
                f"{offset_name} ended on its lower bound, the exact loss floor {floor:.6g}: unconstrained it would "
                "go below a loss no model can reach")

    # -- uncertainty ----------------------------------------------------------------------------------------
    def _wild_bootstrap(self, result, u, y, p, yhat, r, delta, x0, w=None):
        s = self.settings
        curve = self.fit_curve
        resid = r
        if s["leverage_adjust"] in ("hc2", "hc3"):
            J = curve.jac(p, u)
            h = np.clip(leverage(J if w is None else np.sqrt(w)[:, None] * J), 0.0, 0.99)  # the weighted hat matrix
            resid = r / (np.sqrt(1.0 - h) if s["leverage_adjust"] == "hc2" else (1.0 - h))
        signs = bs.wild_signs(s["seed"], int(s["bootstrap"]), len(y))
        Y = yhat + signs * resid
        # Batched refits run ~10 us each: only very large jobs are worth spreading over processes.
        draws = map_split(refit_rows, Y, curve, u, p, delta, w, workers=s["workers"], min_per_worker=20000)
        jack = jackknife(curve, u, y, p, delta, w)
        pub_draws = curve.to_public(draws, x0)
        pub_jack = curve.to_public(jack, x0)
        theta = np.array(list(result.params.values()))
        alpha = 1 - s["confidence"]
        lo, hi = bs.bca_interval(theta, pub_draws, pub_jack, alpha)
        se = bs.standard_error(pub_draws)
        fixed = [i for i in range(3) if i not in curve.free]
        lo[fixed], hi[fixed], se[fixed] = theta[fixed], theta[fixed], 0.0  # not fitted: no spread, not even rounding
        names = list(result.params)
        result.intervals = {n: (float(a), float(b)) for n, a, b in zip(names, lo, hi)}
        result.diagnostics.update(
            interval_method="wild bootstrap, BCa", bootstrap_draws=int(s["bootstrap"]),
            bootstrap_failed=int(np.sum(~np.all(np.isfinite(draws), axis=1))),
            **{f"se_{n}": float(v) for n, v in zip(names, se)},
        )

    def _window(self, x, y, theta, w=None) -> dict:
        """Refit without the smallest x, the largest x, and both: how far the exponent moves (the points kept keep
        their weights w)."""
        curve = self.fit_curve
        order = np.argsort(x)
        k = curve.exponent
        name = self.settings["names"][k]
        out = {}
        for label, drop in (("drop_smallest", order[:1]), ("drop_largest", order[-1:]),
                            ("drop_both", np.r_[order[:1], order[-1:]])):
            keep = np.setdiff1d(np.arange(len(x)), drop)
            if len(keep) < self.min_points:
                continue
            xs, ys = x[keep], y[keep]
            x0 = float(np.median(xs))
            best, _ = multistart(curve, xs / x0, ys, mad_delta(ys) if not self.settings["delta"]
                                 else self.settings["delta"], self.settings["starts"],
                                 w=None if w is None else w[keep])
            if best is not None:
                out[label] = float(curve.to_public(best.x, x0)[k])
        if out:
            out["max_shift"] = float(max(abs(v - theta[k]) for v in out.values()))
            out["parameter"] = name
        return out

    def _compare_alternative(self, result, x, y, full_p, delta, se, w=None):
        """The competing form, fitted under the same offset constraint: its MSE, the ratio, and the verdict."""
        from scalingkit.fit import verdict

        diag, s = result.diagnostics, self.settings
        other = "exponential" if self.name == "powerlaw" else "powerlaw"
        other_curve = constrained(registry.load_module(other).CURVE, s["floor"], s["offset"])
        u = x / float(np.median(x))
        best, _ = multistart(other_curve, u, y, delta, s["starts"], w=w)  # as other_cls(...).fit(x, y) would
        if best is None:
            return
        mse_other = _mse(y - other_curve.f(best.x, u), w)
        diag[f"mse_{other}"] = mse_other
        mse_pow, mse_exp = (diag["mse"], mse_other) if self.name == "powerlaw" else (mse_other, diag["mse"])
        # < 1: the power law fits better than the exponential.
        diag["mse_ratio_power_vs_exp"] = float(mse_pow / mse_exp) if mse_exp > 0 else np.nan
        v = verdict.assess(x, y, floor=s["floor"], offset=s["offset"], se=se, delta=delta, w=w,
                           fitted={self.name: full_p, other: other_curve.full(best.x)})
        diag["transient"] = v.pop("transient_test")
        v.update(verdict.window_check(diag.get("window"), result.intervals.get(s["names"][self.curve.exponent])))
        diag["verdict"] = v


def _mse(r, w=None) -> float:
    """Mean squared residual; with weights w (mean 1) the weighted mean of r^2."""
    return float(np.mean(r**2) if w is None else np.mean(w * r**2))


def offset_guesses(y: np.ndarray, n: int, lo: float = 0.0) -> np.ndarray:
    """Starting offsets from quantiles of y (half) and from `lo` (the offset's lower bound) up to min(y) (half)."""
    half = n - n // 2
    q = np.quantile(y, np.linspace(0.0, 0.5, n // 2)) if n // 2 else np.empty(0)
    below = lo + (np.min(y) - lo) * np.linspace(0.0, 0.975, half)
    return np.maximum(np.r_[below, q][:n], lo)
