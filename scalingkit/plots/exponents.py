"""The paper's Fig. 2 (right): the fitted scaling exponents of every family against the family's entropy.

For every (family, param) of a cube: the 1-d power-law fits of fit/slices.py, L(N) = E + A N^-alpha at each fixed
D and L(D) = E + B D^-beta at each fixed N, summarised as PAPER.md does (mean and spread of the exponent across the
fixed variable); a slice whose exponent ends at its bound has no estimate: it is left out of the mean, and counted.
The x axis is the family's entropy in nats per token:
- exact where the family knows it (graph and bigram walks: the chain's entropy rate, stored in the cube);
- an estimate for text sampled from a trained generator (the mean entropy of the next-token laws its sequences
  were drawn from, recorded with the family);
- unknown for natural text: such families are not placed on the axis; the figure lists their exponents below it.
The points, their provenance (the fitted table's sha256, fit settings, versions) and the skipped groups are written
beside the figure as JSON, so that every plotted number can be traced.
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
    alpha: dict  # summary of alpha over D: n, mean, std, min, max, and at_bound (fits left out: exponent at a bound)
    beta: dict  # summary of beta over N, likewise
    provenance: dict = field(default_factory=dict)


def exponent_points(store_path, n_convention: str = "total", bootstrap: int = 0, seed: int = 0
                    ) -> tuple[list[ExponentPoint], list[str]]:
    """One point per (family, param) with enough runs for at least one 1-d slice fit; and why the others have none.
    bootstrap = 0: the spread across slices is the summary the figure draws (intervals cost 4,000 refits each)."""
    from scalingkit import store
    from scalingkit.fit.results import summarise
    from scalingkit.fit.slices import fit_slices

    ds = store.open_cube(store_path)
    df = store.loss_table(store_path, n_convention=n_convention)
    points, skipped = [], []
    if df.empty:
        return points, ["the cube has no finished runs"]
    for (family, param), g in df.groupby(["family", "param"], sort=True):
        try:
            fits = fit_slices(g[["N", "D", "loss"]], "powerlaw", group_cols=[], bootstrap=bootstrap, seed=seed)
        except UserError as e:
            skipped.append(f"{family}/{param}: {e}")
            continue
        by_axis, at_bound = {"N": [], "D": []}, {"N": 0, "D": 0}
        for r in fits.results:
            axis = r.provenance["axis"]
            name = "alpha" if axis == "N" else "beta"
            if not r.converged:
                continue
            if name in r.diagnostics.get("at_bound", []):  # the exponent pinned at its bound: no estimate
                at_bound[axis] += 1
                continue
            by_axis[axis].append(r.params[name])
        entropy, kind = family_entropy(ds, family)
        alpha, beta = summarise(by_axis["N"]), summarise(by_axis["D"])
        alpha["at_bound"], beta["at_bound"] = at_bound["N"], at_bound["D"]
        points.append(ExponentPoint(family, param, entropy, kind, alpha, beta,
                                    {**fits.provenance, "n_convention": n_convention, "store": str(store_path)}))
    return points, skipped


def plot_exponents(points: list[ExponentPoint], path, skipped: list[str] = ()) -> Path:
    """Two panels, alpha and beta against entropy; error bars are the spread (s.d.) across the fixed variable."""
    from scalingkit.plots.curves import _pyplot, save_figure

    plt = _pyplot()

    placed = [p for p in points if np.isfinite(p.entropy)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    colours = {f: plt.get_cmap("tab10")(i % 10) for i, f in enumerate(sorted({p.family for p in points}))}
    for ax, name, over in ((axes[0], "alpha", "D"), (axes[1], "beta", "N")):
        for p in placed:
            s = getattr(p, name)
            if not s["n"]:
                continue
            estimated = p.entropy_kind == "estimate"
            ax.errorbar(p.entropy, s["mean"], yerr=s["std"] if s["n"] > 1 else None, fmt=MARKERS.get(p.param, "^"),
                        color=colours[p.family], capsize=3, mfc="none" if estimated else None,
                        label=f"{p.family}/{p.param}" + (" (entropy estimated)" if estimated else ""))
        ax.set(xlabel="entropy (nats per token)", ylabel=f"{name}: mean over {over} (+- s.d.)",
               title=f"L({'N' if name == 'alpha' else 'D'}) exponent {name} against entropy")
        ax.grid(True, alpha=0.3)
    if placed:
        axes[1].legend(fontsize=8)
    notes = figure_notes(points, skipped)
    if notes:
        fig.text(0.01, 0.01, "\n".join(notes[:6]), fontsize=7, va="bottom")
        fig.tight_layout(rect=(0, 0.04 * min(len(notes), 6), 1, 1))
    else:
        fig.tight_layout()
    return save_figure(fig, path)


def figure_notes(points: list[ExponentPoint], skipped: list[str] = ()) -> list[str]:
    """The lines printed under the figure: groups that have exponents but no entropy to place them at, and groups
    with no fit."""
    return [f"entropy unknown, not placed: {p.family}/{p.param} alpha {_fmt(p.alpha)}, beta {_fmt(p.beta)}"
            for p in points if not np.isfinite(p.entropy)] + [f"no fit: {s}" for s in skipped]


def _fmt(s: dict) -> str:
    if not s["n"]:
        return "-"
    bound = f", {s['at_bound']} at a bound left out" if s.get("at_bound") else ""
    return f"{s['mean']:.3g}" + (f" +- {s['std']:.2g}" if s["n"] > 1 else "") + f" ({s['n']} fits{bound})"


def plot_store_exponents(store_path, out_dir, n_convention: str = "total") -> tuple[list[Path], list[str]]:
    """The figure and its JSON for a cube; returns (files written, groups skipped). No file when nothing fits."""
    points, skipped = exponent_points(store_path, n_convention)
    if not points:
        return [], skipped
    out_dir = Path(out_dir)
    figure = plot_exponents(points, out_dir / f"exponents-entropy-{n_convention}.png", skipped)
    doc = out_dir / f"exponents-entropy-{n_convention}.json"  # non-finite numbers become null (strict JSON)
    doc.write_text(json.dumps(jsonable({"points": [asdict(p) for p in points], "skipped": skipped}), indent=1,
                              allow_nan=False) + "\n")
    return [figure, doc], skipped
