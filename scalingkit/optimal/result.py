"""Compute-optimal results, in the FitResult style: parameters, intervals, diagnostics, table(), to_dict().

An `OptimalResult` is one method's answer for one group of runs:
- params: gamma, E_C, K (L_opt = E_C + K C^-gamma), a, b (N_opt = kN C^a, D_opt = kD C^b), kN, kD;
- budgets: N_opt, D_opt and tokens per parameter at each asked compute, with intervals;
- points: the compute-optimal points the laws were fitted to (C, N, D, L), for figures and checks;
- diagnostics: what the method rejected, clipped or disagreed on.
An `OptimalReport` holds every method's result for one group, prints them side by side and saves as one JSON.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scalingkit.errors import UserError
from scalingkit.fit.base import jsonable

LAW_NAMES = ("gamma", "E_C", "K", "a", "b", "kN", "kD")
BUDGET_NAMES = ("N_opt", "D_opt", "tokens_per_param")
# What an exponent of the 2-d law feeds: with alpha (or beta) unresolved, gamma = alpha beta / (alpha + beta), the
# split a, b and every N_opt, D_opt and D/N are numbers without meaning (issue #19: an N_opt of 33 parameters was
# printed as a result); E_C (= E) does not rest on them.
RESTS_ON_EXPONENTS = ("gamma", "K", "a", "b", "kN", "kD") + BUDGET_NAMES
NOT_IDENTIFIED = "not identified"


def _f(x) -> float:
    return float("nan") if x is None else float(x)


def fmt(x, digits: int = 4) -> str:
    if x is None or not math.isfinite(float(x)):
        return "nan"
    return f"{float(x):.{digits}g}"


def fmt_interval(value, iv, digits: int = 3) -> str:
    span = f" [{fmt(iv[0], digits)}, {fmt(iv[1], digits)}]" if iv is not None else ""
    return fmt(value, digits) + span


def identified(result: "OptimalResult", name: str) -> bool:
    """False for a quantity that rests on an exponent the runs do not resolve (diagnostics["unresolved"]): it is
    printed and drawn as not identified, never as a number."""
    return not (result.diagnostics.get("unresolved") and name in RESTS_ON_EXPONENTS)


def budget_cell(result: "OptimalResult", row: dict, name: str, digits: int = 3) -> str:
    if not identified(result, name):
        return NOT_IDENTIFIED
    return fmt_interval(row["values"].get(name), row["intervals"].get(name), digits)


def law_cell(result: "OptimalResult", name: str) -> str:
    """A law's value and interval for the table; an end of gamma's interval that is its fitting bound (the runs
    do not bound it there: laws.open_gamma_ends) is marked as such, not printed as if the data had set it; a value
    that rests on an unresolved exponent is "not identified"."""
    if not identified(result, name):
        return NOT_IDENTIFIED
    if name in ("gamma", "E_C", "K") and result.diagnostics.get("gamma_failure"):
        return "not fitted"  # L_opt(C) has too few optima for its three parameters: a note says why, not "nan"
    iv = result.intervals.get(name)
    open_ends = result.diagnostics.get("gamma_open", "") if name == "gamma" else ""
    if iv is None or not open_ends:
        return fmt_interval(result.params.get(name), iv)
    lo, hi = fmt(iv[0], 3), fmt(iv[1], 3)
    lo, hi = (f"{lo} (bound)" if "below" in open_ends else lo), (f"{hi} (bound)" if "above" in open_ends else hi)
    return f"{fmt(result.params.get(name), 3)} [{lo}, {hi}]"


@dataclass
class OptimalResult:
    method: str
    params: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    budgets: list[dict] = field(default_factory=list)  # {"C", "values": {name: v}, "intervals": {name: (lo, hi)}}
    points: dict[str, list] = field(default_factory=dict)  # C, N, D, L of the optima the laws were fitted to
    diagnostics: dict = field(default_factory=dict)
    converged: bool = True
    provenance: dict = field(default_factory=dict)

    @property
    def failure(self) -> str:
        return str(self.diagnostics.get("failure", "not converged"))

    def __getitem__(self, name: str) -> float:
        return self.params[name]

    def predict(self, C) -> dict:
        """N_opt, D_opt and L_opt at compute C from the fitted laws."""
        C = np.asarray(C, dtype=float)
        p = self.params
        with np.errstate(all="ignore"):
            return {"N_opt": p["kN"] * C ** p["a"], "D_opt": p["kD"] * C ** p["b"],
                    "L_opt": p["E_C"] + p["K"] * C ** -p["gamma"]}

    def point_arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=float) for k, v in self.points.items()}

    # -- printing -------------------------------------------------------------------------------------------
    def table(self) -> str:
        lines = [f"{self.method}: {self.diagnostics.get('n_points', '?')} compute-optimal points"]
        if not self.converged:
            lines.append(f"  FAILED: {self.failure}")
            return "\n".join(lines)
        for k in LAW_NAMES:
            if k in self.params:
                cell = fmt_interval(self.params[k], self.intervals.get(k), 4) if identified(self, k) else NOT_IDENTIFIED
                lines.append(f"  {k:<6} {cell}")
        for row in self.budgets:
            lines.append(f"  at C = {row['C']:.3g}: " + ", ".join(f"{k} {budget_cell(self, row, k)}"
                                                                for k in BUDGET_NAMES))
        lines += [f"  {note}" for note in self.diagnostics.get("notes", [])]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    # -- persistence ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return jsonable({
            "kind": "optimal", "method": self.method, "params": self.params,
            "intervals": {k: list(v) for k, v in self.intervals.items()},
            "budgets": [{"C": r["C"], "values": r["values"],
                         "intervals": {k: list(v) for k, v in r["intervals"].items()}} for r in self.budgets],
            "points": self.points, "diagnostics": self.diagnostics, "converged": self.converged,
            "provenance": self.provenance,
        })

    @classmethod
    def from_dict(cls, d: dict) -> "OptimalResult":
        return cls(
            method=d["method"],
            params={k: _f(v) for k, v in d.get("params", {}).items()},
            intervals={k: (_f(v[0]), _f(v[1])) for k, v in d.get("intervals", {}).items()},
            budgets=[{"C": _f(r["C"]), "values": {k: _f(v) for k, v in r["values"].items()},
                      "intervals": {k: (_f(v[0]), _f(v[1])) for k, v in r["intervals"].items()}}
                     for r in d.get("budgets", [])],
            points={k: [_f(x) for x in v] for k, v in d.get("points", {}).items()},
            diagnostics=d.get("diagnostics", {}), converged=bool(d.get("converged", True)),
            provenance=d.get("provenance", {}),
        )


def failed(method: str, reason: str, **diagnostics) -> OptimalResult:
    """A result that says why it has no numbers (never a half-filled table)."""
    return OptimalResult(method, diagnostics={**diagnostics, "failure": reason}, converged=False)


def _extrapolated(result, C, name) -> bool:
    """Whether N_opt or D_opt (or D/N, from either) at budget C lies outside the sampled sizes (pipeline)."""
    flags = result.diagnostics.get("extrapolated", [])
    names = ("N_opt", "D_opt") if name == "tokens_per_param" else (name,)
    return any(f["C"] == C and f["name"] in names for f in flags)


AGREEMENT = 0.2  # methods agree on a when they lie within this of each other (issue #13)


@dataclass
class OptimalReport:
    """Every method's result for one group of runs, with the group's provenance."""

    label: str
    results: list[OptimalResult]
    settings: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    def __getitem__(self, method: str) -> OptimalResult:
        for r in self.results:
            if r.method == method:
                return r
        raise KeyError(method)

    @property
    def methods(self) -> list[str]:
        return [r.method for r in self.results]

    def table(self, verbose: bool = True, saved=None) -> str:
        """The methods side by side (gamma, a, b, then N_opt, D_opt, D/N at each budget), failures, whether the
        methods agree on a, and every result's notes (verbose) or how many there are. saved: the file the report
        was saved to, named on the last line."""
        s = self.settings
        conf = int(round(100 * s.get("confidence", 0.95)))
        flops = "6ND" if s.get("flops", "6nd") == "6nd" else "exact FLOPs (envelope), 6ND elsewhere"
        loss = self.provenance.get("source", {}).get("loss")
        lines = [f"compute-optimal [{self.label}]: N = {s.get('n_convention', 'total')} parameters, C = {flops}; "
                 f"{conf}% intervals" + (f"; {loss} loss" if loss else "")]
        ok = [r for r in self.results if r.converged]
        width = max([len(r.method) for r in self.results] + [6])
        if ok:
            laws = [[law_cell(r, k) for k in ("gamma", "a", "b")] for r in ok]
            cols = [max(len(k), *(len(row[i]) for row in laws)) + 2 for i, k in enumerate(("gamma", "a", "b"))]
            lines.append(f"  {'method':<{width}}  {'points':>6}  "
                         + "".join(f"{k:<{c}}" for k, c in zip(("gamma", "a", "b"), cols)))
            for r, row in zip(ok, laws):
                lines.append(f"  {r.method:<{width}}  {r.diagnostics.get('n_points', 0):>6}  "
                             + "".join(f"{cell:<{c}}" for cell, c in zip(row, cols)))
            budgets = [row["C"] for row in ok[0].budgets]
            marked = any(identified(r, k) and _extrapolated(r, C, k) for r in ok for C in budgets for k in BUDGET_NAMES)
            for i, C in enumerate(budgets):
                cells = [[budget_cell(r, r.budgets[i], k)
                          + (" *" if identified(r, k) and _extrapolated(r, C, k) else "") for k in BUDGET_NAMES]
                         for r in ok]
                cols = [max(len(k), *(len(row[j]) for row in cells)) + 2 for j, k in enumerate(("N_opt", "D_opt", "D/N"))]
                lines.append(f"  at C = {C:.3g}" + (" (* outside the sampled N or D: the fitted law extrapolated, not "
                                                   "a measured optimum)" if marked and i == 0 else "") + ":")
                lines.append(f"  {'method':<{width}}  " + "".join(f"{k:<{c}}" for k, c in zip(("N_opt", "D_opt", "D/N"), cols)))
                for r, row in zip(ok, cells):
                    lines.append(f"  {r.method:<{width}}  " + "".join(f"{cell:<{c}}" for cell, c in zip(row, cols)))
        for r in ok:  # said even without --verbose (where the note below says it): these rows are not estimates
            if r.diagnostics.get("unresolved") and not verbose:
                lines.append(f"  {r.method}: {' and '.join(r.diagnostics['unresolved'])} not resolved at these sizes, so "
                             "its gamma, a, b, N_opt and D_opt are not identified")
        agreement = self.agreement()
        if agreement:
            lines.append(f"  {agreement}")
        n_notes = 0
        failed: dict = {}  # one line per distinct failure (both IsoFLOP fits fail for the same reason)
        for r in self.results:
            if not r.converged:
                failed.setdefault(r.failure, []).append(r.method)
        lines += [f"  {', '.join(methods)}: FAILED: {why}" for why, methods in failed.items()]
        for r in self.results:
            notes = r.diagnostics.get("notes", [])
            n_notes += len(notes)
            if verbose:
                lines += [f"  {r.method}: {note}" for note in notes]
        if not verbose and n_notes:
            lines.append(f"  {n_notes} note(s) on these results: --verbose, the report or "
                         + (f"{saved}" if saved else "the saved JSON"))
        elif saved:
            lines.append(f"  saved {saved}")
        return "\n".join(line.rstrip() for line in lines)

    def agreement(self, tolerance: float = AGREEMENT) -> str:
        """One line: do the methods that estimate a agree within `tolerance`? If not, which one is furthest from
        the others' median, and why (its first note, or how few points it rests on). A method whose a rests on an
        unresolved exponent (diagnostics["unresolved"]) takes no part."""
        with_a = [r for r in self.results if r.converged and np.isfinite(r.params.get("a", np.nan))
                  and not r.diagnostics.get("unresolved")]  # a row resting on an unresolved exponent has no a
        if len(with_a) < 2:
            return ""
        values = np.array([r.params["a"] for r in with_a])
        if np.ptp(values) <= tolerance:
            return (f"the {len(with_a)} methods agree on a within {tolerance:g} "
                    f"({values.min():.3g} to {values.max():.3g})")
        far = int(np.argmax([abs(v - np.median(np.delete(values, i))) for i, v in enumerate(values)]))
        r = with_a[far]
        others = np.delete(values, far)
        notes = r.diagnostics.get("notes", [])
        # the note most likely to explain it: a staircase, edge or clipped optima, an extrapolation, a bound
        telling = [n for n in notes if any(w in n for w in ("not resolved", "staircase", "edge", "clipped", "outside",
                                                            "bound", "left out"))]
        why = (telling or notes or [f"it rests on {r.diagnostics.get('n_points', '?')} points"])[0]
        iv = r.intervals.get("a")
        # an outlier whose own interval takes in the others' estimates differs by its noise, not by what it found
        loose = (iv is not None and all(np.isfinite(iv)) and iv[0] <= others.min() and others.max() <= iv[1])
        span = (f" (its 95% interval [{iv[0]:.3g}, {iv[1]:.3g}] takes in theirs: a difference within its own "
                "uncertainty)" if loose else "")
        return (f"methods disagree on a: {r.method} gives {values[far]:.3g}, the others {others.min():.3g} to "
                f"{others.max():.3g}{span}; {r.method}: {why}")

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict:
        return jsonable({"kind": "optimal-report", "label": self.label, "settings": self.settings,
                         "provenance": self.provenance, "results": [r.to_dict() for r in self.results]})

    @classmethod
    def from_dict(cls, d: dict) -> "OptimalReport":
        return cls(d["label"], [OptimalResult.from_dict(r) for r in d.get("results", [])], d.get("settings", {}),
                   d.get("provenance", {}))


def report_filename(report: OptimalReport) -> str:
    """Named by group, data hash and settings, so the same analysis of the same data rewrites the same file."""
    data = str(report.provenance.get("data_sha256", "nodata"))[:12]
    tag = hashlib.sha256(json.dumps(jsonable(report.settings), sort_keys=True).encode()).hexdigest()[:8]
    label = "".join(c if c.isalnum() or c in "-_." else "-" for c in report.label)[:60].strip("-")
    return f"optimal-{label}-{data}-{tag}.json"


def save_report(report: OptimalReport, out_dir) -> Path:
    """Write the report as JSON in out_dir and record it in out_dir/index.csv (fit.results.record_in_index)."""
    from scalingkit.fit.results import record_in_index

    path = Path(out_dir) / report_filename(report)
    doc = report.to_dict()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    except OSError as exc:
        raise UserError(f"cannot write the result to {path.parent}: {exc.strerror or exc}") from None
    record_in_index(doc, path)
    return path


def load_report(path) -> OptimalReport:
    try:
        d = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"no compute-optimal result at {path}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read compute-optimal result {path}: {exc}") from None
    if d.get("kind") != "optimal-report":
        raise UserError(f"{path} is not a scalingkit compute-optimal result")
    return OptimalReport.from_dict(d)
