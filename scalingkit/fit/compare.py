"""Model comparison of 2-d forms by repeated random train/validation splits (PAPER.md, "Fitting").

`compare_forms(N, D, loss)` draws `splits` random 80/20 partitions of the runs from one seed, fits every form
on each training part and records the mean squared error of the loss (linear units) on the training and the
validation part. The result gives the mean and standard deviation per form, a printable table and a paired
comparison against the best form.

"Within noise" uses the corrected resampled t statistic of Nadeau & Bengio (2003): the K validation MSE
differences of two forms come from overlapping training sets, so their naive standard error is too small;
the corrected variance is (1/K + n_val/n_train) * var(differences).

Splits are drawn before any work is handed out, and each (form, split) fit depends only on its own data and
the estimator's settings, so the numbers do not depend on how many worker processes share the fits.
"""
from __future__ import annotations

import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from scalingkit.errors import UserError
from scalingkit.fit.base import Estimator, check_arrays, jsonable
from scalingkit.fit.parallel import n_workers

DEFAULT_FORMS = ("chinchilla", "kaplan", "mlp", "kernel")


def get_estimator(form) -> Estimator:
    """An estimator for `form`: an Estimator instance is used as is; a name gets the registered class with its
    default settings (`scalingkit.fit.get_form`)."""
    if isinstance(form, str):
        from scalingkit.fit.registry import estimator_class

        return estimator_class(form)()
    if not callable(getattr(form, "fit", None)):
        raise UserError(f"compare: {form!r} is neither a form name nor an estimator")
    return form


def _labels(forms) -> tuple[list[str], list]:
    """(labels, estimators). A mapping gives labels; repeated names get a suffix (mlp, mlp#2)."""
    if isinstance(forms, dict):
        items = list(forms.items())
    else:
        if isinstance(forms, str):
            forms = [forms]
        items = [(f if isinstance(f, str) else getattr(f, "name", type(f).__name__), f) for f in forms]
    labels, estimators, seen = [], [], {}
    for label, form in items:
        est = get_estimator(form)
        if getattr(est, "ndim", 2) != 2:
            raise UserError(f"compare: form {label!r} is not a 2-d L(N, D) form")
        seen[label] = seen.get(label, 0) + 1
        labels.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
        estimators.append(est)
    if not labels:
        raise UserError("compare: no forms given")
    return labels, estimators


def draw_splits(n: int, splits: int, train_fraction: float, seed) -> list[tuple[np.ndarray, np.ndarray]]:
    """`splits` random partitions of range(n) into sorted (train, validation) index arrays, from one seed."""
    n_train = int(round(train_fraction * n))
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(splits):
        perm = rng.permutation(n)
        out.append((np.sort(perm[:n_train]), np.sort(perm[n_train:])))
    return out


def _fit_one(task):
    """One (form, split) fit: (train MSE, validation MSE, seconds, failure message or None)."""
    est, N, D, y, train, val = task
    t0 = time.perf_counter()
    try:
        res = est.fit(N[train], D[train], y[train])
        if not res.converged:
            return math.nan, math.nan, time.perf_counter() - t0, f"not converged: {res.failure}"
        mse_train = float(np.mean((res.predict(N[train], D[train]) - y[train]) ** 2))
        mse_val = float(np.mean((res.predict(N[val], D[val]) - y[val]) ** 2))
    except Exception as exc:  # noqa: BLE001 - one bad split must not sink the comparison; it is reported
        return math.nan, math.nan, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"
    if not (math.isfinite(mse_train) and math.isfinite(mse_val)):
        return math.nan, math.nan, time.perf_counter() - t0, "non-finite predictions"
    return mse_train, mse_val, time.perf_counter() - t0, None


def _single_process(est):
    """A copy of `est` with workers=1 if it has that setting (settings are constructor keywords by contract)."""
    settings = est.get_settings() if hasattr(est, "get_settings") else {}
    if "workers" not in settings or settings["workers"] == 1:
        return est
    return type(est)(**{**settings, "workers": 1})


