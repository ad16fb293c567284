"""Any law a user writes: `Expr(expr="E + A*N**-alpha + B*D**-beta", guess={...}).fit(N, D, loss)`.

The expression is parsed and evaluated by lmfit's ExpressionModel (asteval: numpy functions such as exp, log,
sqrt, and constants such as pi and e, are known; attribute tricks and imports are not). N and D are the
independent variables; every other name is a parameter, and each needs a guess (or a fixed value).

The objective is the built-in 2-d forms' one (fit/logfit.py): sum_i H_delta(log L_hat_i - log L_i), Huber with
delta = 1e-3 on log-loss residuals. scipy's least_squares(loss="huber", f_scale=delta) minimises exactly that
sum (its cost 0.5 f^2 rho((r/f)^2) is H_delta(r)), so it runs through lmfit's Minimizer with native bounds and
fixed parameters (vary=False). A model value <= 0 (or not finite) has no log: such a point gets a log
residual of PENALTY, which costs more than any fit is worth, so the trust region rejects steps that go there.

Starts: the guess, then `starts - 1` copies with each free value multiplied by exp(jitter * z), z ~ N(0, 1)
(signs kept; clipped into the bounds; dropped where the model is <= 0 at some point); the best objective
wins, and at least two starts must reach it (as for the built-in forms). Bootstrap over runs as in
form2d.Estimator2D._bootstrap: rows resampled, refits warm-started from the estimate, percentile and BCa
intervals with the leave-one-out jackknife.

How fit() takes its data:
- fit(N, D, loss): three arrays (an unused one may be None), or fit(df) with columns N, D (as used) and loss;
- an expression in N only or in D only: also fit(x, loss), x being that variable, or fit(N=x, loss=y) /
  fit(D=x, loss=y). predict follows the same rule: predict(N, D), or predict(x) for a 1-d expression.
"""
from __future__ import annotations

import ast
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import special

from scalingkit.errors import UserError
from scalingkit.fit import bootstrap as bs
from scalingkit.fit import logfit
from scalingkit.fit.base import Estimator, FitResult, check_arrays, register_form
from scalingkit.fit.form2d import REL_GRAD_FAIL, at_minimum
from scalingkit.fit.parallel import map_split
from scalingkit.fit.provenance import provenance
from scalingkit.fit.threads import blas_single

VARIABLES = ("N", "D")
DELTA = logfit.DELTA
PENALTY = 1e3  # log residual of a point where the model is <= 0 or not finite (a factor e^1000: never a fit)
TOL = 1e-15  # least_squares' ftol/xtol/gtol: the objective is ~1e-3 in all, so its tests must be tight
SOLVER = "lmfit least_squares (trf, huber, delta 1e-3, log residuals)"


