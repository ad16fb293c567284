"""What the 2-d forms (Chinchilla, Kaplan) share: multi-start Huber-log fits, convergence verdicts, bootstrap.

A `Form2D` describes one law (log prediction with gradient, parameter maps, starting points); `Estimator2D`
turns it into an estimator: refine every start with L-BFGS-B (logfit.refine), keep the best, judge convergence
(gradient norm, agreement of the best starts, optional cross-check) and, if asked, bootstrap over runs.
A form that also supplies batched predictions and Newton terms (`batched = True`) has its bootstrap and
jackknife refitted all at once (newton2d), with the per-draw L-BFGS-B refit as the fallback.
weights="se" (a setting of the forms that take it; fit/weights.py) gives the rows weights w_i ~ (L_i / se_i)^2,
mean 1 (se / L is the standard error of log L), in LogData.w: the starts, every refined start, the cross-check,
and every bootstrap draw and jackknife fit (their counts and masks multiply w) minimise the weighted objective.
"""
from __future__ import annotations

import numpy as np

from scalingkit.fit import bootstrap as bs
from scalingkit.fit import logfit, newton2d
from scalingkit.fit import weights as wts
from scalingkit.fit.base import Estimator, FitResult
from scalingkit.fit.parallel import map_split
from scalingkit.fit.provenance import provenance
from scalingkit.fit.threads import blas_single

REL_GRAD_FAIL = 1e-4  # relative gradient (logfit.relative_gradient) above this: not at a minimum ...
ABS_GRAD_OK = 1e-6  # ... unless the gradient of f/delta is below this per point (an exact fit: all r ~ 0)
PER_DRAW_PER_WORKER = 100  # draws per worker process below which per-draw refits stay in one process
# Batched refits stay in one process up to this many draws: on the shared 2-core machine 4,000 draws (+ the
# jackknife) took 1.1 s in one process against 1.4-1.9 s split over two (a process costs ~0.16 s to start, and
# the second core was seldom free).
BATCH_PER_WORKER = 5000


def at_minimum(rel_grad: float, grad_norm: float, n: float) -> bool:
    return bool(rel_grad <= REL_GRAD_FAIL or grad_norm <= ABS_GRAD_OK * n)


def at_minimum_rows(rel_grad, grad_norm, n) -> np.ndarray:
    """at_minimum for arrays of draws."""
    return (np.asarray(rel_grad) <= REL_GRAD_FAIL) | (np.asarray(grad_norm) <= ABS_GRAD_OK * np.asarray(n))


class Form2D:
    name: str
    names: tuple[str, ...]
    n_params: int
    bounds = None  # L-BFGS-B bounds in internal coordinates, or None
    batched = False  # True: batch_logpred, batch_newton and batch_jacobian exist (see newton2d)

    def logpred(self, theta, lN, lD, grad=True):  # pragma: no cover - abstract
        raise NotImplementedError

    def to_public(self, theta) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def from_public(self, params: dict) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def derived(self, params: dict, settings: dict) -> dict:
        return {}

    def starts(self, data: logfit.LogData, settings: dict) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def clip(self, starts) -> np.ndarray:
        """Starting points moved inside the bounds."""
        lo, hi = newton2d.bound_arrays(self.bounds, self.n_params)
        return np.clip(np.atleast_2d(np.asarray(starts, dtype=float)), lo, hi)

    def crosscheck_starts(self, data, settings) -> np.ndarray:
        return self.starts(data, {**settings, "solver": "lbfgs"})

    def public_vector(self, theta, settings) -> np.ndarray:
        """Parameters then derived quantities, as one vector (bootstrap draws are rows of these)."""
        p = self.to_public(theta)
        return np.array([*p.values(), *self.derived(p, settings).values()], dtype=float)


def _best(thetas, objs):
    objs = np.where(np.isfinite(objs), objs, np.inf)
    i = int(np.argmin(objs))
    return thetas[i], objs[i], i


@blas_single
def _distinct_optimum(thetas, objs, theta, rtol=1e-3):
    """The best refined start that ended somewhere else than `theta` (another local minimum), or None."""
    far = np.max(np.abs(thetas - theta) / np.maximum(np.abs(theta), 1e-12), axis=1) > rtol
    ok = far & np.isfinite(objs)
    return thetas[ok][np.argmin(objs[ok])] if ok.any() else None


