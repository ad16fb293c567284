"""The estimator interface every scaling-law form follows (sklearn/lmfit style).

An estimator is constructed with its settings and never changes them; `fit` takes plain arrays (or a DataFrame)
and returns a `FitResult`: parameters, intervals, objective, diagnostics, a convergence verdict and the
provenance needed to reproduce it. Results are JSON-able (`to_dict`) and load back (`FitResult.from_dict`,
`scalingkit.fit.results.load_result`) with `predict` still working, because prediction is looked up by form in
a registry rather than stored as code.

Contract for a new form (the surrogates follow it too):
- subclass `Estimator`, set `name` and `min_points`, keep settings as constructor keyword arguments;
- `fit(x, y)` for 1-d forms, `fit(N, D, loss)` for 2-d forms, or `fit(df)` with columns N, D, loss;
- register a predictor with `@register_form(name)`: `predict(result, *x) -> np.ndarray`; anything it needs
  beyond `params` (weights of a surrogate, say) goes in `result.state`, JSON-able;
- a fit that did not converge returns `converged=False` and says why in `diagnostics["failure"]`.
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from scalingkit.errors import UserError
from scalingkit.fit import registry

_PREDICTORS: dict[str, Callable[..., np.ndarray]] = {}


def register_form(name: str):
    """Decorator: register `predict(result, *x) -> ndarray` for results of form `name`."""

    def deco(fn):
        _PREDICTORS[name] = fn
        return fn

    return deco


def predictor(form: str) -> Callable[..., np.ndarray]:
    if form not in _PREDICTORS and form in registry.FORMS:
        registry.load_module(form)  # a form's module registers its predictor when imported
    try:
        return _PREDICTORS[form]
    except KeyError:
        raise UserError(f"no predictor registered for form {form!r}") from None


def jsonable(obj: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays become Python ones, non-finite floats become None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        x = float(obj)
        return x if math.isfinite(x) else None
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def _f(x) -> float:
    return float("nan") if x is None else float(x)


def _fmt(x) -> str:
    if x is None or (isinstance(x, (float, np.floating)) and math.isnan(x)):
        return "nan"  # inf prints as inf: an unbounded spread is not an unknown one
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return f"{float(x):.6g}"
    return str(x)


@dataclass
class FitResult:
    """One fitted form. `params`/`derived` hold point estimates; `intervals` holds (lo, hi) for any of them."""

    form: str
    params: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    objective: float = float("nan")
    diagnostics: dict = field(default_factory=dict)
    converged: bool = True
    provenance: dict = field(default_factory=dict)
    derived: dict[str, float] = field(default_factory=dict)  # functions of params (a, b, G, ...)
    state: dict = field(default_factory=dict)  # extra JSON-able model state a predictor needs (surrogates)

    # -- use ------------------------------------------------------------------------------------------------
    def predict(self, *x) -> np.ndarray:
        if not self.converged:
            raise UserError(f"{self.form} fit failed ({self.failure}); it has no predictions")
        return predictor(self.form)(self, *[np.asarray(v, dtype=float) for v in x])

    @property
    def failure(self) -> str:
        return str(self.diagnostics.get("failure", "not converged"))

    def __getitem__(self, name: str) -> float:
        return self.params[name] if name in self.params else self.derived[name]

    # -- printing -------------------------------------------------------------------------------------------
    def table(self) -> str:
        prov = self.provenance
        head = f"{self.form} fit"
        if prov.get("label"):
            head += f" [{prov['label']}]"
        head += f": {prov.get('n_points', '?')} points, solver {prov.get('solver', '?')}"
        lines = [head]
        if not self.converged:
            # A failed fit must not look like a result: estimates are withheld from the table.
            lines.append(f"  FAILED: {self.failure}; estimates withheld")
        else:
            level = prov.get("settings", {}).get("confidence", 0.95)
            method = self.diagnostics.get("interval_method", "")
            width = max([len(k) for k in (*self.params, *self.derived)] + [4])
            ci = f"{int(round(level * 100))}% interval" + (f" ({method})" if method else "")
            lines.append(f"  {'name':<{width}}  {'estimate':>12}  {ci}")
            for group in (self.params, self.derived):
                for k, v in group.items():
                    iv = self.intervals.get(k)
                    span = f"[{_fmt(iv[0])}, {_fmt(iv[1])}]" if iv is not None else "-"
                    lines.append(f"  {k:<{width}}  {_fmt(v):>12}  {span}")
            lines.append(f"  objective {_fmt(self.objective)}")
        diag = {k: v for k, v in self.diagnostics.items() if k != "failure" and not isinstance(v, (dict, list))}
        if diag:
            text = "diagnostics: " + ", ".join(f"{k}={_fmt(v)}" for k, v in diag.items())
            lines += textwrap.wrap(text, 110, initial_indent="  ", subsequent_indent="    ")
        for k, v in self.diagnostics.items():  # nested reports (e.g. the window sensitivity), not the intervals
            if isinstance(v, dict) and v and not k.startswith("intervals_"):
                lines.append(f"  {k}: " + ", ".join(f"{a}={_fmt(b)}" for a, b in v.items()))
        for note in self.diagnostics.get("notes", []):
            lines += textwrap.wrap(f"note: {note}", 110, initial_indent="  ", subsequent_indent="    ")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    # -- persistence ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return jsonable(
            {
                "kind": "fit",
                "form": self.form,
                "params": self.params,
                "intervals": {k: list(v) for k, v in self.intervals.items()},
                "objective": self.objective,
                "diagnostics": self.diagnostics,
                "converged": self.converged,
                "provenance": self.provenance,
                "derived": self.derived,
                "state": self.state,
            }
        )

    @classmethod
    def from_dict(cls, d: dict) -> "FitResult":
        return cls(
            form=d["form"],
            params={k: _f(v) for k, v in d["params"].items()},
            intervals={k: (_f(v[0]), _f(v[1])) for k, v in d.get("intervals", {}).items()},
            objective=_f(d.get("objective")),
            diagnostics=d.get("diagnostics", {}),
            converged=bool(d.get("converged", True)),
            provenance=d.get("provenance", {}),
            derived={k: _f(v) for k, v in d.get("derived", {}).items()},
            state=d.get("state", {}),
        )


class Estimator:
    """Base class: settings in, `FitResult` out. Subclasses set `name`, `min_points` and implement `fit`."""

    name: str = ""
    min_points: int = 1
    ndim: int = 2  # 1 for y(x) forms, 2 for L(N, D) forms

    def __init__(self, **settings):
        self.settings = dict(settings)

    def get_settings(self) -> dict:
        return dict(self.settings)

    def _check_settings(self, **choices) -> None:
        """One-line errors for settings the forms share: bootstrap >= 0, 0 < confidence < 1, named choices."""
        s = self.settings
        if "bootstrap" in s and (s["bootstrap"] is None or int(s["bootstrap"]) < 0):
            raise UserError(f"{self.name}: bootstrap must be >= 0, got {s['bootstrap']!r}")
        if "confidence" in s and not 0.0 < float(s["confidence"]) < 1.0:
            raise UserError(f"{self.name}: confidence must be between 0 and 1, got {s['confidence']!r}")
        for key, allowed in choices.items():
            if s.get(key) not in allowed:
                raise UserError(f"{self.name}: {key} must be one of {', '.join(map(str, allowed))}, "
                                f"not {s.get(key)!r}")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"{type(self).__name__}({args})"

    def fit(self, x_or_N, y_or_D=None, loss=None, **kwargs) -> FitResult:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- helpers shared by the forms ------------------------------------------------------------------------
    def _arrays_2d(self, N, D=None, loss=None):
        """(N, D, loss) as float arrays from arrays or a DataFrame with columns N, D, loss; validated."""
        if D is None and loss is None and hasattr(N, "columns"):
            missing = [c for c in ("N", "D", "loss") if c not in N.columns]
            if missing:
                raise UserError(f"table lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, N.columns))})")
            N, D, loss = N["N"], N["D"], N["loss"]
        if D is None or loss is None:
            raise UserError(f"{self.name}: fit(N, D, loss) needs all three arrays (or a DataFrame)")
        arrays = [np.asarray(a, dtype=float).ravel() for a in (N, D, loss)]
        check_arrays(self.name, self.min_points, N=arrays[0], D=arrays[1], loss=arrays[2])
        return arrays

    def _arrays_1d(self, x, y=None, xcol: str = "N"):
        """(x, y) from arrays, or from a DataFrame with column `xcol` and `loss`."""
        if y is None and hasattr(x, "columns"):
            if xcol not in x.columns or "loss" not in x.columns:
                raise UserError(f"table lacks column {xcol!r} or 'loss' (has: {', '.join(map(str, x.columns))})")
            x, y = x[xcol], x["loss"]
        if y is None:
            raise UserError(f"{self.name}: fit(x, y) needs both arrays")
        x = np.asarray(x, dtype=float).ravel()
        y = np.asarray(y, dtype=float).ravel()
        check_arrays(self.name, self.min_points, x=x, y=y, positive=("x",))
        return x, y


def check_arrays(form: str, min_points: int, positive=None, **arrays) -> None:
    """Raise a one-line UserError for NaN, non-positive values, mismatched lengths or too few points."""
    positive = arrays.keys() if positive is None else positive
    lengths = {len(v) for v in arrays.values()}
    if len(lengths) != 1:
        raise UserError(f"{form}: arrays differ in length ({', '.join(f'{k}={len(v)}' for k, v in arrays.items())})")
    for k, v in arrays.items():
        if not np.all(np.isfinite(v)):
            raise UserError(f"{form}: {k} has {int(np.sum(~np.isfinite(v)))} NaN or infinite value(s)")
        if k in positive and np.any(v <= 0):
            raise UserError(f"{form}: {k} must be positive ({int(np.sum(v <= 0))} value(s) <= 0)")
    n = lengths.pop()
    if n < min_points:
        raise UserError(f"{form} needs at least {min_points} points, got {n}")
