"""The report's summary across families: two tables read off results the report already has (the 1-d L(N) slice
fits and the compute-optimal reports), one row per (family, param); nothing is fitted here.

- alpha_row: how many L(N) slices there are and how many resolve alpha, alpha at the largest D with its
  interval, the resolved alphas' range over D, and the paper's alpha for the family's kind;
- optimal_row: every compute-optimal method's a (N_opt ~ C^a) side by side, and whether they agree.
A group whose result is missing (not computed, --no-compute) gets "-" in every cell that needs it.
"""
from __future__ import annotations

import math
import re

from scalingkit.fit.resolved import at_fitting_bound
from scalingkit.plots.style import count_text, fmt, with_interval

# The exponent alpha of L(N) the paper reports, by family kind (er, ba, bigram, generated, text). Empty on
# purpose: ../shared/PAPER.md gives no numeric alpha for any family (only that exponents change monotonically
# with the data's complexity), and a number not in it must not be made up. Fill it from the paper's tables.
PAPER_ALPHA: dict[str, str] = {}
NOT_GIVEN = "not given in PAPER.md"

# the order the compute-optimal methods are listed in (optimal.pipeline's, with its two-result methods split)
METHOD_ORDER = ("envelope", "isoflop-parabola", "isoflop-akima", "parametric", "surrogate-mlp", "surrogate-kernel")
FAILURE_CHARS = 60

ALPHA_HEADER = ["family", "param", "L(N) slices", "resolved", "alpha at the largest D [95%]",
                "resolved alpha over D (min to max)", "paper"]
OPTIMAL_HEADER = ["family", "param", *METHOD_ORDER, "agreement on a"]


def paper_alpha(family_kind: str | None) -> str:
    return PAPER_ALPHA.get(family_kind or "", NOT_GIVEN)


def alpha_resolved(result) -> bool:
    """alpha of one L(N) slice is pinned down by the runs: the fit converged, alpha is not at (nor does its interval
    reach) the fit's bound, and its interval lies above 0 (a lower end <= 0 means no decrease with N is shown)."""
    if not result.converged or at_fitting_bound(result, "alpha"):
        return False
    iv = result.intervals.get("alpha")
    if iv is None or any(x is None or not math.isfinite(x) for x in iv):
        return False  # no interval: nothing says the data, not the start, set it
    return iv[0] > 0


def n_slices(coll, g: dict) -> list:
    """The L(N) fits (at fixed D) of group g in a FitCollection, by D."""
    rows = [r for r in coll.results if r.provenance.get("group") == g and r.provenance.get("axis") == "N"]
    return sorted(rows, key=lambda r: r.provenance.get("fixed", {}).get("D", -math.inf))


def alpha_row(g: dict, coll, family_kind: str | None) -> list[str]:
    """One row of the L(N) table; coll None (the fits were not computed) gives '-' for what rests on them."""
    head = [g["family"], g["param"]]
    if coll is None:
        return head + ["-"] * 4 + [paper_alpha(family_kind)]
    fits = n_slices(coll, g)
    if not fits:
        return head + ["0", "-", "-", "-", paper_alpha(family_kind)]
    good = [r for r in fits if alpha_resolved(r)]
    last = fits[-1]
    at = f" at D = {count_text(last.provenance['fixed']['D'])}" if "D" in last.provenance.get("fixed", {}) else ""
    if alpha_resolved(last):
        largest = with_interval(last.params.get("alpha"), last.intervals.get("alpha"), 3) + at
    else:
        largest = "not resolved" + at + ("" if last.converged else " (the fit failed)")
    values = [r.params["alpha"] for r in good]
    span = ("-" if not values else fmt(values[0], 3) if len(values) == 1
            else f"{fmt(min(values), 3)} to {fmt(max(values), 3)}")
    return head + [str(len(fits)), str(len(good)), largest, span, paper_alpha(family_kind)]


def alpha_note(colls: list) -> str:
    """The sentence under the L(N) table: what resolved means, and where the intervals come from (read off the
    fits: their interval method and draws)."""
    how = sorted({f"{r.diagnostics.get('interval_method', 'no interval')}"
                  + (f", {r.diagnostics['bootstrap_draws']} draws" if r.diagnostics.get("bootstrap_draws") else "")
                  for c in colls if c is not None for r in c.results
                  if r.provenance.get("axis") == "N" and r.converged})
    return ("Resolved: the slice fit L(N) = E + A N^-alpha at that D converged, alpha is not at its fit's bound and "
            "its 95% interval neither reaches a bound nor goes down to 0; the intervals are each slice fit's own ("
            + ("; ".join(how) or "none") + "), as in each family's table of slices.")


def short_failure(text: str, limit: int = FAILURE_CHARS) -> str:
    """The first clause of a failure, cut to `limit` characters."""
    first = re.split(r";\s|\.\s", str(text).strip(), maxsplit=1)[0].rstrip(".")
    return first if len(first) <= limit else first[:limit - 3].rstrip() + "..."


def a_cell(report, method: str) -> str:
    """One method's a for the table: 'a [lo, hi]', 'FAILED: why', 'not identified', or '-' (not run)."""
    from scalingkit.optimal.result import NOT_IDENTIFIED, identified, law_cell

    r = next((x for x in report.results if x.method == method), None)
    if r is None:
        return "-"
    if not r.converged:
        return f"FAILED: {short_failure(r.failure)}"
    if not identified(r, "a"):
        return NOT_IDENTIFIED
    if r.intervals.get("a") is None:
        return with_interval(r.params.get("a"), None, 3)
    return law_cell(r, "a")


def agreement_cell(report) -> str:
    """OptimalReport.agreement() in a few words: 'agree within 0.2 (x to y)' or 'disagree: M gives v, others x to
    y' (the why stays in the family's own section)."""
    line = report.agreement()
    if not line:
        return "fewer than two methods give a"
    m = re.match(r"the \d+ methods agree on a within (\S+) \((.*)\)$", line)
    if m:
        return f"agree within {m[1]} ({m[2]})"
    m = re.match(r"methods disagree on a: (\S+) gives (\S+), the others ([^\s;]+(?: to [^\s;]+)?)( \(its 95% interval)?", line)
    if m:
        lo, _, hi = m[3].partition(" to ")
        within = " (within its own interval)" if m[4] else ""
        return f"disagree: {m[1]} gives {m[2]}, " + (f"the other {lo}" if lo == hi else f"others {m[3]}") + within
    return short_failure(line, 80)  # a wording this does not know: its first clause


def optimal_row(g: dict, report) -> list[str]:
    """One row of the compute-optimal table; report None (not computed) gives '-' everywhere."""
    head = [g["family"], g["param"]]
    if report is None:
        return head + ["-"] * (len(METHOD_ORDER) + 1)
    return head + [a_cell(report, m) for m in METHOD_ORDER] + [agreement_cell(report)]


def optimal_note(n_convention: str) -> str:
    """The sentence under the compute-optimal table."""
    from scalingkit.optimal.result import AGREEMENT

    return (f"a is the exponent of N_opt ~ C^a (N = {n_convention} parameters, C = 6ND); not identified: it rests "
            "on a 2-d exponent whose 95% interval reaches 0 or its fit's bound, and that row takes no part in the "
            f"agreement (do the other methods' a lie within {AGREEMENT:g} of each other); each interval is the "
            "method's own 95% interval (a bootstrap over runs for most; each family's 'where its intervals come "
            "from' table says which).")