@blas_single
def refit_weighted(W, form: Form2D, data: logfit.LogData, settings, starts):
    """Refit for each row of weights W (bootstrap counts or leave-one-out masks) from each of `starts`
    (the estimate, warm start, plus any other local optimum the full fit found); rows of public vectors."""
    width = len(form.public_vector(starts[0], settings))
    out = np.full((len(W), width + 1), np.nan)
    for i, w in enumerate(W):
        d = data.reweighted(w)
        best_f, best_t = np.inf, None
        for t0 in starts:
            t, f, info = logfit.refine(t0, form.logpred, d, bounds=form.bounds,
                                       maxiter=settings.get("maxiter", 5000))
            if np.isfinite(f) and f < best_f and at_minimum(info["rel_grad"], info["grad_norm"], w.sum()):
                best_f, best_t = f, t
        if best_t is not None:
            out[i, :width] = form.public_vector(best_t, settings)
            out[i, width] = best_f
    return out


@blas_single
def refit_rows(W, form: Form2D, data: logfit.LogData, settings, starts):
    """refit_weighted's rows, with one more column: 1 where the per-draw path refitted the row.

    A batched form refits every row at once (newton2d.newton_refits, from each start); a row whose batched refit
    from any start did not stop, or ended where form2d's convergence test (at_minimum) rejects it, is refitted by
    refit_weighted, as are all rows of other forms or with settings["bootstrap_solver"] == "lbfgs".
    """
    W = np.asarray(W, dtype=float)
    if not is_batched(form, settings):
        return np.column_stack([refit_weighted(W, form, data, settings, starts), np.ones(len(W))])
    width = len(form.public_vector(starts[0], settings))
    out = np.full((len(W), width + 2), np.nan)
    best_f, best_t = np.full(len(W), np.inf), np.full((len(W), form.n_params), np.nan)
    settled = np.ones(len(W), bool)
    for t0 in starts:
        T, f, rel, gnorm, stopped = newton2d.newton_refits(form, data, W, t0)
        ok = stopped & np.isfinite(f) & at_minimum_rows(rel, gnorm, W.sum(axis=1))
        settled &= ok
        better = ok & (f < best_f)
        best_f[better], best_t[better] = f[better], T[better]
    for i in np.flatnonzero(settled):
        out[i, :width] = form.public_vector(best_t[i], settings)
    out[settled, width] = best_f[settled]
    out[:, width + 1] = ~settled
    if not settled.all():
        out[~settled, : width + 1] = refit_weighted(W[~settled], form, data, settings, starts)
    return out


def is_batched(form: Form2D, settings) -> bool:
    return form.batched and settings.get("bootstrap_solver", "newton") == "newton"


def bootstrap_refits(form: Form2D, data: logfit.LogData, settings, starts, counts):
    """Refits for the bootstrap (rows of `counts`: how often each point is drawn) and the leave-one-out jackknife.

    Draws start from every row of `starts` (the estimate first), the jackknife from the estimate only. Returns
    (draws, jackknife, (draws, jackknife fits) the per-draw path refitted): rows of public vectors, NaN where
    no refit reached a minimum.
    """
    starts = np.atleast_2d(starts)
    n = len(data.lL)
    per_worker = BATCH_PER_WORKER if is_batched(form, settings) else PER_DRAW_PER_WORKER
    draws = map_split(refit_rows, np.asarray(counts, dtype=float), form, data, settings, starts,
                      workers=settings.get("workers"), min_per_worker=per_worker)
    jack = map_split(refit_rows, 1.0 - np.eye(n), form, data, settings, starts[:1],
                     workers=settings.get("workers"), min_per_worker=per_worker)
    fallback = (int(draws[:, -1].sum()), int(jack[:, -1].sum()))
    return draws[:, :-2], jack[:, :-2], fallback


