"""Figures of the cube: whole loss curves and the L(N, D) table. matplotlib's Agg backend; files, not windows."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, dpi: int = 120) -> Path:
    """Write `fig` to `path` (its folder made if needed), close it, and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    _pyplot().close(fig)
    return path


def plot_cube(path, out_dir, n_convention: str = "total") -> list[Path]:
    """For every (family, param): eval-loss curves against tokens at the best learning rate, and L(N, D) against N
    (one line per D) and against D (one line per N). Returns the files written."""
    from scalingkit import store

    plt = _pyplot()
    ds = store.open_cube(path)
    best = store.best_loss(ds, n_convention)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fam in ds["family"].values:
        for par in ds["param"].values:
            b = best.sel(family=fam, param=par)
            if int(b["runs_done"].sum()) == 0:
                continue
            floor = float(ds["loss_floor"].sel(family=fam))
            fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
            cmap = plt.get_cmap("viridis")
            n_values, d_values = b["N"].values, b["D"].values
            # 1. curves at the best lr and seed, coloured by N, for the largest budget
            ax = axes[0]
            d_max = d_values[np.isfinite(b["loss"].values).any(axis=0)].max()
            for i, n in enumerate(n_values):
                lr, seed = b["best_lr"].sel(N=n, D=d_max).item(), b["best_seed"].sel(N=n, D=d_max).item()
                if not np.isfinite(lr):
                    continue
                run = ds.sel(family=fam, param=par, N=n, D=d_max, lr=lr, seed=int(seed))
                ax.plot(run["tokens"].values, run["eval_loss"].values, color=cmap(i / max(1, len(n_values) - 1)),
                        label=f"N={float(b['n'].sel(N=n)):.3g}")
            ax.set(xscale="log", xlabel="tokens", ylabel="eval loss (nats)", title=f"curves at D={d_max:.3g}")
            # 2. L against N, one line per D
            for ax, xs, lines, xlabel in ((axes[1], "N", "D", f"N ({n_convention} parameters)"),
                                          (axes[2], "D", "N", "D (tokens)")):
                for j, v in enumerate(b[lines].values):
                    sub = b.sel({lines: v})
                    x = sub["n"].values if xs == "N" else sub["D"].values
                    ax.plot(x, sub["loss"].values, "o-", color=cmap(j / max(1, len(b[lines]) - 1)),
                            label=f"{lines}={float(sub['n']) if lines == 'N' else v:.3g}", ms=4)
                ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="L(N, D)")
            for ax in axes:
                if np.isfinite(floor):
                    ax.axhline(floor, color="k", ls=":", lw=1, label="loss floor")
                ax.legend(fontsize=7)
            fig.suptitle(f"{fam} / {par}: best over learning rate and seed")
            fig.tight_layout()
            file = out_dir / f"loss-{fam}-{par}.png"
            fig.savefig(file, dpi=110)
            plt.close(fig)
            written.append(file)
    return written
