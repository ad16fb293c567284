"""What every figure shares: labels that say which loss and which N, log axes whose tick labels never overlap,
legends outside the data, and a check of both (`layout_problems`, which the tests run on every figure).

matplotlib's Agg backend, imported lazily; figures are files or bytes (PNG), never windows.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% normal quantile: error bars are +- Z95 standard errors


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------- labels


def loss_label(kind) -> str:
    """The y label for a loss: which one was fitted (exact: floor + KL to the family's law; sampled: the held-out
    sequences' own next tokens); a CSV's loss is just its loss column."""
    kinds = sorted({str(k) for k in (kind if isinstance(kind, (list, tuple, set)) else [kind]) if k})
    if kinds == ["exact"]:
        return "exact loss (nats)"
    if kinds == ["sampled"]:
        return "sampled loss (nats)"
    if len(kinds) > 1 and set(kinds) <= {"exact", "sampled"}:
        return "loss (nats; exact or sampled per family)"
    return "loss"


def n_label(n_convention: str | None = "total", column: str | None = None) -> str:
    """The N axis: which parameters are counted (the conventions give different exponents); a CSV's column."""
    if column:
        return f"N (column {column!r})"
    return {"total": "N (total parameters, embedding included)",
            "nonembedding": "N (non-embedding parameters)"}.get(n_convention or "total", f"N ({n_convention})")


D_LABEL = "D (tokens)"
C_LABEL = "compute C = 6ND (FLOPs)"


# ---------------------------------------------------------------- ticks

_SUFFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K"))


def count_text(x: float) -> str:
    """8272 -> 8.3K, 1.6e6 -> 1.6M: short labels for counts (parameters, tokens)."""
    if not np.isfinite(x) or x == 0:
        return f"{x:g}"
    for scale, suffix in _SUFFIXES:
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def power_text(x: float) -> str:
    """1e12 -> 10^12 (mathtext), 5e11 -> 5x10^11: compute and other wide ranges."""
    if not np.isfinite(x) or x <= 0:
        return f"{x:g}"
    k = math.floor(math.log10(x) + 1e-9)
    m = x / 10**k
    if abs(m - 1) < 1e-6:
        return f"$10^{{{k}}}$"
    return f"${m:.2g}\\times10^{{{k}}}$"


def log_axis(ax, which: str = "x", style: str = "count") -> None:
    """A log axis with readable labels: majors at 1, 2, 5 x 10^k where the axis spans under two decades (else at
    powers of ten), labelled as counts (8.3K, 1.6M), powers (10^12) or plain numbers ("plain": losses); no minor
    labels. `declutter` then hides labels that would still touch."""
    from matplotlib import ticker

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    lo, hi = sorted(ax.get_xlim() if which == "x" else ax.get_ylim())
    if lo > 0 and hi / lo < 1 + 1e-6:  # one value (e.g. a uniform law's equal probabilities): show it centred
        lo, hi = lo / 2, hi * 2
        (ax.set_xlim if which == "x" else ax.set_ylim)(lo, hi)
    decades = math.log10(hi / lo) if lo > 0 and hi > 0 else 3
    if style == "plain":
        # under a decade (a loss between 2.5 and 4, say), evenly spaced round values read best; over more, 1-2-5
        axis.set_major_locator(ticker.MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]) if decades < 1
                               else ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:.3g}"))
    else:
        subs = (1.0, 2.0, 5.0) if decades < 2 else (1.0,)
        axis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
        text = count_text if style == "count" else power_text
        axis.set_major_formatter(ticker.FuncFormatter(lambda x, _: text(x)))
    axis.set_minor_formatter(ticker.NullFormatter())


def _labels(axis, renderer):
    out = []
    lo, hi = sorted(axis.get_view_interval())
    for tick in axis.get_major_ticks():
        label = tick.label1
        loc = tick.get_loc()
        if not (label.get_visible() and label.get_text() and lo - 1e-12 * abs(lo) <= loc <= hi + 1e-12 * abs(hi)):
            continue
        out.append(label)
    return [(lab, lab.get_window_extent(renderer)) for lab in out]


def _overlapping(boxes, pad: float = 2.0) -> bool:
    for (_, a), (_, b) in zip(boxes, boxes[1:]):
        if a.expanded(1.0, 1.0).padded(pad / 2).overlaps(b.padded(pad / 2)):
            return True
    return False


def declutter(fig) -> None:
    """Hide every other major tick label of an axis (again, until none touch) wherever labels overlap."""
    fig.draw_without_rendering()  # layout and text extents, no pixels: a third of a full draw
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for _ in range(6):
                boxes = _labels(axis, renderer)
                if not _overlapping(boxes):
                    break
                for i, (label, _) in enumerate(boxes):
                    if i % 2:
                        label.set_visible(False)
                fig.draw_without_rendering()


