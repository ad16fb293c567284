"""The paper's Fig. 2 (right): the fitted scaling exponents of every family against the family's entropy.

For every (family, param) of a cube: the 1-d power-law fits of fit/slices.py, L(N) = E + A N^-alpha at each fixed
D and L(D) = E + B D^-beta at each fixed N, summarised as PAPER.md does (mean and spread of the exponent across the
fixed variable); a slice whose exponent is not resolved (it ends at a bound of its fit, or its interval runs to one:
fit/resolved.py, as the tables read it) has no estimate: it is left out of the mean and of the slice panels, and
counted as "not resolved".
The x axis is the family's entropy in nats per token:
- exact where the family knows it (graph and bigram walks: the chain's entropy rate, stored in the cube);
- an estimate for text sampled from a trained generator (the mean entropy of the next-token laws its sequences
  were drawn from, recorded with the family);
- unknown for natural text: such families are not placed on the axis; the figure lists their exponents below it.
The points, their provenance (the fitted table's sha256, fit settings, versions) and the skipped groups are written
beside the figure as JSON, so that every plotted number can be traced.

Below the entropy panels the figure shows every slice's exponent against its fixed variable (alpha at each D, beta
at each N) with its 95% interval as a band, one line per (family, param): with one family (the demo's store) the
figure still shows what was measured, and a slice that drifts with D or N is seen, not averaged away.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from scalingkit.errors import UserError
from scalingkit.fit.base import jsonable
from scalingkit.store import family_entropy

MARKERS = {"sp": "o", "mup": "s"}


@dataclass
class ExponentPoint:
    family: str
    param: str
    entropy: float  # nats per token; nan when unknown
    entropy_kind: str  # "exact", "estimate" or "unknown"
    alpha: dict  # summary of alpha over D: n, mean, std, min, max, and at_bound (fits left out: not resolved)
    beta: dict  # summary of beta over N, likewise
    provenance: dict = field(default_factory=dict)
    # every fitted slice: axis (N: alpha at fixed D; D: beta at fixed N), fixed (its D or N), value, interval
    # ([lo, hi], NaN without a bootstrap), at_bound (not resolved: at a bound, or its interval runs to one), verdict,
    # offset_floor (the exact floor that bounded the slice's offset; None: fitted free)
    slices: list = field(default_factory=list)


def exponent_points(store_path, n_convention: str = "total", bootstrap: int = 0, seed: int = 0, floors=None
                    ) -> tuple[list[ExponentPoint], list[str]]:
    """One point per (family, param) with enough runs for at least one 1-d slice fit; and why the others have none.
    bootstrap = 0: the spread across slices is the summary the figure draws (intervals cost 4,000 refits each);
    bootstrap > 0 also gives each slice's exponent its interval (the figure's bands). floors: family -> (floor,
    kind) to bound the offsets as `scalingkit fit` does (store.family_floors); None fits them free."""
    from scalingkit import store
    from scalingkit.fit.slices import fit_slices

    ds = store.open_cube(store_path)
    df = store.loss_table(store_path, n_convention=n_convention)
    points, skipped = [], []
    if df.empty:
        return points, ["the cube has no finished runs"]
    for (family, param), g in df.groupby(["family", "param"], sort=True):
        try:
            # the family column goes in as the group: fit_slices finds a family's floor by it
            fits = fit_slices(g[["family", "N", "D", "loss"]], "powerlaw", group_cols=["family"],
                              bootstrap=bootstrap, seed=seed,
                              floors={family: floors[family]} if floors and family in floors else None)
        except UserError as e:
            skipped.append(f"{family}/{param}: {e}")
            continue
        for r in fits.results:
            r.provenance["group"] = {"family": family, "param": param}
        points += points_from_collection(fits, ds, {**fits.provenance, "n_convention": n_convention,
                                                    "store": str(store_path)})
    return points, skipped


def points_from_collection(fits, ds, provenance: dict | None = None) -> list[ExponentPoint]:
    """The exponent points of a collection of 1-d power-law fits (one per (family, param) among its results'
    groups), placed at each family's entropy in the opened cube `ds`."""
    from scalingkit.fit.resolved import at_fitting_bound
    from scalingkit.fit.results import summarise

    groups = {}
    for r in fits.results:
        g = r.provenance.get("group", {})
        groups.setdefault((g.get("family"), g.get("param")), []).append(r)
    points = []
    for (family, param), results in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        by_axis, at_bound, slices = {"N": [], "D": []}, {"N": 0, "D": 0}, []
        for r in results:
            axis = r.provenance["axis"]
            name = "alpha" if axis == "N" else "beta"
            if not r.converged or name not in r.params:
                continue
            pinned = at_fitting_bound(r, name)
            other = "D" if axis == "N" else "N"
            slices.append({"axis": axis, "fixed": float(r.provenance.get("fixed", {}).get(other, np.nan)),
                           "value": float(r.params[name]),
                           "interval": list(r.intervals.get(name, (np.nan, np.nan))), "at_bound": pinned,
                           "verdict": (r.diagnostics.get("verdict") or {}).get("verdict"),
                           "offset_floor": r.diagnostics.get("loss_floor")})  # the exact floor that bounded E
            if pinned:  # pinned by the fit's bounds, not by the data: no estimate
                at_bound[axis] += 1
                continue
            by_axis[axis].append(r.params[name])
        entropy, kind = family_entropy(ds, family)
        alpha, beta = summarise(by_axis["N"]), summarise(by_axis["D"])
        alpha["at_bound"], beta["at_bound"] = at_bound["N"], at_bound["D"]
        points.append(ExponentPoint(family, param, entropy, kind, alpha, beta, dict(provenance or fits.provenance),
                                    sorted(slices, key=lambda x: (x["axis"], x["fixed"]))))
    return points


