"""Figures of the cube: whole loss curves and the L(N, D) table. matplotlib's Agg backend; files, not windows.

Every figure says which loss it shows: the exact loss (floor + KL to the family's law) where every finished run of
the family has it, else the sampled one (store.loss_kinds, as the fits choose), with 95% error bars from its
standard error over held-out sequences.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from scalingkit.plots import style


def _pyplot():
    return style.pyplot()


def save_figure(fig, path, dpi: int = 120) -> Path:
    """Write `fig` to `path` (its folder made if needed), close it, and return the path."""
    return style.save(fig, path, dpi=dpi)


def loss_figure(ds, best, family: str, param: str, kind: str, n_convention: str = "total"):
    """Three panels for one (family, param): the curves of the best runs at the largest budget (against tokens,
    coloured by N), L(N, D) against N (one line per D) and against D (one line per N), with the floor."""
    from scalingkit.store import family_entropy

    b = best.sel(family=family, param=param)
    floor, floor_kind = family_entropy(ds, family)
    fig, axes = style.figure(1, 3, size=(16, 4.6))
    n_values, d_values = b["N"].values, b["D"].values
    n_of = {int(n): float(b["n"].sel(N=n)) for n in n_values}
    colour_n, sm_n = style.colour_scale(list(n_of.values()))
    colour_d, sm_d = style.colour_scale(d_values)
    ylabel = style.loss_label(kind)
    # 1. curves at the best lr and seed, coloured by N, for the largest budget any N finished
    ax = axes[0, 0]
    finished = np.isfinite(b["loss"].values).any(axis=0)
    d_max = d_values[finished].max()
    curve_var = "exact_loss" if kind == "exact" else "eval_loss"
    for n in n_values:
        lr, seed = b["best_lr"].sel(N=n, D=d_max).item(), b["best_seed"].sel(N=n, D=d_max).item()
        if not np.isfinite(lr):
            continue
        run = ds.sel(family=family, param=param, N=n, D=d_max, lr=lr, seed=int(seed))
        ax.plot(run["tokens"].values, run[curve_var].values, color=colour_n(n_of[int(n)]), lw=1.3)
    ax.set_title(f"curves of the best runs at D = {style.count_text(d_max)}", fontsize=10)
    ax.set_xlabel("tokens seen")
    ax.set_ylabel(ylabel)
    style.log_axis(ax, "x", "count")
    style.colourbar(fig, sm_n, ax, style.n_label(n_convention))
    # 2. L against N, one line per D; 3. L against D, one line per N
    loss, se = b["loss"].values, b["loss_se"].values  # (N, D)
    n_axis = np.array([n_of[int(n)] for n in n_values])
    for ax, along in ((axes[0, 1], "N"), (axes[0, 2], "D")):
        lines = d_values if along == "N" else n_values
        for j, v in enumerate(lines):
            y = loss[:, j] if along == "N" else loss[j, :]
            e = se[:, j] if along == "N" else se[j, :]
            x = n_axis if along == "N" else d_values.astype(float)
            ok = np.isfinite(y)
            if not ok.any():
                continue
            c = colour_d(v) if along == "N" else colour_n(n_of[int(v)])
            err = np.where(np.isfinite(e[ok]), style.Z95 * e[ok], 0.0)
            ax.errorbar(x[ok], y[ok], yerr=err, fmt="o-", ms=4, lw=1.1, capsize=2, color=c)
        ax.set_title(f"L(N, D) against {along}, one line per {'D' if along == 'N' else 'N'}", fontsize=10)
        ax.set_xlabel(style.n_label(n_convention) if along == "N" else style.D_LABEL)
        ax.set_ylabel(ylabel)
        style.log_axis(ax, "x", "count")
        style.log_axis(ax, "y", "plain")
        style.colourbar(fig, sm_d if along == "N" else sm_n, ax,
                        style.D_LABEL if along == "N" else style.n_label(n_convention))
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", color="0.3", label="best over learning rate and seed +- 95% (1.96 s.e.)")]
    if np.isfinite(floor):
        for ax in axes[0]:
            ax.axhline(floor, color="k", ls=":", lw=1.2)
        handles.append(Line2D([], [], color="k", ls=":", label=f"loss floor {floor:.4g} ({floor_kind})"))
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"{family} / {param}: {ylabel.split(' (')[0]}, best over learning rate and seed", fontsize=11)
    return fig


def plot_cube(path, out_dir, n_convention: str = "total", loss: str = "auto") -> list[Path]:
    """For every (family, param): loss curves against tokens at the best learning rate, and L(N, D) against N
    (one line per D) and against D (one line per N), on the exact loss where the family has it (loss="auto").
    Returns the files written."""
    from scalingkit import store

    ds = store.open_cube(path)
    kinds = store.loss_kinds(ds, loss)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fam in ds["family"].values:
        kind = kinds[str(fam)]
        best = store.best_loss(ds.sel(family=[fam]), n_convention, kind)
        for par in ds["param"].values:
            if int(best["runs_done"].sel(family=fam, param=par).sum()) == 0:
                continue
            if not np.isfinite(best["loss"].sel(family=fam, param=par).values).any():
                continue
            fig = loss_figure(ds, best, str(fam), str(par), kind, n_convention)
            written.append(style.save(fig, out_dir / f"loss-{fam}-{par}.png", dpi=110))
    return written