def _run(tasks: list, workers: int) -> list:
    from tqdm.auto import tqdm

    from scalingkit.progress import resolve

    # a comparison with the MLP takes a minute or more: say how far it is (stderr; off with the progress switch)
    bar = tqdm(total=len(tasks), desc="comparing forms (fits over splits)", disable=not resolve(None), leave=False)
    if workers <= 1 or len(tasks) <= 1:
        out = []
        for t in tasks:
            out.append(_fit_one(t))
            bar.update()
        bar.close()
        return out
    # fork: no re-import of numpy/scipy/torch per worker and no `if __name__ == "__main__"` needed in user
    # scripts. Every fit keeps BLAS and torch to one thread, so the workers do not oversubscribe the cores.
    # Measured (64-run grid, 10 splits, chinchilla + kaplan + small MLP + kernel; 2-core machine shared with
    # other sessions): 8.3-11.4 s with 1 worker, 9.4-9.7 s with 2: no gain, but the control (two plain Python
    # loops at once) also ran at 0.55x each there, so the second core was not free. Fits cost the same CPU
    # time in a worker as in-process, so on free cores the splits divide the wall time by the worker count.
    ctx = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        out = []
        for result in pool.map(_fit_one, tasks, chunksize=1):
            out.append(result)
            bar.update()
    bar.close()
    return out