# -- parsing the command line's name=value lists --------------------------------------------------------------
def _number(text: str, option: str, item: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{option}: {text.strip()!r} is not a number (in {item!r})") from None


def _items(values, option: str):
    """(name, value text, item) from 'a=1,b=2' strings (several strings allowed), each name once."""
    if isinstance(values, str):
        values = [values]
    seen = set()
    for text in values:
        for item in str(text).split(","):
            if not item.strip():
                continue
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or not name.isidentifier() or not value.strip():
                raise UserError(f"{option}: expected name=value, got {item.strip()!r}")
            if name in seen:
                raise UserError(f"{option}: {name!r} is given twice")
            seen.add(name)
            yield name, value.strip(), item.strip()


def parse_values(values, option: str = "--guess") -> dict[str, float]:
    """'E=1.7,A=400' (or a list of such strings) -> {"E": 1.7, "A": 400.0}."""
    return {name: _number(v, option, item) for name, v, item in _items(values, option)}


def parse_bounds(values, option: str = "--bound") -> dict[str, tuple[float, float]]:
    """'alpha=0:2,E=0:' -> {"alpha": (0, 2), "E": (0, inf)}; an empty side is unbounded."""
    out = {}
    for name, v, item in _items(values, option):
        lo, sep, hi = v.partition(":")
        if not sep:
            raise UserError(f"{option}: expected name=lo:hi (either side may be empty), got {item!r}")
        out[name] = (_number(lo, option, item) if lo.strip() else -math.inf,
                     _number(hi, option, item) if hi.strip() else math.inf)
    return out


# -- the law: expression, parameters, their guesses, bounds and fixed values -----------------------------------
def _as_dict(value, parse, what: str) -> dict:
    if value is None:
        return {}
    if isinstance(value, (str, list, tuple)):
        return parse(value, what)
    if not isinstance(value, dict):
        raise UserError(f"expr: {what} must be a dict (or 'name=value,...' text), not {type(value).__name__}")
    return dict(value)


def _bound_pair(name, pair) -> tuple[float, float]:
    try:
        lo, hi = pair
        lo = -math.inf if lo is None else float(lo)
        hi = math.inf if hi is None else float(hi)
    except (TypeError, ValueError):
        raise UserError(f"expr: bound for {name!r} must be (lo, hi) numbers or None, got {pair!r}") from None
    return lo, hi


def _model(expr: str, variables):
    from lmfit.models import ExpressionModel  # lmfit loads only when an expression is used

    return ExpressionModel(expr, independent_vars=list(variables))


@dataclass(frozen=True)
class Law:
    """A checked expression: its variables, parameters (in order of appearance), start values, bounds, fixed.

    Plain data, so that worker processes can rebuild the lmfit model from it (`model`, `parameters`)."""

    expr: str
    variables: tuple[str, ...]
    names: tuple[str, ...]
    values: dict  # name -> start value (a fixed one's value for fixed names)
    bounds: dict  # name -> (lo, hi), +-inf for open sides
    fixed: tuple[str, ...]

    @property
    def free(self) -> tuple[str, ...]:
        return tuple(n for n in self.names if n not in self.fixed)

    @classmethod
    def parse(cls, expr, guess=None, bounds=None, fixed=None) -> "Law":
        if not isinstance(expr, str) or not expr.strip():
            raise UserError("expr: no expression given (expr='E + A*N**-alpha + B*D**-beta', or --expr)")
        expr = expr.strip()
        try:
            # one expression, no statements: Python's parser gives the position of a syntax error
            ast.parse(expr, mode="eval")
        except SyntaxError as exc:
            where = f" at column {exc.offset}" if exc.offset else ""
            raise UserError(f"expr: cannot parse {expr!r}: {exc.msg}{where}") from None
        from asteval import get_ast_names

        used = [v for v in VARIABLES if v in get_ast_names(ast.parse(expr))]
        if not used:
            raise UserError(f"expr: {expr!r} uses neither N nor D (the variables; every other name is a parameter)")
        try:
            model = _model(expr, used)
        except Exception as exc:  # noqa: BLE001 - asteval's parser: any failure is the expression's
            raise UserError(f"expr: cannot parse {expr!r}: {type(exc).__name__} {exc}".strip()) from None
        names = tuple(model.param_names)
        known = model.asteval.symtable  # asteval's functions and constants (exp, log, pi, e, ...)
        guess = _as_dict(guess, parse_values, "guess")
        fixed = _as_dict(fixed, parse_values, "fix")
        bounds = {k: _bound_pair(k, v) for k, v in _as_dict(bounds, parse_bounds, "bound").items()}
        for what, given in (("guess", guess), ("fix", fixed), ("bound", bounds)):
            for name in given:
                if name in names:
                    continue
                if name in VARIABLES:
                    why = f"{name} is a variable, not a parameter"
                elif name in known:
                    why = f"{name!r} is a function or constant of the expression language, not a parameter"
                else:
                    why = f"{name!r} is not in the expression"
                raise UserError(f"expr: {what} for {name!r}: {why} (parameters: {', '.join(names) or 'none'})")
        missing = [n for n in names if n not in guess and n not in fixed]
        if missing:
            listed = ", ".join(repr(n) for n in missing)
            raise UserError(f"expr: {listed} in the expression {'is' if len(missing) == 1 else 'are'} neither N, D "
                            f"nor a parameter with a guess (give a guess, e.g. {missing[0]}=1)")
        for what, given in (("guess", guess), ("fix", fixed)):
            for name, v in given.items():
                try:
                    given[name] = float(v)
                except (TypeError, ValueError):
                    raise UserError(f"expr: {what} {name}={v!r} is not a number") from None
                if not math.isfinite(given[name]):
                    raise UserError(f"expr: {what} {name}={v} is not a finite number")
        for name, (lo, hi) in bounds.items():
            if math.isnan(lo) or math.isnan(hi):
                raise UserError(f"expr: bound for {name!r} is NaN")
            if lo > hi:
                raise UserError(f"expr: bound {name}={lo:g}:{hi:g} has lo > hi")
            if lo == hi:
                raise UserError(f"expr: bound {name}={lo:g}:{hi:g} is empty; fix the parameter instead ({name}={lo:g})")
        values = {n: float(fixed[n]) if n in fixed else float(guess[n]) for n in names}
        for name in names:
            lo, hi = bounds.get(name, (-math.inf, math.inf))
            if not lo <= values[name] <= hi:
                what = "fixed value" if name in fixed else "guess"
                raise UserError(f"expr: {what} {name}={values[name]:g} is outside its bound [{lo:g}, {hi:g}]")
        if all(n in fixed for n in names):
            raise UserError(f"expr: {expr!r} has no free parameter to fit")
        return cls(expr, tuple(used), names, values,
                   {n: bounds.get(n, (-math.inf, math.inf)) for n in names}, tuple(n for n in names if n in fixed))

    def model(self):
        return _model(self.expr, self.variables)

    def parameters(self, free_values=None):
        """lmfit Parameters: start values (or `free_values` for the free ones), bounds, vary=False when fixed."""
        from lmfit import Parameters

        values = dict(self.values)
        if free_values is not None:
            values.update(zip(self.free, map(float, free_values)))
        params = Parameters()
        for n in self.names:
            lo, hi = self.bounds[n]
            params.add(n, value=values[n], min=lo, max=hi, vary=n not in self.fixed)
        return params


# -- one problem: the law on one table (or a resample of it) ---------------------------------------------------
class Problem:
    """The law's lmfit model on columns (the variables it uses) and log loss; least squares from a start."""

    def __init__(self, law: Law, columns: dict, lL: np.ndarray, model=None):
        self.law, self.columns, self.lL = law, columns, lL
        self.model = model if model is not None else law.model()

    def subset(self, rows) -> "Problem":
        return Problem(self.law, {k: v[rows] for k, v in self.columns.items()}, self.lL[rows], self.model)

    def log_model(self, params) -> np.ndarray:
        """log L_hat at every point; NaN where the model is <= 0 or not finite. Raises what asteval raises."""
        try:
            with np.errstate(all="ignore"):
                # the model's own function (asteval) on plain values: Model.eval's argument mapping doubles the cost
                y = np.asarray(self.model.func(**params.valuesdict(), **self.columns), dtype=float)
        except Exception:
            # asteval keeps a failed run's errors and then returns None from every later run: clear them
            self.model.asteval.error = []
            raise
        y = np.broadcast_to(y, self.lL.shape)
        return np.where(np.isfinite(y) & (y > 0), np.log(np.where(y > 0, y, 1.0)), np.nan)

    def valid_at(self, free_values) -> bool:
        """Whether the model has a log at every point there."""
        try:
            return bool(np.all(np.isfinite(self.log_model(self.law.parameters(free_values)))))
        except Exception:  # noqa: BLE001 - asteval raised: no model there either
            return False

    def residual(self, params) -> np.ndarray:
        try:
            r = self.log_model(params) - self.lL
        except Exception:  # noqa: BLE001 - e.g. asteval's cap on exponents (> 10000): no model there
            return np.full_like(self.lL, PENALTY)
        return np.where(np.isfinite(r), r, PENALTY)

    def objective(self, params) -> float:
        return float(np.sum(special.huber(DELTA, self.residual(params))))

    def solve(self, free_values, max_nfev=None) -> dict:
        """One least-squares run from `free_values`: the free values reached, objective, and the verdict."""
        from lmfit import Minimizer

        mini = Minimizer(self.residual, self.law.parameters(free_values), calc_covar=False)
        try:
            with warnings.catch_warnings():  # lmfit's correlation estimate divides by zero on flat directions
                warnings.filterwarnings("ignore", category=RuntimeWarning, module="lmfit")
                out = mini.minimize(method="least_squares", loss="huber", f_scale=DELTA, x_scale="jac",
                                    ftol=TOL, xtol=TOL, gtol=TOL, max_nfev=max_nfev)
        except Exception as exc:  # noqa: BLE001 - the user's expression raised somewhere on the way: a failed run
            return {"x": np.asarray(free_values, dtype=float), "objective": math.inf, "nfev": 0, "status": -1,
                    "message": f"{type(exc).__name__}: {exc}", "aborted": True, "rel_grad": math.inf,
                    "grad_norm": math.inf, "invalid_points": 0, "at_bound": [], "ok": False}
        x = np.array([out.params[n].value for n in self.law.free])
        run = {"x": x, "objective": self.objective(out.params), "nfev": int(out.nfev),
               "status": int(getattr(out, "status", 0) or 0), "message": str(getattr(out, "message", "")),
               "aborted": bool(out.aborted)}
        mask = np.asarray(getattr(out, "active_mask", np.zeros(len(x))), dtype=int) != 0
        run.update(self.gradient_check(out.params, mask))
        run["at_bound"] = [n for n, m in zip(self.law.free, mask) if m]
        run["ok"] = bool(np.isfinite(run["objective"]) and not run["aborted"] and run["status"] > 0
                         and run["invalid_points"] == 0 and at_minimum(run["rel_grad"], run["grad_norm"],
                                                                       len(self.lL)))
        return run

    def jacobian(self, params) -> np.ndarray:
        """d log L_hat / d (free parameters) by central differences, one-sided at a bound."""
        x = np.array([params[n].value for n in self.law.free])
        J = np.empty((len(self.lL), len(x)))
        for k, n in enumerate(self.law.free):
            lo, hi = self.law.bounds[n]
            h = 1e-6 * max(abs(x[k]), 1e-3)
            up, down = min(x[k] + h, hi), max(x[k] - h, lo)
            p_up, p_down = params.copy(), params.copy()
            p_up[n].set(value=up)
            p_down[n].set(value=down)
            J[:, k] = (self.log_model(p_up) - self.log_model(p_down)) / (up - down)
        return J

    def gradient_check(self, params, mask) -> dict:
        """The built-in forms' convergence measures at `params` (as logfit.relative_gradient and logfit.refine):
        max_k |sum_i g_ik| / sum_i |g_ik| over the per-point gradient contributions g_ik of f / delta, and the
        largest |sum_i g_ik|, leaving out components held at an active bound (`mask`); the points where the
        model has no log are counted."""
        pred = self.log_model(params)
        invalid = int(np.sum(~np.isfinite(pred)))
        if invalid:
            return {"rel_grad": math.inf, "grad_norm": math.inf, "invalid_points": invalid}
        G = (np.clip(pred - self.lL, -DELTA, DELTA) / DELTA)[:, None] * self.jacobian(params)
        total, size = np.abs(G.sum(axis=0)), np.abs(G).sum(axis=0)
        rel = np.where(mask, 0.0, np.where(size > 0, total / np.where(size > 0, size, 1.0), 0.0))
        if not np.all(np.isfinite(rel)):
            return {"rel_grad": math.inf, "grad_norm": math.inf, "invalid_points": 0}
        return {"rel_grad": float(np.max(rel)), "grad_norm": float(np.max(np.where(mask, 0.0, total))),
                "invalid_points": 0}


@blas_single
def refit_rows(rows, law: Law, columns: dict, lL, starts, max_nfev=None):
    """Refit on each row of data indices (a bootstrap resample, or the table less one run) from each of
    `starts` (free values); rows of (free values, objective), NaN where no start reached a minimum."""
    problem = Problem(law, columns, lL)
    out = np.full((len(rows), len(law.free) + 1), np.nan)
    for i, ix in enumerate(rows):
        sub = problem.subset(np.asarray(ix, dtype=int))
        runs = [sub.solve(x0, max_nfev) for x0 in starts]
        runs = [r for r in runs if r["ok"]]
        if runs:
            best = min(runs, key=lambda r: r["objective"])
            out[i] = np.r_[best["x"], best["objective"]]
    return out


# -- the estimator ---------------------------------------------------------------------------------------------
class Expr(Estimator):
    """A law written as an expression in N and/or D, by Huber (delta 1e-3) on log loss, with bootstrap over runs.

    Settings:
    - expr: the law, e.g. "E + A*N**-alpha + B*D**-beta"; names other than N, D (and asteval's functions and
      constants: exp, log, sqrt, pi, e, ...) are parameters;
    - guess: start values {name: value} (or "name=value,..."), one per parameter not fixed;
    - bounds: {name: (lo, hi)} (None or +-inf: open; or "name=lo:hi,..."); fixed: {name: value}, held there
      (a fixed value overrides a guess);
    - starts: the guess plus starts-1 jittered copies (each free value times exp(jitter * z), z ~ N(0, 1));
    - bootstrap: resamples of the rows (0: none); interval: "bca" or "percentile" reported (both saved);
    - confidence, seed (jitter and resamples), workers (processes; None: all cores), max_nfev (per run;
      None: lmfit's default 2000 (free + 1)).
    """

    name = "expr"
    min_points = 2  # per instance: the free parameters plus one

    def __init__(self, *, expr=None, guess=None, bounds=None, fixed=None, starts=8, jitter=0.5, bootstrap=0,
                 confidence=0.95, seed=0, workers=None, interval="bca", max_nfev=None):
        law = Law.parse(expr, guess, bounds, fixed)
        if int(starts) < 1:
            raise UserError(f"expr: starts must be >= 1, got {starts!r}")
        if not (math.isfinite(float(jitter)) and float(jitter) >= 0):
            raise UserError(f"expr: jitter must be a finite number >= 0, got {jitter!r}")
        super().__init__(expr=law.expr, guess={n: law.values[n] for n in law.free},
                         bounds={n: b for n, b in law.bounds.items() if b != (-math.inf, math.inf)},
                         fixed={n: law.values[n] for n in law.fixed}, starts=int(starts), jitter=float(jitter),
                         bootstrap=bootstrap, confidence=confidence, seed=seed, workers=workers, interval=interval,
                         max_nfev=max_nfev)
        self._check_settings(interval=("bca", "percentile"))
        self.law = law
        self.min_points = len(law.free) + 1

    @property
    def variables(self) -> tuple[str, ...]:
        """The independent variables the expression uses (N, D or both)."""
        return self.law.variables

    def _columns(self, N, D, loss):
        """{variable: array} for the variables the expression uses, and the loss; validated."""
        used = self.variables
        if D is None and loss is None and hasattr(N, "columns"):
            missing = [c for c in (*used, "loss") if c not in N.columns]
            if missing:
                raise UserError(f"table lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, N.columns))})")
            N, D, loss = (N[c] if c in N.columns else None for c in ("N", "D", "loss"))
        elif loss is None and N is not None and D is not None:  # fit(x, loss): a 1-d expression's one variable
            if len(used) != 1:
                raise UserError(f"expr: {self.law.expr!r} uses N and D: call fit(N, D, loss)")
            N, D, loss = (N, None, D) if used == ("N",) else (None, N, D)
        given = {"N": N, "D": D}
        absent = [v for v in used if given[v] is None]
        if absent or loss is None:
            raise UserError(f"expr: {self.law.expr!r} needs {' and '.join(absent or ['the loss'])}: "
                            f"call fit({', '.join(used)}, loss)")
        arrays = {v: np.asarray(given[v], dtype=float).ravel() for v in used}
        arrays["loss"] = np.asarray(loss, dtype=float).ravel()
        # the variables may be any finite numbers (the expression decides); log loss needs loss > 0
        check_arrays(self.name, self.min_points, positive=("loss",), **arrays)
        return {v: arrays[v] for v in used}, arrays["loss"]

    def _starts(self, s) -> np.ndarray:
        x0 = np.array([self.law.values[n] for n in self.law.free])
        rng = bs.rng_from(s["seed"])
        z = rng.standard_normal((s["starts"] - 1, len(x0)))
        jittered = np.where(x0 != 0, x0 * np.exp(s["jitter"] * z), s["jitter"] * z)
        lo = np.array([self.law.bounds[n][0] for n in self.law.free])
        hi = np.array([self.law.bounds[n][1] for n in self.law.free])
        return np.vstack([x0, np.clip(jittered, lo, hi)])

    @blas_single
    def fit(self, N=None, D=None, loss=None, *, label: str = "") -> FitResult:
        columns, L = self._columns(N, D, loss)
        s = dict(self.settings)
        law = self.law
        problem = Problem(law, columns, np.log(L))
        try:
            at_guess = problem.log_model(law.parameters())
        except Exception as exc:  # noqa: BLE001 - asteval evaluating the user's expression: report it, one line
            raise UserError(f"expr: evaluating {law.expr!r} at the guess failed: {type(exc).__name__}: {exc}") from None
        bad = ~np.isfinite(at_guess)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            at = ", ".join(f"{v}={columns[v][i]:.4g}" for v in law.variables)
            raise UserError(f"expr: at the guess {law.expr!r} is <= 0 or not finite at {int(bad.sum())} of "
                            f"{len(L)} points (first at {at}); the log-loss objective needs a positive model")
        starts = self._starts(s)
        # a jittered start where the model has no log at some point would only fit the other points: drop it
        valid = [True] + [problem.valid_at(x0) for x0 in starts[1:]]
        starts = starts[np.array(valid)]
        runs = [problem.solve(x0, s["max_nfev"]) for x0 in starts]
        objs = np.array([r["objective"] if r["ok"] else np.inf for r in runs])
        X = np.array([r["x"] for r in runs])
        i = int(np.argmin(objs)) if np.isfinite(objs).any() else int(np.argmin([r["objective"] for r in runs]))
        best = runs[i]
        n_agree, spread = logfit.agreement(X, objs)
        diag = {"starts": len(starts), "starts_dropped": len(valid) - len(starts), "starts_at_best": n_agree,
                "best_starts_spread": spread, "rel_grad": best["rel_grad"], "grad_norm": best["grad_norm"],
                "nfev": best["nfev"], "solver_message": best["message"]}
        if law.fixed:
            diag["fixed"] = list(law.fixed)
        failures = []
        if best["invalid_points"]:
            failures.append(f"the model is <= 0 or not finite at {best['invalid_points']} point(s) at the best fit")
        elif not np.isfinite(objs).any():
            failures.append(f"no start reached a minimum (best run: {best['message'] or 'aborted'}, relative "
                            f"gradient {best['rel_grad']:.2g}; {REL_GRAD_FAIL:g} or less is a minimum)")
        elif len(starts) > 1 and n_agree < 2:
            failures.append("the best starts disagree (only one start reached the best objective)")
        params = {n: float(law.values[n]) for n in law.names}
        params.update(zip(law.free, map(float, best["x"])))
        if best["at_bound"]:
            diag.setdefault("notes", []).append(
                "at a bound (the bound, not the data, sets the value): " + ", ".join(
                    f"{n}={params[n]:.6g} in [{law.bounds[n][0]:g}, {law.bounds[n][1]:g}]" for n in best["at_bound"]))
        prov = provenance(self.name, SOLVER, s, {**columns, "loss": L}, label=label)
        prov["expr"] = law.expr
        result = FitResult(self.name, params, objective=float(best["objective"]), diagnostics=diag,
                           converged=not failures, provenance=prov,
                           state={"expr": law.expr, "variables": list(law.variables)})
        if failures:
            diag["failure"] = "; ".join(failures)
            return result
        if s.get("bootstrap"):
            # warm start from the estimate only: a jittered start's other minimum is often far worse, and a
            # refit from there costs ten times as much
            self._bootstrap(result, problem, s, best["x"][None, :])
        return result

    def _bootstrap(self, result: FitResult, problem: Problem, s, starts):
        """Bootstrap over runs: resample rows, refit; percentile and BCa intervals of the free parameters."""
        law = self.law
        n = len(problem.lL)
        B = int(s["bootstrap"])
        args = (law, problem.columns, problem.lL)
        rows = bs.resample_indices(s["seed"], B, n)
        draws = map_split(refit_rows, rows, *args, starts, s["max_nfev"], workers=s.get("workers"),
                          min_per_worker=50)[:, :-1]
        leave_one_out = np.array([np.delete(np.arange(n), i) for i in range(n)])
        jack = map_split(refit_rows, leave_one_out, *args, starts, s["max_nfev"], workers=s.get("workers"),
                         min_per_worker=50)[:, :-1]
        names = list(law.free)
        est = np.array([result.params[k] for k in names])
        bs.record_intervals(result, names, est, draws, jack, s["confidence"], s.get("interval", "bca"))


@register_form("expr")
def predict(result, *x):
    """The stored expression evaluated with asteval (lmfit's ExpressionModel) at the fitted parameters:
    predict(N, D), or predict(x) for an expression in N only or D only."""
    expr, used = result.state.get("expr"), tuple(result.state.get("variables", ()))
    if not expr or not used:
        raise UserError("expr: this result stores no expression (state.expr, state.variables) to predict with")
    if len(x) == 2:
        values = dict(zip(VARIABLES, x))
    elif len(x) == 1 and len(used) == 1:
        values = {used[0]: x[0]}
    else:
        raise UserError(f"expr: predict takes (N, D){' or (' + used[0] + ')' if len(used) == 1 else ''}, "
                        f"got {len(x)} array(s)")
    from lmfit import Parameters

    model = _model(expr, used)
    params = Parameters()
    for k, v in result.params.items():
        params.add(k, value=v)
    shape = np.broadcast_shapes(*(np.shape(values[v]) for v in used))
    with np.errstate(all="ignore"):
        y = model.eval(params, **{v: values[v] for v in used})
    return np.broadcast_to(np.asarray(y, dtype=float), shape).copy()
