"""What `fit` prints by default: one compact table per form, one line per fit (estimates with their intervals, the
verdict), its notes counted. `--verbose` prints every fit's full block instead, and the JSON saved beside the cube
always holds everything."""
from __future__ import annotations

import math
import statistics
from collections import defaultdict

from scalingkit.fit.resolved import at_fitting_bound, unresolved_exponents  # noqa: F401 - used here and by tests

FIXED = {"N": "D", "D": "N"}


def num(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}g}"


def with_interval(result, name: str, digits: int = 4) -> str:
    value = result.params.get(name)
    iv = result.intervals.get(name)
    text = num(value, digits)
    return text + (f" [{num(iv[0], digits)}, {num(iv[1], digits)}]" if iv else "")


def _group_label(group: dict) -> str:
    return "/".join(str(v) for v in group.values()) or "all rows"


def _floor_text(r) -> str:
    floor = r.diagnostics.get("loss_floor")
    if floor is None:
        return ""
    kind = r.diagnostics.get("loss_floor_kind", "exact")
    return f"floor {floor:.4f} ({kind})"


def _excess(r) -> dict:
    """The slice's excess-loss fit (log(L - floor) against log x: fit/excess.py), where the floor is exact."""
    e = r.diagnostics.get("excess") or {}
    return e if e.get("alpha") is not None and math.isfinite(e.get("alpha", math.nan)) else {}


def _excess_ratio(e: dict) -> float:
    p, x = e.get("mse_log_power", math.nan), e.get("mse_log_exp", math.nan)
    return p / x if x and math.isfinite(p) and math.isfinite(x) and x > 0 else math.nan


def _ahead(ratios) -> tuple[int, int, float]:
    """(slices where the power law's MSE is below the exponential's, slices with a finite ratio, median ratio)."""
    finite = sorted(x for x in ratios if x is not None and math.isfinite(x))
    if not finite:
        return 0, 0, math.nan
    return sum(x < 1 for x in finite), len(finite), statistics.median(finite)