def _data_points(ax) -> np.ndarray:
    """Display coordinates of every plotted point of an axes (line vertices, markers, error-bar ends)."""
    pts = []
    for line in ax.get_lines():
        xy = np.column_stack([np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)])
        if len(xy):
            pts.append(ax.transData.transform(xy))
    for coll in ax.collections:
        offsets = coll.get_offsets()
        if len(offsets) and hasattr(offsets, "shape") and np.asarray(offsets).ndim == 2:
            pts.append(ax.transData.transform(np.asarray(offsets, float)))
    if not pts:
        return np.empty((0, 2))
    allpts = np.concatenate(pts)
    return allpts[np.all(np.isfinite(allpts), axis=1)]


def layout_problems(fig) -> list[str]:
    """What a reader would trip over: tick labels that overlap, a legend over plotted data. [] when none."""
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    problems = []
    for k, ax in enumerate(fig.axes):
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            boxes = _labels(axis, renderer)
            boxes.sort(key=lambda lb: lb[1].x0 if name == "x" else lb[1].y0)
            if _overlapping(boxes, pad=0.0):
                problems.append(f"axes {k} ({ax.get_title() or ax.get_ylabel()}): {name} tick labels overlap: "
                                + ", ".join(lab.get_text() for lab, _ in boxes))
    legends = [lg for lg in [*fig.legends, *(ax.get_legend() for ax in fig.axes)] if lg is not None]
    for lg in legends:
        box = lg.get_window_extent(renderer)
        for k, ax in enumerate(fig.axes):
            pts = _data_points(ax)
            inside = (pts[:, 0] > box.x0) & (pts[:, 0] < box.x1) & (pts[:, 1] > box.y0) & (pts[:, 1] < box.y1)
            if inside.any():
                problems.append(f"a legend covers {int(inside.sum())} plotted point(s) of axes {k}")
    return problems


# ---------------------------------------------------------------- figures


def figure(nrows=1, ncols=1, size=(7.0, 4.5), **kwargs):
    """A figure with constrained layout (legends placed 'outside ...' get their own room)."""
    plt = pyplot()
    return plt.subplots(nrows, ncols, figsize=size, layout="constrained", squeeze=False, **kwargs)


def finish(fig) -> None:
    """Last step before writing: thin out tick labels that would overlap."""
    declutter(fig)


def png_bytes(fig, dpi: int = 100, close: bool = True) -> bytes:
    finish(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    if close:
        pyplot().close(fig)
    return buf.getvalue()


def save(fig, path, dpi: int = 110) -> Path:
    """Write `fig` to `path` (its folder made if needed), close it, and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    finish(fig)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def colour_scale(values, cmap: str = "viridis"):
    """(colour function, ScalarMappable) on a log scale over `values` (the fixed variable of a set of slices)."""
    from matplotlib.colors import LogNorm

    plt = pyplot()
    values = np.asarray([v for v in values if np.isfinite(v) and v > 0], float)
    lo, hi = (values.min(), values.max()) if len(values) else (1.0, 10.0)
    if hi <= lo:
        lo, hi = lo / 1.5, hi * 1.5
    norm = LogNorm(lo, hi)
    cm = plt.get_cmap(cmap)
    colours = lambda v: cm(0.9 * norm(v))  # noqa: E731 - the top of viridis (yellow) is too pale on white
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cm)
    return colours, sm


def colourbar(fig, sm, ax, label: str, style: str = "count"):
    from matplotlib import ticker

    cb = fig.colorbar(sm, ax=ax, pad=0.01, fraction=0.05)
    cb.set_label(label)
    text = count_text if style == "count" else power_text
    cb.ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    cb.ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: text(x)))
    cb.ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    return cb


# -- numbers in tables (the report and its summary across families) ------------------------------------------
def fmt(v, digits: int = 4) -> str:
    if v is None:
        return "-"
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not np.isfinite(x):
        return "nan" if np.isnan(x) else ("inf" if x > 0 else "-inf")
    if abs(x) < 1e-12:  # rounding of an exact zero (an envelope on one N has a = 1e-15)
        return "0"
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.{max(digits - 1, 1)}e}"
    return f"{x:.{digits}g}"


def with_interval(v, iv, digits: int = 4) -> str:
    """'1.23 [1.10, 1.41]'; an estimate with no interval says so."""
    if iv is None or iv == [] or any(x is None for x in iv):
        return f"{fmt(v, digits)} (no interval)"
    lo, hi = iv
    return f"{fmt(v, digits)} [{fmt(lo, 3)}, {fmt(hi, 3)}]"
