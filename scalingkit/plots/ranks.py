"""The paper's Fig. 3: probability against rank of unigrams and of bigrams, one line per family.

Exact where a family knows its law: Markov-chain walks (graphs, language bigrams) give the stationary unigram law
and pi(u) P(u, v); the text family gives its corpus's frequencies. Any other family (e.g. text sampled from a
trained transformer) is measured on `n_tokens` tokens of its own sequences. matplotlib's Agg backend; files only.

    python -m scalingkit.plots.ranks [STORE] [OUT.png]     # every family of a store (default store/cube.zarr)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

SEQUENCE = 50  # length of the sequences sampled to measure a family without an exact law
POINTS = 2000  # log-spaced ranks drawn per line (a bigram line can have millions of ranks)


def rank_data(family, n_tokens: int = 1_000_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(unigram, bigram) probabilities, each sorted in decreasing order."""
    if hasattr(family, "unigram_rank") and hasattr(family, "bigram_rank"):
        return family.unigram_rank(), family.bigram_rank()
    seqs = family.sample(max(1, n_tokens // SEQUENCE), SEQUENCE, np.random.default_rng(seed))
    uni = np.bincount(seqs.ravel(), minlength=family.vocab_size)
    pairs = sp.csr_matrix((np.ones(seqs[:, 1:].size), (seqs[:, :-1].ravel(), seqs[:, 1:].ravel())),
                          shape=(family.vocab_size, family.vocab_size))  # duplicates are summed
    uni, bi = uni[uni > 0], pairs.data
    return np.sort(uni)[::-1] / uni.sum(), np.sort(bi)[::-1] / bi.sum()


def plot_ranks(families: dict, path, n_tokens: int = 1_000_000) -> Path:
    """Two panels (unigrams, bigrams), log-log, one line per family (label -> Family). Returns the file."""
    from scalingkit.plots import style

    return style.save(ranks_figure(families, n_tokens), path)


def ranks_figure(families: dict, n_tokens: int = 1_000_000):
    """The figure of plot_ranks (legend below the panels, off the lines)."""
    from scalingkit.plots import style

    fig, axes = style.figure(1, 2, size=(11, 4.6))
    for label, family in families.items():
        entropy = family.entropy_rate()
        spec = getattr(family, "spec", dict)()  # a family without a spec (duck-typed) has no estimate either
        estimate = spec.get("loss_floor_estimate") if entropy is None else None  # TnL: the generator's
        name = (f"{label} (H = {entropy:.2f} nats)" if entropy is not None
                else f"{label} (H ~ {estimate:.2f} nats, estimated)" if estimate is not None else label)
        for k, probs in enumerate(rank_data(family, n_tokens)):
            ranks = np.unique(np.geomspace(1, len(probs), min(POINTS, len(probs))).astype(np.int64))
            axes[0, k].plot(ranks, probs[ranks - 1], lw=1.2, label=name if k == 0 else None)
    for ax, what in zip(axes[0], ("unigrams", "bigrams")):
        ax.set(xscale="log", yscale="log", xlabel="rank", ylabel="probability", title=f"{what}: probability by rank")
        ax.grid(True, which="major", alpha=0.3)
        style.log_axis(ax, "x", "count")
        style.log_axis(ax, "y", "power")
    fig.legend(loc="outside lower center", ncol=min(len(families), 3), fontsize=8, frameon=False)
    return fig


def store_families(store_path) -> tuple[dict, list[str]]:
    """Every family of a store, rebuilt from the sweep specs it recorded (from the caches the sweep filled):
    (label -> Family, one line per family left out and why)."""
    from scalingkit import store
    from scalingkit.errors import UserError
    from scalingkit.families import build_family

    specs = store.attrs(store_path).get("families", {})
    families, skipped = {}, []
    for label, spec in specs.items():
        try:
            families[label] = build_family(label, spec["sweep_spec"])
        except UserError as e:  # e.g. a user corpus no longer on this machine: the other families still plot
            skipped.append(f"{label}: {e}")
    return families, skipped


def plot_store_ranks(store_path="store/cube.zarr", path=None) -> tuple[Path | None, list[str]]:
    """plot_ranks for every family of a store, rebuilt from the sweep specs it recorded (from the caches the sweep
    filled). Returns (the file, or None when no family could be rebuilt; one line per family left out and why)."""
    families, skipped = store_families(store_path)
    if not families:
        return None, skipped
    return plot_ranks(families, path or Path(store_path).parent / "figures" / "ranks.png"), skipped


if __name__ == "__main__":
    figure, left_out = plot_store_ranks(*sys.argv[1:3])
    print("\n".join([str(figure)] + [f"left out {line}" for line in left_out]))