def plot_exponents(points: list[ExponentPoint], path, skipped: list[str] = ()) -> Path:
    """The figure (exponents_figure) written to `path`."""
    from scalingkit.plots import style

    return style.save(exponents_figure(points, skipped), path)


def exponents_figure(points: list[ExponentPoint], skipped: list[str] = (), n_convention: str = "total"):
    """Top: alpha and beta against entropy (mean over slices, +- s.d. as a bar; parameterisations side by side).
    Bottom: every slice's exponent against its fixed variable with its 95% interval as a band."""
    from matplotlib.lines import Line2D

    from scalingkit.plots import style

    fig, axes = style.figure(2, 2, size=(12.5, 8.2), gridspec_kw={"height_ratios": [1, 1.1]})
    placed = [p for p in points if np.isfinite(p.entropy)]
    families = sorted({p.family for p in points})
    plt = style.pyplot()
    colours = {f: plt.get_cmap("tab10")(i % 10) for i, f in enumerate(families)}
    params = sorted({p.param for p in points})
    dodge = {par: (i - (len(params) - 1) / 2) for i, par in enumerate(params)}
    entropies = [p.entropy for p in placed]
    span = (max(entropies) - min(entropies)) if entropies else 0.0
    width = max(span, 0.5) * 0.02
    for col, (name, over, axis) in enumerate((("alpha", "D", "N"), ("beta", "N", "D"))):
        ax = axes[0, col]
        drawn = 0
        for p in placed:
            s = getattr(p, name)
            if not resolved_summary(s):  # a "mean" of the few slices the data fix, most not: not drawn (noted)
                continue
            estimated = p.entropy_kind == "estimate"
            x = p.entropy + dodge[p.param] * 2.5 * width
            c = colours[p.family]
            if s["n"] > 1 and np.isfinite(s["std"]):
                ax.fill_between([x - width, x + width], s["mean"] - s["std"], s["mean"] + s["std"], color=c,
                                alpha=0.25, lw=0)
            ax.plot([x], [s["mean"]], MARKERS.get(p.param, "^"), color=c, ms=7, mfc="none" if estimated else c)
            drawn += 1
        if entropies:
            pad = max(span * 0.15, 0.25)
            ax.set_xlim(min(entropies) - pad, max(entropies) + pad)
        if not drawn:
            ax.set_yticks([])
            ax.text(0.5, 0.5, f"no L({axis}) exponent resolved" + _why(points, name), transform=ax.transAxes,
                    ha="center", va="center", color="0.4", fontsize=9, wrap=True)
        ax.set(xlabel="entropy (nats per token)", ylabel=f"{name}: mean over {over} (+- s.d.)")
        ax.set_title(f"L({axis}) exponent {name} against entropy", fontsize=10)
        ax.grid(True, alpha=0.3)
        # bottom: per slice, against the fixed variable
        bx = axes[1, col]
        n_lines = 0
        for p in points:
            rows = [r for r in p.slices if r["axis"] == axis and not r["at_bound"]]
            if not rows:
                continue
            x = np.array([r["fixed"] for r in rows])
            y = np.array([r["value"] for r in rows])
            lo = np.array([r["interval"][0] if r["interval"][0] is not None else np.nan for r in rows], float)
            hi = np.array([r["interval"][1] if r["interval"][1] is not None else np.nan for r in rows], float)
            c = colours[p.family]
            ls = "-" if p.param == params[0] else "--"
            bx.plot(x, y, MARKERS.get(p.param, "^") + ls, color=c, ms=5, lw=1.2)
            ok = np.isfinite(lo) & np.isfinite(hi)
            if ok.sum() > 1:
                bx.fill_between(x[ok], lo[ok], hi[ok], color=c, alpha=0.2, lw=0)
            elif ok.any():  # one slice: a band needs two, its interval is a bar
                bx.errorbar(x[ok], y[ok], yerr=[y[ok] - lo[ok], hi[ok] - y[ok]], fmt="none", ecolor=c, alpha=0.6,
                            capsize=3, lw=1.2)
            n_lines += 1
        bx.set_title(f"{name} of each L({axis}) slice against its {over} (band: 95% interval)", fontsize=10)
        bx.set_xlabel(style.D_LABEL if over == "D" else style.n_label(n_convention))
        bx.set_ylabel(name)
        bx.grid(True, alpha=0.3)
        if n_lines:
            style.log_axis(bx, "x", "count")
        else:
            bx.set_xticks([])
            bx.set_yticks([])
            unresolved = sum(1 for p in points for r in p.slices if r["axis"] == axis and r["at_bound"])
            bx.text(0.5, 0.5, f"no L({axis}) slice resolved: {unresolved} not resolved at this size" if unresolved
                    else f"no L({axis}) slice fitted", transform=bx.transAxes, ha="center", va="center", color="0.4")
    handles = [Line2D([], [], color=colours[f], lw=6, alpha=0.6, label=f) for f in families]
    handles += [Line2D([], [], marker=MARKERS.get(par, "^"), ls="-" if par == params[0] else "--", color="0.3",
                       label=par) for par in params]
    if any(p.entropy_kind == "estimate" for p in placed):
        handles.append(Line2D([], [], marker="o", ls="none", color="0.3", mfc="none", label="entropy estimated"))
    notes = figure_notes(points, skipped)
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False,
               title="\n".join(notes[:6]) if notes else None, title_fontsize=7)
    return fig