def slices_table(collection, saved=None) -> str:
    """The 1-d fits of a table: per group and axis, one line per slice and the exponents' summary. Where the floor
    is exact, each slice also shows the excess-loss fit: the exponent of L - floor (a straight line in log-log, the
    offset fixed at the floor) and its MSE against the exponential in the same space."""
    blocks = defaultdict(list)
    for r in collection.results:
        blocks[(_group_label(r.provenance.get("group", {})), r.provenance.get("axis", "x"))].append(r)
    lines = []
    notes = 0
    for (group, axis), results in blocks.items():
        names = results[0].state.get("names") or list(results[0].params)
        offset, exponent = names[0], names[2]
        first = results[0]
        loss = first.provenance.get("loss", "")
        head = f"{collection.form} L({axis}) at fixed {FIXED.get(axis, '?')}  [{group}]"
        head += f"  {loss} loss" if loss else ""
        floor = _floor_text(first)
        lines.append(head + (f"  {floor}" if floor else ""))
        with_excess = any(_excess(r) for r in results)
        lines.append(f"  {FIXED.get(axis, 'fixed'):>9}  {offset + ' [95%]':<22} {exponent + ' [95%]':<21} "
                     f"{'LOO p/e':>7}  {'verdict':<22}" + (f"  {'L-floor: ' + exponent + ' [95%]':<24} MSE p/e"
                                                          if with_excess else ""))
        exps, unresolved, excess_ratios = [], 0, []
        for r in results:
            fixed = r.provenance.get("fixed", {})
            where = num(next(iter(fixed.values()), math.nan), 3)
            if not r.converged:
                lines.append(f"  {where:>9}  failed: {r.failure}")
                continue
            v = r.diagnostics.get("verdict") or {}
            ratio = v.get("cv_ratio_power_vs_exp", r.diagnostics.get("mse_ratio_power_vs_exp"))
            call = v.get("verdict", "")
            if r.diagnostics.get("at_bound") and offset in r.diagnostics["at_bound"]:
                call += " (E=floor)"
            notes += len(r.diagnostics.get("notes", []))
            e = _excess(r)
            tail = ""
            if with_excess:
                if e:
                    iv = e.get("interval") or (math.nan, math.nan)
                    excess_ratios.append(_excess_ratio(e))
                    tail = f"  {num(e['alpha'], 3) + f' [{num(iv[0], 3)}, {num(iv[1], 3)}]':<24} {num(excess_ratios[-1], 3)}"
                else:
                    tail = "  -"
            if at_fitting_bound(r, exponent):
                # an exponent on (or with an interval reaching) its fitting bound is not an estimate: say so
                unresolved += 1
                lines.append(f"  {where:>9}  {with_interval(r, offset):<22} {'not resolved (bound)':<21} "
                             f"{num(ratio, 3):>7}  {call:<22}{tail}")
                continue
            lines.append(f"  {where:>9}  {with_interval(r, offset):<22} {with_interval(r, exponent, 3):<21} "
                         f"{num(ratio, 3):>7}  {call:<22}{tail}")
            exps.append(r.params[exponent])
        if exps:
            mean = sum(exps) / len(exps)
            sd = math.sqrt(sum((e - mean) ** 2 for e in exps) / (len(exps) - 1)) if len(exps) > 1 else math.nan
            lines.append(f"  {exponent}: mean {num(mean, 3)}, sd {num(sd, 3)} over {len(exps)} slices"
                         + (f"; {unresolved} more not resolved" if unresolved else ""))
        elif unresolved:
            lines.append(f"  {exponent}: not resolved at this size ({unresolved} slices reach the exponent's fitting "
                         "bound): the loss hardly changes along this axis over the sampled range")
        fitted = [r.diagnostics.get("mse_ratio_power_vs_exp", math.nan) for r in results if r.converged]
        counts = [(what, _ahead(ratios)) for what, ratios in (("offset fitted", fitted), ("L - floor", excess_ratios))]
        counts = [f"{what} in {ahead} of {n} slices (median MSE ratio {num(median, 3)})"
                  for what, (ahead, n, median) in counts if n]
        if counts:  # the same comparison with the offset fitted (the verdicts' fits) and fixed at an exact floor
            lines.append("  power law ahead of the exponential: " + "; ".join(counts))
    counts = collection.verdict_counts()
    told = (f"{notes} note(s) on these fits: --verbose or {saved or 'the saved JSON'}" if notes else
            f"saved {saved}" if saved else "")
    if counts:
        lines.append("slices by verdict (offset fitted): " + ", ".join(f"{k} {v}" for k, v in counts.items())
                     + (f"; {told}" if told else ""))
        told = ""
    skipped = collection.summary.get("skipped")
    if skipped:
        lines.append(f"skipped: {skipped}")
    if told:
        lines.append(told)
    return "\n".join(lines)


def result_table(result) -> str:
    """A 2-d (or expression) fit in a few lines: every parameter and derived value with its interval."""
    group = _group_label(result.provenance.get("group", {})) if result.provenance.get("group") else ""
    loss = result.provenance.get("loss", "")
    head = f"{result.form}" + (f"  [{group}]" if group else "") + (f"  {loss} loss" if loss else "")
    floor = _floor_text(result)
    lines = [head + (f"  {floor}" if floor else "")]
    if not result.converged:
        lines.append(f"  FAILED: {result.failure} (estimates withheld)")
        return "\n".join(lines)
    loose = unresolved_exponents(result)
    cells = [f"{name} {with_interval(result, name)}" + (" not resolved" if name in loose else "")
             for name in result.params]
    derived = getattr(result, "derived", {}) or {}
    # every derived quantity (a, b, G, N_opt, D_opt, D/N) rests on both exponents: with one loose, none is a number
    cells += [f"{name} not identified" if loose else
              f"{name} {num(value)}" + (f" [{num(result.intervals[name][0])}, {num(result.intervals[name][1])}]"
                                        if name in result.intervals else "") for name, value in derived.items()]
    for i in range(0, len(cells), 3):
        lines.append("  " + "   ".join(cells[i:i + 3]))
    if loose:
        lines.append(f"  {' and '.join(loose)} not resolved: the 95% interval reaches 0 or below, or the fit's bound "
                     "(that term is not identified at these sizes), so a, b, G, N_opt and D_opt are not identified either")
    for note in result.diagnostics.get("notes", []):
        lines.append(f"  note: {note}")
    return "\n".join(lines)
