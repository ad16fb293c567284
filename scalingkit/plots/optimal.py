"""Figures of the compute-optimal analysis (matplotlib Agg; files, not windows).

- optimal-compute-LABEL.png: loss against compute for every run, the lower envelope, each method's L_opt(C);
- optimal-allocation-LABEL.png: N_opt and D_opt against C, each method's points and fitted line, and at each
  budget every method's value with its 95% interval as a band (methods side by side, never stacked);
- optimal-isoflop-LABEL.png: the IsoFLOP profiles with their parabola and Akima fits, rejected optima crossed;
- optimal-methods-LABEL.png: every method side by side: gamma, a, b and the first budget's N_opt, D_opt and
  tokens per parameter, each estimate with its 95% interval as a band.
Axes say which loss (exact or sampled; a CSV's loss column) and which N convention; no L_opt line is drawn below
an exact loss floor.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from scalingkit.optimal.result import identified
from scalingkit.plots import style

COLOURS = {"envelope": "k", "isoflop-parabola": "tab:blue", "isoflop-akima": "tab:cyan", "parametric": "tab:red",
           "surrogate-mlp": "tab:green", "surrogate-kernel": "tab:olive"}



def _finite(value) -> bool:
    """A number that is finite; a saved result read back from JSON has None where NaN was written."""
    return value is not None and bool(np.isfinite(value))

def _name(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in label)[:60].strip("-")


def _g(v) -> str:
    """3 significant digits; a value within rounding of zero (an envelope on one N: a = 1e-15) prints as 0."""
    return "0" if abs(v) < 1e-9 else f"{v:.3g}"


def _method_range(result, report, inputs) -> np.ndarray:
    """Compute values to draw a method's laws over: from its first compute-optimal point (the data's smallest 6ND
    for the parametric closed form, which has none) to the last budget: a law is not drawn where the method has
    nothing to stand on."""
    pts = result.point_arrays().get("C", np.empty(0))
    pts = pts[np.isfinite(pts) & (pts > 0)]
    budgets = list(report.settings.get("budgets", []))
    N, D, _ = inputs.arrays()
    lo = pts.min() if len(pts) else float(np.min(6 * N * D))
    hi = max([pts.max() if len(pts) else lo] + budgets)
    return np.geomspace(lo, hi, 200)


def _loss_kind(inputs) -> str | None:
    src = inputs.source if inputs is not None else {}
    return src.get("loss") if "csv" not in src else "csv"


def _n_label(report, inputs=None) -> str:
    src = inputs.source if inputs is not None else report.provenance.get("source", {})
    return style.n_label(report.settings.get("n_convention", "total"), src.get("n_col") if "csv" in src else None)


def _floor(inputs):
    floor = inputs.source.get("loss_floor")
    kind = inputs.source.get("loss_floor_kind", "unknown")
    return (float(floor), kind) if floor is not None and np.isfinite(floor) else (None, kind)


def compute_figure(report, inputs):
    from matplotlib.lines import Line2D

    from scalingkit.optimal.envelope import envelope_points

    fig, axes = style.figure(1, 1, size=(8.5, 5.4))
    ax = axes[0, 0]
    N, D, L = inputs.arrays()
    n_runs = N if inputs.curves is None else inputs.curves.N
    colour, sm = style.colour_scale(np.unique(n_runs))
    if inputs.curves is not None:
        cv = inputs.curves
        for r in range(len(cv)):
            ax.plot(cv.compute[r], cv.loss[r], color=colour(cv.N[r]), lw=0.6, alpha=0.5)
    else:
        ax.scatter(6 * N * D, L, c=[colour(n) for n in N], s=14, alpha=0.8)
    pts = envelope_points(inputs, report.settings.get("envelope_min_fraction", 0.0))
    idx = pts["envelope"]
    ax.plot(pts["C"][idx], pts["L"][idx], "o-", color="k", ms=3, lw=1.2)
    handles = [Line2D([], [], marker="o", color="k", ms=3, label="lower envelope")]
    floor, floor_kind = _floor(inputs)
    data_loss = np.concatenate([np.ravel(L)] + ([np.ravel(inputs.curves.loss)] if inputs.curves is not None else []))
    data_loss = data_loss[np.isfinite(data_loss) & (data_loss > 0)]
    lo_y = min(data_loss.min(), floor) if floor is not None else data_loss.min()
    ax.set_ylim(lo_y / 1.03, data_loss.max() * 1.05)  # a law extrapolated to small C must not set the scale
    for r in report.results:
        if r.converged and _finite(r.params.get("gamma")) and identified(r, "gamma"):
            C = _method_range(r, report, inputs)
            y = r.predict(C)["L_opt"]
            if floor is not None and floor_kind == "exact":
                y = np.where(y >= floor, y, np.nan)
            ax.plot(C, y, "--", color=COLOURS.get(r.method), lw=1.2)
            handles.append(Line2D([], [], ls="--", color=COLOURS.get(r.method),
                                  label=f"{r.method}: L_opt, gamma={_g(r.params['gamma'])}"))
    if floor is not None:
        ax.axhline(floor, color="grey", ls=":", lw=1)
        handles.append(Line2D([], [], ls=":", color="grey", label=f"loss floor ({floor_kind})"))
    style.colourbar(fig, sm, ax, _n_label(report, inputs))
    ax.set_xlabel(style.C_LABEL if report.settings.get("flops", "6nd") == "6nd" else "compute C (exact FLOPs)")
    ax.set_ylabel(style.loss_label(_loss_kind(inputs)))
    ax.set_title(f"{report.label}: loss against compute", fontsize=10)
    style.log_axis(ax, "x", "power")
    style.log_axis(ax, "y", "plain")
    fig.legend(handles=handles, loc="outside right upper", fontsize=7, frameon=False)
    return fig


def allocation_figure(report, inputs):
    from matplotlib.lines import Line2D

    fig, axes = style.figure(1, 2, size=(13, 5.0))
    ok = [r for r in report.results if r.converged and identified(r, "a")]  # a row without an allocation: not drawn
    handles = []
    budgets = report.settings.get("budgets", [])
    for k, r in enumerate(ok):
        colour = COLOURS.get(r.method)
        C = _method_range(r, report, inputs)
        pred = r.predict(C)
        pts = r.point_arrays()
        dodge = 1.0 + 0.06 * (k - (len(ok) - 1) / 2)  # methods side by side at a budget, in log C
        for ax, key, pkey in ((axes[0, 0], "N_opt", "N"), (axes[0, 1], "D_opt", "D")):
            ax.plot(C, pred[key], "-", color=colour, lw=1.2)
            if len(pts.get("C", [])):
                ax.plot(pts["C"], pts[pkey], ".", color=colour, ms=4, alpha=0.6)
            for row in r.budgets:
                v = row["values"][key]
                lo, hi = row["intervals"].get(key, (np.nan, np.nan))
                x = row["C"] * dodge
                if np.isfinite(lo) and np.isfinite(hi) and hi > lo:
                    ax.fill_between([x / 1.02, x * 1.02], lo, hi, color=colour, alpha=0.35, lw=0)
                ax.plot([x], [v], "s", color=colour, ms=5)
        handles.append(Line2D([], [], color=colour, marker="s", ms=5,
                              label=f"{r.method}: a={_g(r.params['a'])}, b={_g(r.params['b'])}"))
    for ax, ylabel in ((axes[0, 0], "N_opt: " + _n_label(report, inputs)), (axes[0, 1], "D_opt: " + style.D_LABEL)):
        for c in budgets:
            ax.axvline(c, color="grey", ls=":", lw=0.8)
        ax.set_xlabel(style.C_LABEL)
        ax.set_ylabel(ylabel)
        style.log_axis(ax, "x", "power")
        style.log_axis(ax, "y", "count")
    handles += [Line2D([], [], ls=":", color="grey", label="budget(s); squares: value there, band: 95% interval"),
                Line2D([], [], ls="none", marker=".", color="0.3", label="the compute-optimal points each line fits")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle(f"{report.label}: compute-optimal allocation", fontsize=11)
    return fig


def isoflop_figure(report, inputs=None):
    from matplotlib.lines import Line2D
    from scipy.interpolate import Akima1DInterpolator

    try:
        res = report["isoflop-parabola"]
    except KeyError:
        return None
    profiles = res.diagnostics.get("profiles", [])
    if not profiles:
        return None
    fig, axes = style.figure(1, 1, size=(8.5, 5.4))
    ax = axes[0, 0]
    colour, sm = style.colour_scale([p["C"] for p in profiles], cmap="plasma")
    ally = np.concatenate([p["L"] for p in profiles])
    pad = 0.1 * max(np.ptp(ally), 1e-9)
    ax.set_ylim(ally.min() - pad, ally.max() + pad)  # an interpolant's excursion must not hide the data
    for p in profiles:
        c = colour(p["C"])
        x, y = np.log(p["N"]), np.asarray(p["L"])
        ax.plot(np.exp(x), y, "o", color=c, ms=4)
        t = np.linspace(x.min(), x.max(), 200)
        c2, c1, c0 = p["parabola"]["coef"]
        ax.plot(np.exp(t), c2 * t ** 2 + c1 * t + c0, "-", color=c, lw=1)
        if len(x) >= 2:
            ax.plot(np.exp(t), Akima1DInterpolator(x, y)(t), ":", color=c, lw=1)
        for kind, marker in (("parabola", "D"), ("akima", "v")):
            o = p[kind]
            if _finite(o.get("logN")) and _finite(o.get("L")):
                ax.plot(np.exp(o["logN"]), o["L"], "x" if o["reject"] else marker, color=c,
                        ms=8 if o["reject"] else 6, mec="k" if not o["reject"] else c)
    style.colourbar(fig, sm, ax, "compute of the profile (FLOPs)", style="power")
    ax.set_xlabel(_n_label(report, inputs))
    ax.set_ylabel(style.loss_label(_loss_kind(inputs)) if inputs is not None else "loss")
    ax.set_title(f"{report.label}: IsoFLOP profiles", fontsize=10)
    style.log_axis(ax, "x", "count")
    fig.legend(handles=[Line2D([], [], marker="o", ls="none", color="0.3", label="loss at (N, C/6N)"),
                        Line2D([], [], color="0.3", label="parabola in log N"),
                        Line2D([], [], ls=":", color="0.3", label="Akima spline"),
                        Line2D([], [], marker="D", ls="none", color="0.3", mec="k", label="parabola minimum"),
                        Line2D([], [], marker="v", ls="none", color="0.3", mec="k", label="Akima minimum"),
                        Line2D([], [], marker="x", ls="none", color="0.3", label="rejected (at the edge)")],
               loc="outside lower center", ncol=3, fontsize=7, frameon=False)
    return fig


def methods_figure(report):
    """Every method side by side: gamma, a, b and (at the first budget) N_opt, D_opt and D/N, the estimate with its
    95% interval as a band; a method with no interval for a quantity shows the estimate alone and says so."""
    from matplotlib.lines import Line2D

    results = [r for r in report.results if r.converged]
    panels = [("gamma", "gamma (L_opt = E_C + K C^-gamma)", False), ("a", "a (N_opt ~ C^a)", False),
              ("b", "b (D_opt ~ C^b)", False)]
    budget = results[0].budgets[0]["C"] if results and results[0].budgets else None
    if budget is not None:
        panels += [("N_opt", f"N_opt at C = {budget:.3g}", True), ("D_opt", f"D_opt at C = {budget:.3g}", True),
                   ("tokens_per_param", "tokens per parameter", True)]
    rows = (len(panels) + 2) // 3
    fig, axes = style.figure(rows, 3, size=(13.5, 0.42 * max(len(results), 1) * rows + 1.6 * rows))
    for i, (key, title, at_budget) in enumerate(panels):
        ax = axes[i // 3, i % 3]
        values = []
        for j, r in enumerate(results):
            if not identified(r, key):  # rests on an unresolved exponent: said, not drawn as a number
                ax.text(0.02, j, "not identified", transform=ax.get_yaxis_transform(), va="center", fontsize=7,
                        color="0.4")
                continue
            if at_budget:
                row = r.budgets[0] if r.budgets else {"values": {}, "intervals": {}}
                v, iv = row["values"].get(key, np.nan), row["intervals"].get(key)
            else:
                v, iv = r.params.get(key, np.nan), r.intervals.get(key)
            colour = COLOURS.get(r.method, "0.3")
            if iv is not None and all(np.isfinite(iv)):
                lo, hi = min(iv), max(iv)
                ax.fill_betweenx([j - 0.28, j + 0.28], lo, hi, color=colour, alpha=0.3, lw=0)
                values += [lo, hi]
            if np.isfinite(v):
                ax.plot([v], [j], "o", color=colour, ms=6)
                values.append(v)
        ax.set_yticks(range(len(results)))
        ax.set_yticklabels([r.method for r in results] if i % 3 == 0 else [""] * len(results))
        ax.set_ylim(len(results) - 0.5, -0.5)
        ax.set_title(title, fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
        if at_budget and values and min(values) > 0:
            ax.set_xlim(min(values) / 1.5, max(values) * 1.5)
            style.log_axis(ax, "x", "count")
    for k in range(len(panels), rows * 3):
        axes[k // 3, k % 3].set_axis_off()
    fig.legend(handles=[Line2D([], [], marker="o", ls="none", color="0.3", label="estimate"),
                        Line2D([], [], lw=8, color="0.3", alpha=0.3, label="95% interval (none drawn: not computed, or of zero width)")],
               loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"{report.label}: every compute-optimal method side by side "
                 f"(N = {report.settings.get('n_convention', 'total')} parameters)", fontsize=11)
    return fig


def plot_compute(report, inputs, out_dir) -> Path:
    return style.save(compute_figure(report, inputs), Path(out_dir) / f"optimal-compute-{_name(report.label)}.png")


def plot_allocation(report, inputs, out_dir) -> Path:
    return style.save(allocation_figure(report, inputs),
                      Path(out_dir) / f"optimal-allocation-{_name(report.label)}.png")


def plot_isoflop(report, out_dir, inputs=None) -> Path | None:
    fig = isoflop_figure(report, inputs)
    return None if fig is None else style.save(fig, Path(out_dir) / f"optimal-isoflop-{_name(report.label)}.png")


def plot_methods(report, out_dir) -> Path | None:
    if not any(r.converged for r in report.results):
        return None
    return style.save(methods_figure(report), Path(out_dir) / f"optimal-methods-{_name(report.label)}.png")


def plot_report(report, inputs, out_dir) -> list[Path]:
    """The compute, allocation and IsoFLOP figures of one group (`scalingkit optimal`); returns the files written.
    The side-by-side methods figure (plot_methods) is in `scalingkit report`."""
    written = [plot_compute(report, inputs, out_dir), plot_allocation(report, inputs, out_dir)]
    iso = plot_isoflop(report, out_dir, inputs)
    return written + ([iso] if iso else [])