@dataclass
class ComparisonResult:
    """Per-form, per-split train and validation MSE (rows: forms, columns: splits) and what is needed to redo it."""

    forms: list[str]
    train_mse: np.ndarray
    val_mse: np.ndarray
    seconds: np.ndarray
    failures: dict[str, list[str]]
    splits: list[tuple[np.ndarray, np.ndarray]]
    settings: dict = field(default_factory=dict)

    def _row(self, form: str) -> int:
        try:
            return self.forms.index(form)
        except ValueError:
            raise UserError(f"compare: no form {form!r} in this comparison ({', '.join(self.forms)})") from None

    def summary(self) -> dict[str, dict]:
        """Per form: mean and std (over splits) of train and validation MSE, fits that failed, seconds per fit."""
        out = {}
        for i, f in enumerate(self.forms):
            tr, va = self.train_mse[i], self.val_mse[i]
            ok = np.isfinite(va)
            out[f] = {
                "train_mse_mean": float(np.mean(tr[ok])) if ok.any() else math.nan,
                "train_mse_std": float(np.std(tr[ok], ddof=1)) if ok.sum() > 1 else math.nan,
                "val_mse_mean": float(np.mean(va[ok])) if ok.any() else math.nan,
                "val_mse_std": float(np.std(va[ok], ddof=1)) if ok.sum() > 1 else math.nan,
                "n_ok": int(ok.sum()), "n_failed": int((~ok).sum()),
                "seconds_per_fit": float(np.mean(self.seconds[i])),
            }
        return out

    def best(self) -> str:
        """The form with the lowest mean validation MSE. Forms that failed on some split are eligible only if every
        form failed somewhere (their mean, over the splits they survived, would flatter them)."""
        s = self.summary()
        eligible = [f for f in self.forms if s[f]["n_failed"] == 0] or [f for f in self.forms if s[f]["n_ok"] > 0]
        if not eligible:
            raise UserError("compare: every form failed on every split")
        return min(eligible, key=lambda f: s[f]["val_mse_mean"])

    def paired(self, form: str, other: str) -> tuple[float, float]:
        """Mean of val_mse[form] - val_mse[other] over the splits both fitted, and its corrected standard error
        (Nadeau & Bengio: variance times 1/K + n_val/n_train, for overlapping training sets)."""
        a, b = self.val_mse[self._row(form)], self.val_mse[self._row(other)]
        ok = np.isfinite(a) & np.isfinite(b)
        d = a[ok] - b[ok]
        if d.size == 0:
            return math.nan, math.nan
        if d.size == 1:
            return float(d[0]), math.nan
        n_train, n_val = self.settings["n_train"], self.settings["n_val"]
        se = math.sqrt((1.0 / d.size + n_val / n_train) * float(np.var(d, ddof=1)))
        return float(np.mean(d)), se

    def within_noise(self, form: str, z: float = 2.0) -> bool:
        """True if `form` is the best, or its mean validation MSE exceeds the best's by at most z corrected SE."""
        best = self.best()
        if form == best:
            return True
        diff, se = self.paired(form, best)
        return bool(math.isfinite(diff) and math.isfinite(se) and diff <= z * se)

    def table(self) -> str:
        s = self.summary()
        st = self.settings
        best = None
        try:
            best = self.best()
        except UserError:
            pass
        lines = [
            f"model comparison: {st.get('n_points', '?')} points, {st.get('splits', '?')} random splits "
            f"{st.get('n_train', '?')}/{st.get('n_val', '?')} (train/validation), seed {st.get('seed')}; "
            "MSE of the loss",
        ]
        w = max(len(f) for f in self.forms + ["form"])
        lines.append(f"  {'form':<{w}}  {'train MSE (mean ± std)':>24}  {'val MSE (mean ± std)':>24}  "
                     f"{'val - best (± se)':>22}  {'failed':>6}  {'s/fit':>6}")
        for f in self.forms:
            r = s[f]
            if best is None or f == best:
                delta = "best" if f == best else "-"
            else:
                d, se = self.paired(f, best)
                delta = f"{d:+.3e} ± {se:.1e}"
            lines.append(
                f"  {f:<{w}}  {_pm(r['train_mse_mean'], r['train_mse_std']):>24}  "
                f"{_pm(r['val_mse_mean'], r['val_mse_std']):>24}  {delta:>22}  {r['n_failed']:>6}  "
                f"{r['seconds_per_fit']:>6.2f}"
            )
        for f, msgs in self.failures.items():
            if msgs:
                lines.append(f"  {f} failed on {len(msgs)} split(s), first: {msgs[0]}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict:
        return jsonable({
            "kind": "comparison",
            "forms": self.forms,
            "settings": self.settings,
            "best": self.best() if any(v["n_ok"] > 0 for v in self.summary().values()) else None,
            "summary": self.summary(),
            "train_mse": self.train_mse,
            "val_mse": self.val_mse,
            "seconds": self.seconds,
            "failures": self.failures,
            "validation_indices": [val for _, val in self.splits],
        })


def _pm(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "nan"
    return f"{mean:.3e} ± {std:.1e}" if math.isfinite(std) else f"{mean:.3e}"


def compare_forms(N, D=None, loss=None, forms=DEFAULT_FORMS, splits: int = 20, train_fraction: float = 0.8,
                  seed=0, workers: int | None = None) -> ComparisonResult:
    """Fit each form on `splits` random train parts and score it on the rest; see the module docstring.

    N, D, loss: arrays, or a DataFrame with columns N, D, loss as the first argument. forms: names (looked up
    with default settings), Estimator instances, or a mapping label -> name/estimator. workers: processes
    (None: one per available core; 1: in-process).
    """
    if D is None and loss is None and hasattr(N, "columns"):
        missing = [c for c in ("N", "D", "loss") if c not in N.columns]
        if missing:
            raise UserError(f"table lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, N.columns))})")
        N, D, loss = N["N"], N["D"], N["loss"]
    if D is None or loss is None:
        raise UserError("compare: needs N, D and loss (or a DataFrame)")
    N, D, y = (np.asarray(a, dtype=float).ravel() for a in (N, D, loss))
    splits = int(splits)
    if splits < 1:
        raise UserError(f"compare: splits must be >= 1, got {splits}")
    if not 0.0 < float(train_fraction) < 1.0:
        raise UserError(f"compare: train_fraction must be strictly between 0 and 1, got {train_fraction}")
    labels, estimators = _labels(forms)
    check_arrays("compare", 2, N=N, D=D, loss=y)
    n = len(y)
    parts = draw_splits(n, splits, float(train_fraction), seed)
    n_train, n_val = len(parts[0][0]), len(parts[0][1])
    need = max(getattr(e, "min_points", 1) for e in estimators)
    if n_val < 1 or n_train < need:
        raise UserError(f"compare: {n} points split {n_train}/{n_val} leaves too few to fit and validate "
                        f"(forms need {need} training points and at least 1 for validation)")

    w = min(n_workers(workers), splits * len(estimators))
    if w > 1:
        # The splits already keep every core busy: estimators that spread their own work over processes (the
        # 2-d forms' multi-start refinement) run in-process inside each worker instead of nesting pools.
        estimators = [_single_process(e) for e in estimators]
    tasks = [(est, N, D, y, tr, va) for est in estimators for tr, va in parts]
    t0 = time.perf_counter()
    out = _run(tasks, w)
    wall = time.perf_counter() - t0

    shape = (len(labels), splits)
    train_mse = np.array([o[0] for o in out]).reshape(shape)
    val_mse = np.array([o[1] for o in out]).reshape(shape)
    seconds = np.array([o[2] for o in out]).reshape(shape)
    failures = {lab: [o[3] for o in out[i * splits:(i + 1) * splits] if o[3]] for i, lab in enumerate(labels)}
    settings = {
        "n_points": n, "splits": splits, "train_fraction": float(train_fraction), "seed": seed,
        "n_train": n_train, "n_val": n_val, "workers": w, "wall_seconds": wall,
        "estimators": {lab: {"class": type(e).__name__, **(e.get_settings() if hasattr(e, "get_settings") else {})}
                       for lab, e in zip(labels, estimators)},
    }
    return ComparisonResult(labels, train_mse, val_mse, seconds, failures, parts, settings)
