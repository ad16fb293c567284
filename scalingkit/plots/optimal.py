"""Figures of the compute-optimal analysis (matplotlib Agg; files, not windows).

- optimal-compute-LABEL.png: loss against compute for every run, the lower envelope, each method's L_opt(C);
- optimal-allocation-LABEL.png: N_opt and D_opt against C, each method's points and fitted line, the budgets;
- optimal-isoflop-LABEL.png: the IsoFLOP profiles with their parabola and Akima fits, rejected optima crossed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from scalingkit.plots.curves import _pyplot

COLOURS = {"envelope": "k", "isoflop-parabola": "tab:blue", "isoflop-akima": "tab:cyan", "parametric": "tab:red",
           "surrogate-mlp": "tab:green", "surrogate-kernel": "tab:olive"}


def _name(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in label)[:60].strip("-")


def _compute_range(report, inputs) -> np.ndarray:
    N, D, _ = inputs.arrays()
    lo = float(np.min(6 * N * D))
    if inputs.curves is not None:
        lo = float(np.nanmin(inputs.curves.compute))
    hi = max([float(np.max(6 * N * D))] + list(report.settings.get("budgets", [])))
    return np.geomspace(lo, hi, 200)


def plot_compute(report, inputs, out_dir) -> Path:
    from scalingkit.optimal.envelope import envelope_points

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    cmap = plt.get_cmap("viridis")
    N, D, L = inputs.arrays()
    lnN = np.log(N if inputs.curves is None else inputs.curves.N)
    span = max(np.ptp(lnN), 1e-12)
    if inputs.curves is not None:
        cv = inputs.curves
        for r in range(len(cv)):
            ax.plot(cv.compute[r], cv.loss[r], color=cmap((lnN[r] - lnN.min()) / span), lw=0.6, alpha=0.5)
    else:
        ax.scatter(6 * N * D, L, c=(lnN - lnN.min()) / span, cmap=cmap, s=12, alpha=0.7)
    pts = envelope_points(inputs, report.settings.get("envelope_min_fraction", 0.0))
    idx = pts["envelope"]
    ax.plot(pts["C"][idx], pts["L"][idx], "o-", color="k", ms=3, lw=1.2, label="lower envelope")
    C = _compute_range(report, inputs)
    for r in report.results:
        if r.converged and np.isfinite(r.params.get("gamma", np.nan)):
            ax.plot(C, r.predict(C)["L_opt"], "--", color=COLOURS.get(r.method), lw=1,
                    label=f"{r.method}: gamma={r.params['gamma']:.3g}")
    floor = inputs.source.get("loss_floor")
    if floor is not None and np.isfinite(floor):
        estimated = inputs.source.get("loss_floor_kind") == "estimate"
        ax.axhline(floor, color="grey", ls=":", lw=1, label="loss floor" + (" (estimated)" if estimated else ""))
    from matplotlib.colors import LogNorm

    sm = plt.cm.ScalarMappable(cmap=cmap, norm=LogNorm(np.exp(lnN.min()), np.exp(lnN.max()) * (1 + 1e-9)))
    fig.colorbar(sm, ax=ax, label=f"N ({report.settings.get('n_convention', 'total')})")
    ax.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel="eval loss",
           title=f"{report.label}: loss against compute")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, plt, Path(out_dir) / f"optimal-compute-{_name(report.label)}.png")


def plot_allocation(report, inputs, out_dir) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    C = _compute_range(report, inputs)
    for r in report.results:
        if not r.converged:
            continue
        colour = COLOURS.get(r.method)
        pred = r.predict(C)
        pts = r.point_arrays()
        for ax, key, pkey, exp in ((axes[0], "N_opt", "N", "a"), (axes[1], "D_opt", "D", "b")):
            ax.plot(C, pred[key], "-", color=colour, lw=1.2, label=f"{r.method}: {exp}={r.params[exp]:.3g}")
            if len(pts.get("C", [])):
                ax.plot(pts["C"], pts[pkey], ".", color=colour, ms=4, alpha=0.6)
            for row in r.budgets:
                v = row["values"][key]
                lo, hi = row["intervals"].get(key, (np.nan, np.nan))
                # (a BCa interval can exclude its estimate: clip rather than draw a negative bar)
                err = [[max(v - lo, 0)], [max(hi - v, 0)]] if np.isfinite(lo) and np.isfinite(hi) else None
                ax.errorbar([row["C"]], [v], yerr=err, fmt="s", color=colour, ms=4, capsize=3)
    for ax, ylabel in ((axes[0], f"N_opt ({report.settings.get('n_convention', 'total')} parameters)"),
                       (axes[1], "D_opt (tokens)")):
        for c in report.settings.get("budgets", []):
            ax.axvline(c, color="grey", ls=":", lw=0.8)
        ax.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel=ylabel)
        ax.legend(fontsize=7)
    fig.suptitle(f"{report.label}: compute-optimal allocation (lines: fitted laws; squares: budgets, 95%)")
    fig.tight_layout()
    return _save(fig, plt, Path(out_dir) / f"optimal-allocation-{_name(report.label)}.png")


def plot_isoflop(report, out_dir) -> Path | None:
    from scipy.interpolate import Akima1DInterpolator

    try:
        res = report["isoflop-parabola"]
    except KeyError:
        return None
    profiles = res.diagnostics.get("profiles", [])
    if not profiles:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    cmap = plt.get_cmap("plasma")
    ally = np.concatenate([p["L"] for p in profiles])
    pad = 0.1 * max(np.ptp(ally), 1e-9)
    ax.set_ylim(ally.min() - pad, ally.max() + pad)  # an interpolant's excursion must not hide the data
    for i, p in enumerate(profiles):
        colour = cmap(i / max(1, len(profiles) - 1) * 0.85)
        x, y = np.log(p["N"]), np.asarray(p["L"])
        ax.plot(np.exp(x), y, "o", color=colour, ms=4, label=f"C={p['C']:.2g}")
        t = np.linspace(x.min(), x.max(), 200)
        c2, c1, c0 = p["parabola"]["coef"]
        ax.plot(np.exp(t), c2 * t ** 2 + c1 * t + c0, "-", color=colour, lw=1)
        ax.plot(np.exp(t), Akima1DInterpolator(x, y)(t), ":", color=colour, lw=1)
        for kind, marker in (("parabola", "D"), ("akima", "v")):
            o = p[kind]
            if np.isfinite(o.get("logN", np.nan)):
                ax.plot(np.exp(o["logN"]), o["L"], "x" if o["reject"] else marker, color=colour, ms=8 if o["reject"]
                        else 6, mec="k" if not o["reject"] else colour)
    ax.set(xscale="log", xlabel=f"N ({report.settings.get('n_convention', 'total')} parameters)", ylabel="loss",
           title=f"{report.label}: IsoFLOP profiles (line: parabola, dotted: Akima; x: rejected optimum)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _save(fig, plt, Path(out_dir) / f"optimal-isoflop-{_name(report.label)}.png")


def _save(fig, plt, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_report(report, inputs, out_dir) -> list[Path]:
    """Every figure for one group; returns the files written."""
    written = [plot_compute(report, inputs, out_dir), plot_allocation(report, inputs, out_dir)]
    iso = plot_isoflop(report, out_dir)
    return written + ([iso] if iso else [])