class Estimator2D(Estimator):
    form: Form2D
    ndim = 2

    def __init__(self, **settings):
        super().__init__(**settings)
        self._check_settings(solver=("varpro", "lbfgs"), interval=("bca", "percentile"))
        if "weights" in self.settings:
            self._check_settings(weights=wts.WEIGHTS)

    @blas_single
    def fit(self, N, D=None, loss=None, *, label: str = "", se=None) -> FitResult:
        """se: the losses' standard errors (one number or one per point), used with weights="se" (ignored
        otherwise)."""
        N, D, L = self._arrays_2d(N, D, loss)
        s = dict(self.settings)
        if s.get("budget") is None and "budget" in s:
            s["budget"] = float(np.max(6.0 * N * D))  # default: the table's largest compute
        w = wts.from_se(self.name, se, len(L), loss=L) if s.get("weights", "none") == "se" else None
        data = logfit.LogData.of(N, D, L, w)
        form = self.form
        if s.get("starts"):
            starts = form.clip([form.from_public(p) for p in s["starts"]])
            solver = "lbfgs from given starts"
        else:
            starts = form.starts(data, s)
            solver = s.get("solver", "lbfgs")
        thetas, objs, grads, rels = logfit.refine_many(starts, form.logpred, data, bounds=form.bounds,
                                                       workers=s.get("workers"), maxiter=s.get("maxiter", 5000))
        theta, obj, i = _best(thetas, objs)
        n_agree, spread = logfit.agreement(thetas, objs)
        diag = {"starts": len(starts), "grad_norm": float(grads[i]), "rel_grad": float(rels[i]),
                "starts_at_best": n_agree, "best_starts_spread": spread}
        failures = []
        if not np.isfinite(obj):
            failures.append("no start reached a finite objective")
        if not at_minimum(rels[i], grads[i], len(L)):
            failures.append(f"relative gradient {rels[i]:.2g} > {REL_GRAD_FAIL:g} at the best point")
        if len(starts) > 1 and n_agree < 2:
            failures.append("the best starts disagree (only one start reached the best objective)")
        if s.get("crosscheck") and not s.get("starts"):
            failures += self._crosscheck(diag, data, s, theta, obj)
        params = form.to_public(theta)
        if not all(np.isfinite(v) for v in params.values()):
            failures.append("non-finite parameters")
        columns = {"N": N, "D": D, "loss": L}
        if w is not None:  # the standard errors are data of a weighted fit: in its hash
            columns["loss_se"] = np.broadcast_to(np.asarray(se, dtype=float), L.shape)
        prov = provenance(self.name, solver, s, columns, label=label)
        result = FitResult(self.name, {k: float(v) for k, v in params.items()}, objective=float(obj),
                           diagnostics=diag, converged=not failures, provenance=prov,
                           derived=form.derived(params, s))
        if failures:
            diag["failure"] = "; ".join(failures)
            return result
        if s.get("bootstrap"):
            alt = _distinct_optimum(thetas, objs, theta)
            self._bootstrap(result, data, s, theta if alt is None else np.vstack([theta, alt]))
        return result

    def _crosscheck(self, diag, data, s, theta, obj):
        starts = self.form.crosscheck_starts(data, s)
        k = s["crosscheck"]
        if not isinstance(k, bool) and 0 < int(k) < len(starts):  # an int: an evenly spread subset of the grid
            starts = starts[np.linspace(0, len(starts) - 1, int(k)).round().astype(int)]
        thetas, objs, _, _ = logfit.refine_many(starts, self.form.logpred, data, bounds=self.form.bounds,
                                             workers=s.get("workers"))
        t2, o2, _ = _best(thetas, objs)
        p1, p2 = self.form.to_public(theta), self.form.to_public(t2)
        diag["crosscheck_starts"] = len(starts)
        diag["crosscheck_objective"] = float(o2)
        diag["crosscheck_max_rel_diff"] = float(max(abs(p1[k] - p2[k]) / max(abs(p1[k]), 1e-12) for k in p1))
        if o2 < obj * (1 - 1e-6) - 1e-15:
            return [f"the {len(starts)}-start L-BFGS-B cross-check found a lower objective ({o2:.6g} < {obj:.6g})"]
        return []

    def _bootstrap(self, result: FitResult, data, s, starts):
        """Bootstrap over runs: resample rows (as counts), refit; percentile and BCa intervals.

        Each refit starts from the estimate (and from a second local optimum if the full fit met one); the
        leave-one-out jackknife for the BCa acceleration starts from the estimate only.
        """
        n = len(data.lL)
        B = int(s["bootstrap"])
        counts = np.stack([np.bincount(ix, minlength=n) for ix in bs.resample_indices(s["seed"], B, n)])
        draws, jack, fallback = bootstrap_refits(self.form, data, s, starts, counts)
        names = [*result.params, *result.derived]
        est = np.array([*result.params.values(), *result.derived.values()])
        bs.record_intervals(result, names, est, draws, jack, s["confidence"], s.get("interval", "bca"))
        if is_batched(self.form, s):  # how many draws (and jackknife fits) the batch left to the per-draw L-BFGS-B path
            result.diagnostics.update(bootstrap_refit="batched Newton", bootstrap_fallback=fallback[0],
                                      jackknife_fallback=fallback[1])
        self._draw_diagnostics(result.diagnostics, names, draws)

    def _draw_diagnostics(self, diag: dict, names: list, draws: np.ndarray) -> None:
        """Hook: a form's own summaries of the bootstrap draws (Chinchilla: draws whose E sits on the floor)."""