def resolved_summary(s: dict) -> bool:
    """Whether an axis's summary stands for the family: some slices resolved, and no fewer than those not."""
    return bool(s["n"]) and s["n"] >= s.get("at_bound", 0)


def _why(points, name) -> str:
    at_bound = sum(getattr(p, name).get("at_bound", 0) for p in points)
    return (f":\n{at_bound} not resolved at this size (at or reaching a bound of the fit)" if at_bound
            else " (too few distinct values per slice)")


def figure_notes(points: list[ExponentPoint], skipped: list[str] = ()) -> list[str]:
    """The lines printed under the figure: groups that have exponents but no entropy to place them at, groups with
    no fit, and exponents left out of the top panels because most of their slices are not resolved."""
    sparse = {}  # exponent -> groups whose slices are mostly unresolved, "family/param (k of n)"
    for p in points:
        for name in ("alpha", "beta"):
            s = getattr(p, name)
            if np.isfinite(p.entropy) and s["n"] and not resolved_summary(s):
                sparse.setdefault(name, []).append(f"{p.family}/{p.param} ({s['n']} of {s['n'] + s['at_bound']})")
    return ([f"entropy unknown, not placed: {p.family}/{p.param} alpha {_fmt(p.alpha)}, beta {_fmt(p.beta)}"
             for p in points if not np.isfinite(p.entropy)] + [f"no fit: {s}" for s in skipped]
            + [f"{name} mostly not resolved, only its slices drawn: " + ", ".join(groups)
               for name, groups in sparse.items()])


def _fmt(s: dict) -> str:
    if not s["n"]:
        return "-"
    bound = f", {s['at_bound']} not resolved left out" if s.get("at_bound") else ""
    return f"{s['mean']:.3g}" + (f" +- {s['std']:.2g}" if s["n"] > 1 else "") + f" ({s['n']} fits{bound})"


def plot_store_exponents(store_path, out_dir, n_convention: str = "total", bootstrap: int = 400
                         ) -> tuple[list[Path], list[str]]:
    """The figure and its JSON for a cube; returns (files written, groups skipped). No file when nothing fits.
    Every offset is bounded below by its family's exact floor, where there is one (as `scalingkit fit` does).
    bootstrap: wild-bootstrap draws per slice for the bands (400 give a 95% interval to the second digit)."""
    from scalingkit.store import family_floors

    points, skipped = exponent_points(store_path, n_convention, bootstrap=bootstrap,
                                      floors=family_floors(store_path))  # offsets bounded as `fit` bounds them
    if not points:
        return [], skipped
    out_dir = Path(out_dir)
    from scalingkit.plots import style

    figure = style.save(exponents_figure(points, skipped, n_convention),
                        out_dir / f"exponents-entropy-{n_convention}.png")
    doc = out_dir / f"exponents-entropy-{n_convention}.json"  # non-finite numbers become null (strict JSON)
    doc.write_text(json.dumps(jsonable({"points": [asdict(p) for p in points], "skipped": skipped}), indent=1,
                              allow_nan=False) + "\n")
    return [figure, doc], skipped
