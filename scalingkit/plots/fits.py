"""Figures of fits, one per fit, drawn as a researcher reads them.

- `plot_slices`: the 1-d fits of a (family, param), L(N) at every fixed D and L(D) at every fixed N: the data with
  95% error bars (1.96 x the table's loss_se), each slice's fitted law and its 95% band, the loss floor, and a
  residual panel under each.
- `plot_excess`: L - floor against N and against D, log-log, where a power law is a straight line, with each
  slice's excess-loss line (fit/excess.py).
- `plot_ratios`: the paper's Fig. 15, the power-law against exponential MSE ratio of every slice (and its
  leave-one-out version), marked by verdict.
- `plot_fit2d`: a 2-d law (Chinchilla, Kaplan, a written expression, a surrogate) against the data, as slices of
  the surface at every D and every N, with its 95% band where the fit has a bootstrap, and residuals.
- `plot_comparison`: `compare`'s train and validation MSE of the 2-d forms (the paper's Figs. 10 and 17).
- `figures_for`: a figure for each fit of a result (what `scalingkit fit` can draw after saving).

Bands are pointwise 2.5%-97.5% quantiles of the fit's own bootstrap refits, redrawn from the recorded seed and
settings (the same draws as its intervals: the wild bootstrap of a 1-d fit, the bootstrap over runs of
Chinchilla and Kaplan; a weighted fit's with its weights, from the table's loss_se); a fit without a bootstrap, or
whose data (standard errors included, for a weighted fit) no longer hash to the saved value, gets no band and the
legend says so. No line or band is drawn below an exact loss floor.
"""
from __future__ import annotations

import inspect

import numpy as np

from scalingkit.plots import style

AXIS_NAMES = {"N": ("alpha", "L(N) at fixed D"), "D": ("beta", "L(D) at fixed N")}
VERDICT_MARKERS = {"power law": "o", "exponential": "s", "transient": "^", "inconclusive": "D"}
VERDICT_COLOURS = {"power law": "tab:blue", "exponential": "tab:red", "transient": "tab:orange",
                   "inconclusive": "tab:gray"}
MAX_BAND_DRAWS = 4000


# ---------------------------------------------------------------- data of a fit


def group_table(table, group: dict):
    """Rows of the loss table in a (family, param) group (all rows for an empty group)."""
    sel = np.ones(len(table), bool)
    for k, v in group.items():
        if k in table.columns:
            sel &= table[k].astype(str).to_numpy() == str(v)
    return table[sel]


def slice_data(table, result):
    """(x, y, se) of a 1-d slice fit, from the loss table it was fitted to; se is NaN where the table has none."""
    prov = result.provenance
    axis = prov.get("axis", "N")
    g = group_table(table, prov.get("group", {}))
    for other, value in prov.get("fixed", {}).items():
        g = g[np.isclose(g[other].to_numpy(float), float(value), rtol=1e-9)]
    g = g.sort_values(axis)
    se = g["loss_se"].to_numpy(float) if "loss_se" in g.columns else np.full(len(g), np.nan)
    return g[axis].to_numpy(float), g["loss"].to_numpy(float), se


def matches(result, columns: dict) -> bool:
    """Whether the data a result was fitted to hash to the saved value (the fit is of these numbers)."""
    from scalingkit.fit.provenance import data_hash

    return result.provenance.get("data_sha256") == data_hash(columns)


def _floor_mask(values, floor, floor_kind):
    """Values below an exact floor are not drawn (NaN): no model's loss can be there."""
    values = np.asarray(values, float)
    if floor is not None and floor_kind == "exact" and np.isfinite(floor):
        return np.where(values >= floor, values, np.nan)
    return values


def _data_ylim(ax, y, err, floor=None):
    """Fit the y axis to the data (and the floor), not to the bands: a loose fit's band can span nats and would
    squash the points into a line."""
    y = np.asarray(y, float)
    err = np.nan_to_num(np.asarray(err, float)) if err is not None else np.zeros_like(y)
    ok = np.isfinite(y)
    if not ok.any():
        return
    lo, hi = np.min((y - err)[ok]), np.max((y + err)[ok])
    if floor is not None and np.isfinite(floor):
        lo = min(lo, floor)
    if lo <= 0:
        return
    pad = (hi / lo) ** 0.06 if hi > lo else 1.05
    ax.set_ylim(lo / pad, hi * pad)


def _settings_for(cls, saved: dict) -> dict:
    params = inspect.signature(cls.__init__).parameters
    out = {k: v for k, v in saved.items() if k in params}
    if "names" in out and out["names"] is not None:
        out["names"] = tuple(out["names"])
    return out


# ---------------------------------------------------------------- bands


def weighted(result) -> bool:
    """Whether the fit weighted its points by their standard errors (--weights se): its data include them."""
    return result.provenance.get("settings", {}).get("weights", "none") == "se"


def slice_band(result, x, y, grid, max_draws: int = MAX_BAND_DRAWS, se=None):
    """Pointwise 95% band of a 1-d fit (powerlaw, exponential) on `grid`, from its wild bootstrap redrawn with the
    recorded seed and settings (and, for a weighted fit, the weights from `se`, as the fit made them); None
    without a bootstrap, for a weighted fit without its se, or when the refit does not land on the saved estimate
    (the data changed)."""
    from scalingkit.fit import bootstrap as bs
    from scalingkit.fit import weights as wts
    from scalingkit.fit.curve1d import leverage, multistart, refit_rows
    from scalingkit.fit.huber import mad_delta
    from scalingkit.fit.registry import ONE_D, estimator_class

    s = result.provenance.get("settings", {})
    B = min(int(s.get("bootstrap") or 0), max_draws)
    if result.form not in ONE_D or not result.converged or B < 20 or len(x) < 4:
        return None
    w = None
    if weighted(result):
        if se is None or wts.bad_count(se):
            return None
        w = wts.from_se(result.form, se, len(y))
    cls = estimator_class(result.form)
    est = cls(**{**_settings_for(cls, s), "bootstrap": B, "workers": 1})
    curve = est.fit_curve
    x0 = float(np.median(x))
    u = x / x0
    delta = float(s["delta"]) if s.get("delta") else mad_delta(y)
    best, _ = multistart(curve, u, y, delta, int(s.get("starts", 40)), w=w)
    if best is None:
        return None
    theta = curve.to_public(best.x, x0)
    saved = np.array([result.params[n] for n in result.state.get("names", list(result.params))], float)
    if not np.allclose(theta, saved, rtol=1e-4, atol=1e-9):
        return None
    p = best.x
    yhat = curve.f(p, u)
    r = y - yhat
    if s.get("leverage_adjust", "hc3") in ("hc2", "hc3"):
        J = curve.jac(p, u)
        h = np.clip(leverage(J if w is None else np.sqrt(w)[:, None] * J), 0.0, 0.99)  # as the fit: weighted hat
        r = r / (np.sqrt(1.0 - h) if s.get("leverage_adjust") == "hc2" else (1.0 - h))
    signs = bs.wild_signs(s.get("seed"), int(s.get("bootstrap")), len(y))[:B]
    P = refit_rows(yhat + signs * r, curve, u, p, delta, w)
    P = P[np.all(np.isfinite(P), axis=1)]
    if len(P) < 20:
        return None
    F = curve.f(P, np.asarray(grid, float) / x0)
    return np.nanpercentile(F, 2.5, axis=0), np.nanpercentile(F, 97.5, axis=0)


def surface_draws(result, N, D, L, max_draws: int | None = None, se=None):
    """The bootstrap-over-runs refits of a Chinchilla or Kaplan fit (public parameter dicts), redrawn from the
    recorded seed and settings (the first max_draws of them: default 1,000 where the form refits all draws at once,
    as Chinchilla does, 100 where each draw is its own L-BFGS-B, as Kaplan's), a weighted fit's with the weights
    from `se`; [] where the form has none, the fit has no bootstrap, or a weighted fit comes without its se."""
    from scalingkit.fit import bootstrap as bs
    from scalingkit.fit import logfit
    from scalingkit.fit import weights as wts
    from scalingkit.fit.form2d import Estimator2D, bootstrap_refits
    from scalingkit.fit.registry import estimator_class

    s = dict(result.provenance.get("settings", {}))
    B = int(s.get("bootstrap") or 0)
    if result.form not in ("chinchilla", "kaplan") or not result.converged or B < 20:
        return []
    w = None
    if weighted(result):  # as slice_band: a weighted fit's draws are redrawn with its weights, or not at all
        if se is None or wts.bad_count(se):
            return []
        w = wts.from_se(result.form, se, len(L), loss=L)
    cls = estimator_class(result.form)
    if not issubclass(cls, Estimator2D):
        return []
    est = cls(**{**_settings_for(cls, s), "workers": 1})
    settings = {**est.settings, "budget": s.get("budget"), "workers": 1}
    form = est.form
    if max_draws is None:
        from scalingkit.fit.form2d import is_batched

        max_draws = 1000 if is_batched(form, settings) else 100
    n = len(L)
    idx = bs.resample_indices(s.get("seed"), B, n)[:max_draws]
    counts = np.stack([np.bincount(ix, minlength=n) for ix in idx])
    theta = form.from_public(result.params)
    draws, _, _ = bootstrap_refits(form, logfit.LogData.of(N, D, L, w), settings, np.atleast_2d(theta), counts)
    names = list(result.params)
    return [dict(zip(names, row[:len(names)])) for row in draws if np.all(np.isfinite(row[:len(names)]))]


def _band_from_draws(result, draws, N, D):
    from scalingkit.fit.base import FitResult

    if len(draws) < 20:
        return None
    F = np.array([FitResult(result.form, d, state=result.state).predict(N, D) for d in draws])
    return np.nanpercentile(F, 2.5, axis=0), np.nanpercentile(F, 97.5, axis=0)


# ---------------------------------------------------------------- legends


def _proxies(floor, floor_kind, se_shown: bool, band_note: str):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Line2D([], [], marker="o", ls="none", color="0.3",
                      label="data" + (" +- 95% (1.96 s.e.)" if se_shown else " (no standard error)")),
               Line2D([], [], color="0.3", lw=1.4, label="fitted law"),
               Patch(color="0.3", alpha=0.2, label=band_note)]
    if floor is not None and np.isfinite(floor):
        handles.append(Line2D([], [], color="k", ls=":", lw=1.2,
                              label="loss floor" + (" (estimated)" if floor_kind == "estimate" else " (exact)")))
    return handles


def _floor_line(ax, floor, floor_kind):
    if floor is not None and np.isfinite(floor):
        ax.axhline(floor, color="k", ls=":", lw=1.2)


# ---------------------------------------------------------------- 1-d slices


def plot_slices(collection, table, group: dict, *, loss_kind=None, n_convention="total", floor=None,
                floor_kind="unknown", bands: bool = True, title: str = "", n_column: str | None = None):
    """L(N) at every fixed D and L(D) at every fixed N of one group, with fits, bands, floor and residuals.
    Returns the figure (style.save or style.png_bytes writes it)."""
    g = group_table(table, group)
    present = [a for a in ("N", "D") if a in g.columns]  # a CSV may have one: then one fit along it
    fig, axes = style.figure(2, len(present), size=(6.25 * len(present), 7.2),
                             gridspec_kw={"height_ratios": [3, 1.3]}, sharex="col")
    se_shown = "loss_se" in g.columns and np.isfinite(g["loss_se"].to_numpy(float)).any()
    results = [r for r in collection.results if r.provenance.get("group", {}) == group] if group else \
        list(collection.results)
    band_states = []
    for col, axis in enumerate(present):
        other = "D" if axis == "N" else "N"
        ax, rax = axes[0, col], axes[1, col]
        whole = other not in g.columns
        fixed_values = [None] if whole else sorted(g[other].unique())
        colour, sm = ((lambda v: "tab:blue"), None) if whole else style.colour_scale(fixed_values)
        fitted = {float(r.provenance.get("fixed", {}).get(other, np.nan)): r for r in results
                  if r.provenance.get("axis") == axis}
        n_fits = 0
        for v in fixed_values:
            s = (g if whole else g[g[other] == v]).sort_values(axis)
            x, y = s[axis].to_numpy(float), s["loss"].to_numpy(float)
            se = s["loss_se"].to_numpy(float) if "loss_se" in s.columns else np.full(len(s), np.nan)
            c = colour(v)
            yerr = np.where(np.isfinite(se), style.Z95 * se, 0.0)
            ax.errorbar(x, y, yerr=yerr if se_shown else None, fmt="o", ms=4, color=c, capsize=2, lw=1)
            r = next(iter(fitted.values()), None) if whole else \
                next((fr for fv, fr in fitted.items() if np.isclose(fv, v, rtol=1e-9)), None)
            if r is None or not r.converged:
                continue
            n_fits += 1
            grid = np.geomspace(x.min(), x.max(), 120)
            pred = r.predict(grid)
            ax.plot(grid, _floor_mask(pred, floor, floor_kind), "-", color=c, lw=1.4)
            if bands:
                data = {"x": x, "y": y, "se": se} if weighted(r) else {"x": x, "y": y}  # what the fit hashed
                band = slice_band(r, x, y, grid, se=se if weighted(r) else None) if matches(r, data) else None
                band_states.append(band is not None)
                if band is not None:
                    lo, hi = (_floor_mask(np.maximum(b, floor) if floor_kind == "exact" and floor is not None
                                          else b, floor, floor_kind) for b in band)
                    ax.fill_between(grid, lo, hi, color=c, alpha=0.18 if len(fixed_values) <= 3 else 0.11, lw=0)
            res = y - r.predict(x)
            rax.errorbar(x, res, yerr=yerr if se_shown else None, fmt="o", ms=3.5, color=c, capsize=2, lw=1)
            if len(np.unique(x)) == len(x) <= 30:  # a slice on a grid: its residuals joined, to show a trend
                rax.plot(x, res, "-", color=c, lw=0.6, alpha=0.6)
        _floor_line(ax, floor, floor_kind)
        _data_ylim(ax, g["loss"].to_numpy(float), style.Z95 * g["loss_se"].to_numpy(float) if se_shown else None,
                   floor)
        rax.axhline(0, color="k", lw=0.8)
        if not n_fits:
            rax.text(0.5, 0.5, "no fitted slice: no residuals", transform=rax.transAxes, ha="center",
                     va="center", color="0.4")
            rax.set_yticks([])
        name, what = AXIS_NAMES[axis]
        what = f"L({axis})" if whole else what
        label = style.n_label(n_convention, n_column) if axis == "N" else style.D_LABEL
        fits_note = f"{n_fits} of {len(fixed_values)} slices fitted" if n_fits else \
            f"no fit: {g[axis].nunique()} distinct {axis} (4 needed)"
        ax.set_title(f"{what} ({fits_note})", fontsize=10)
        ax.set_ylabel(style.loss_label(loss_kind))
        rax.set_ylabel("residual (nats)" if loss_kind in ("exact", "sampled") else "residual")
        rax.set_xlabel(label)
        style.log_axis(ax, "x", "count")
        style.log_axis(ax, "y", "plain")
        if sm is not None:
            style.colourbar(fig, sm, [ax, rax], style.n_label(n_convention, n_column) if other == "N"
                            else style.D_LABEL)
    if band_states and all(band_states):
        note = "95% band (bootstrap refits)"
    elif any(band_states):
        note = "95% band (bootstrap refits; some fits have none)"
    else:
        note = "no band (no bootstrap draws)" if bands else "bands not drawn"
    fig.legend(handles=_proxies(floor, floor_kind, se_shown, note), loc="outside lower center", ncol=4,
               fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def _excess_line(x, y, floor, se):
    """(slope, intercept) of the excess-loss line log(L - floor) = c0 + c1 log x, as fit/excess.py fits it."""
    from scalingkit.fit.excess import MIN_POINTS, _line

    above = y > floor
    if len(np.unique(x[above])) < MIN_POINTS:
        return None
    z = np.log(y[above] - floor)
    t = np.log(x[above])
    s = np.where(np.isfinite(se[above]), se[above], 1.0) if se is not None else np.ones(above.sum())
    w = (y[above] - floor) ** 2 / np.maximum(s, 1e-12) ** 2
    slope, _, resid = _line(z, t, w / w.mean())
    c0 = float(np.mean(z - resid - slope * t))
    return slope, c0


def plot_excess(collection, table, group: dict, *, floor, floor_kind="exact", loss_kind=None,
                n_convention="total", title: str = "", n_column: str | None = None):
    """L - floor against N (each fixed D) and against D (each fixed N), log-log, with each slice's excess-loss
    line where the fit made one. Points at or below the floor cannot be drawn and are counted in the title."""
    fig, axes = style.figure(1, 2, size=(12.5, 4.6))
    g = group_table(table, group)
    results = [r for r in collection.results if r.provenance.get("group", {}) == group] if group else \
        list(collection.results)
    for col, axis in enumerate(("N", "D")):
        ax = axes[0, col]
        other = "D" if axis == "N" else "N"
        fixed_values = sorted(g[other].unique())
        colour, sm = style.colour_scale(fixed_values)
        below = 0
        for v in fixed_values:
            s = g[g[other] == v].sort_values(axis)
            x, y = s[axis].to_numpy(float), s["loss"].to_numpy(float)
            se = s["loss_se"].to_numpy(float) if "loss_se" in s.columns else np.full(len(s), np.nan)
            ok = y > floor
            below += int((~ok).sum())
            c = colour(v)
            exc = y[ok] - floor
            err = np.where(np.isfinite(se[ok]), style.Z95 * se[ok], 0.0)
            lower = np.minimum(err, exc * 0.999)  # a log axis cannot show a bar through zero: clipped above it
            ax.errorbar(x[ok], exc, yerr=[lower, err], fmt="o", ms=4, color=c, capsize=2, lw=1)
            has_fit = any(r.provenance.get("axis") == axis and r.converged and "excess" in r.diagnostics
                          and np.isclose(float(r.provenance.get("fixed", {}).get(other, np.nan)), v, rtol=1e-9)
                          for r in results)
            line = _excess_line(x, y, floor, se) if has_fit else None
            if line is not None:
                slope, c0 = line
                grid = np.geomspace(x[ok].min(), x[ok].max(), 50)
                ax.plot(grid, np.exp(c0 + slope * np.log(grid)), "--", color=c, lw=1.2)
        name, what = AXIS_NAMES[axis]
        ax.set_title(f"L - floor against {axis} at fixed {other}"
                     + (f" ({below} point(s) at or below the floor left out)" if below else ""), fontsize=10)
        ax.set_xlabel(style.n_label(n_convention, n_column) if axis == "N" else style.D_LABEL)
        kind = {"exact": "exact loss", "sampled": "sampled loss"}.get(loss_kind, "loss")
        ax.set_ylabel(f"{kind} - floor (nats)")
        style.log_axis(ax, "x", "count")
        style.log_axis(ax, "y", "plain")
        style.colourbar(fig, sm, ax, style.n_label(n_convention, n_column) if other == "N" else style.D_LABEL)
    from matplotlib.lines import Line2D

    fig.legend(handles=[Line2D([], [], marker="o", ls="none", color="0.3", label="L - floor +- 95%"),
                        Line2D([], [], ls="--", color="0.3", label="excess-loss power law (robust line in log-log)")],
               loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(title or f"excess loss over the {'exact' if floor_kind == 'exact' else 'estimated'} floor "
                 f"{floor:.4g}: a power law is a straight line here", fontsize=11)
    return fig


def plot_ratios(collection, group: dict | None = None, *, n_convention="total", title: str = ""):
    """Fig. 15: each slice's power-law / exponential ratio of in-sample MSE (filled) and of leave-one-out CV MSE
    (open), against the fixed variable; below 1 the power law fits better. Markers and colours give the verdict;
    the band between 1/2 and 2 is where the verdict's rule calls neither form."""
    from matplotlib.lines import Line2D

    fig, axes = style.figure(1, 2, size=(12.5, 4.4), sharey=True)
    results = [r for r in collection.results if not group or r.provenance.get("group", {}) == group]
    all_ratios = []
    for col, axis in enumerate(("N", "D")):
        ax = axes[0, col]
        other = "D" if axis == "N" else "N"
        rows = [r for r in results if r.provenance.get("axis") == axis and r.converged]
        ax.axhspan(0.5, 2.0, color="0.85", alpha=0.6, lw=0)
        ax.axhline(1.0, color="k", lw=0.8)
        for r in rows:
            v = float(r.provenance.get("fixed", {}).get(other, np.nan))
            verdict = (r.diagnostics.get("verdict") or {}).get("verdict", "inconclusive")
            mse = r.diagnostics.get("mse_ratio_power_vs_exp")
            cv = (r.diagnostics.get("verdict") or {}).get("cv_ratio_power_vs_exp")
            c, m = VERDICT_COLOURS.get(verdict, "k"), VERDICT_MARKERS.get(verdict, "o")
            for value, filled in ((mse, True), (cv, False)):
                if value is not None and np.isfinite(value) and value > 0:
                    all_ratios.append(value)
                    ax.plot([v], [value], m, color=c, ms=7, mfc=c if filled else "none", mew=1.4)
        name, what = AXIS_NAMES[axis]
        ax.set_title(f"{what}: {len(rows)} slice(s)", fontsize=10)
        ax.set_xlabel(style.n_label(n_convention) if other == "N" else style.D_LABEL)
        if not rows:
            ax.text(0.5, 0.5, f"no L({axis}) slice was fitted", transform=ax.transAxes, ha="center", va="center",
                    color="0.4")
        if rows:
            style.log_axis(ax, "x", "count")
        else:
            ax.set_xticks([])
    axes[0, 0].set_ylabel("power-law / exponential MSE ratio")
    lo = min(all_ratios + [0.1]) / 2
    hi = max(all_ratios + [10.0]) * 2
    axes[0, 0].set_ylim(lo, hi)
    style.log_axis(axes[0, 0], "y", "plain")
    handles = [Line2D([], [], marker=VERDICT_MARKERS[v], ls="none", color=VERDICT_COLOURS[v], label=v)
               for v in VERDICT_MARKERS]
    handles += [Line2D([], [], marker="o", ls="none", color="0.3", label="in-sample MSE ratio"),
                Line2D([], [], marker="o", ls="none", color="0.3", mfc="none", label="leave-one-out CV ratio")]
    fig.legend(handles=handles, loc="outside lower center", ncol=6, fontsize=8, frameon=False,
               title="verdict (grey band: ratio between 1/2 and 2, too close to call by this ratio)",
               title_fontsize=8)
    fig.suptitle(title or "power law against exponential, per slice (below 1: the power law fits better)",
                 fontsize=11)
    return fig


# ---------------------------------------------------------------- 2-d laws


def plot_fit2d(result, table, *, loss_kind=None, n_convention="total", floor=None, floor_kind="unknown",
               bands: bool = True, title: str = "", n_column: str | None = None):
    """A 2-d fit against its data: slices of the fitted surface at every D (against N) and every N (against D),
    with its 95% band where it has a bootstrap, the floor, and residuals."""
    fig, axes = style.figure(2, 2, size=(12.5, 7.2), gridspec_kw={"height_ratios": [3, 1.3]}, sharex="col")
    N, D, L = (table[c].to_numpy(float) for c in ("N", "D", "loss"))
    se = table["loss_se"].to_numpy(float) if "loss_se" in table.columns else np.full(len(L), np.nan)
    se_shown = np.isfinite(se).any()
    draws = []
    band_note = "no band (no bootstrap)"
    if bands and result.converged:
        data = {"N": N, "D": D, "loss": L, **({"loss_se": se} if weighted(result) else {})}  # what the fit hashed
        if matches(result, data):
            draws = surface_draws(result, N, D, L, se=se if weighted(result) else None)
            if draws:
                band_note = f"95% band ({len(draws)} bootstrap refits over runs)"
            elif int(result.provenance.get("settings", {}).get("bootstrap") or 0):
                band_note = f"no band ({result.form} bootstrap draws are not redrawn)"
        else:
            band_note = "no band (the data changed since the fit)"
    pred = result.predict(N, D) if result.converged else np.full(len(L), np.nan)
    sparse = False
    for col, axis in enumerate(("N", "D")):
        other = "D" if axis == "N" else "N"
        ax, rax = axes[0, col], axes[1, col]
        x_all, o_all = (N, D) if axis == "N" else (D, N)
        fixed_values = sorted(np.unique(o_all))
        colour, sm = style.colour_scale(fixed_values)
        for v in fixed_values:
            sel = o_all == v
            order = np.argsort(x_all[sel])
            x, y, s = x_all[sel][order], L[sel][order], se[sel][order]
            c = colour(v)
            yerr = np.where(np.isfinite(s), style.Z95 * s, 0.0) if se_shown else None
            ax.errorbar(x, y, yerr=yerr, fmt="o", ms=4, color=c, capsize=2, lw=1)
            if not result.converged:
                continue
            if len(x) < 3:  # off a grid (an IsoFLOP table): too few points on this slice for a line, the law at each
                ax.plot(x, _floor_mask(pred[sel][order], floor, floor_kind), "_", color=c, ms=9, mew=1.6)
                rax.plot(x, y - pred[sel][order], "o", color=c, ms=3.5)
                sparse = True
                continue
            grid = np.geomspace(x.min(), x.max(), 80)
            gN, gD = (grid, np.full_like(grid, v)) if axis == "N" else (np.full_like(grid, v), grid)
            ax.plot(grid, _floor_mask(result.predict(gN, gD), floor, floor_kind), "-", color=c, lw=1.4)
            band = _band_from_draws(result, draws, gN, gD) if draws else None
            if band is not None:
                lo, hi = band
                if floor_kind == "exact" and floor is not None:
                    lo = np.maximum(lo, floor)
                ax.fill_between(grid, _floor_mask(lo, floor, floor_kind), _floor_mask(hi, floor, floor_kind),
                                color=c, alpha=0.18 if len(fixed_values) <= 3 else 0.11, lw=0)
            res = y - pred[sel][order]
            rax.errorbar(x, res, yerr=yerr, fmt="o", ms=3.5, color=c, capsize=2, lw=1)
            if len(fixed_values) <= 12:
                rax.plot(x, res, "-", color=c, lw=0.6, alpha=0.6)
        _floor_line(ax, floor, floor_kind)
        _data_ylim(ax, L, style.Z95 * se if se_shown else None, floor)
        rax.axhline(0, color="k", lw=0.8)
        ax.set_title(f"L against {axis}, one line per {other}", fontsize=10)
        ax.set_ylabel(style.loss_label(loss_kind))
        rax.set_ylabel("residual (nats)" if loss_kind in ("exact", "sampled") else "residual")
        rax.set_xlabel(style.n_label(n_convention, n_column) if axis == "N" else style.D_LABEL)
        style.log_axis(ax, "x", "count")
        style.log_axis(ax, "y", "plain")
        style.colourbar(fig, sm, [ax, rax], style.n_label(n_convention, n_column) if other == "N" else style.D_LABEL)
    handles = _proxies(floor, floor_kind, se_shown, band_note)
    if sparse:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], marker="_", ls="none", ms=9, mew=1.6, color="0.3",
                              label="the law at a data point (slices of 1-2 points)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5), fontsize=8, frameon=False)
    status = "" if result.converged else f" (FAILED: {result.failure})"
    fig.suptitle(title or f"{result.form} fit{status}", fontsize=11)
    return fig


# ---------------------------------------------------------------- model comparison


def plot_comparison(doc: dict, title: str = ""):
    """Figs. 10/17: each form's train and validation MSE, the mean over random splits with the middle 95% of the
    splits as a band (a form whose fits failed on some splits says how many)."""
    from matplotlib.lines import Line2D

    forms = list(doc.get("forms", []))
    train, val = (np.asarray(doc.get(k, []), dtype=float) for k in ("train_mse", "val_mse"))
    fig, axes = style.figure(1, 1, size=(8.5, 0.55 * len(forms) + 1.9))
    ax = axes[0, 0]
    values = []
    for i, f in enumerate(forms):
        for row, offset, colour, name in ((train, -0.13, "tab:blue", "train"), (val, 0.13, "tab:red", "validation")):
            v = row[i][np.isfinite(row[i])] if row.ndim == 2 and i < len(row) else np.empty(0)
            v = v[v > 0]
            if not len(v):
                continue
            values += list(v)
            lo, hi = np.percentile(v, [2.5, 97.5])
            ax.fill_betweenx([i + offset - 0.09, i + offset + 0.09], lo, hi, color=colour, alpha=0.25, lw=0)
            ax.plot([v.mean()], [i + offset], "o", color=colour, ms=6)
    ax.set_yticks(range(len(forms)))
    summary = doc.get("summary", {})
    ax.set_yticklabels([f + (f" ({summary[f]['n_failed']} failed)" if summary.get(f, {}).get("n_failed") else "")
                        + (" *best" if f == doc.get("best") else "") for f in forms])
    ax.invert_yaxis()
    if values:
        ax.set_xlim(min(values) / 2, max(values) * 2)
    style.log_axis(ax, "x", "power")
    st = doc.get("settings", {})
    ax.set_xlabel("mean squared error of the loss (nats^2)")
    ax.set_title(title or f"2-d forms: {st.get('splits', '?')} random {st.get('n_train', '?')}/{st.get('n_val', '?')}"
                 " train/validation splits", fontsize=10)
    fig.legend(handles=[Line2D([], [], marker="o", ls="none", color="tab:blue", label="train MSE (mean)"),
                        Line2D([], [], marker="o", ls="none", color="tab:red", label="validation MSE (mean)"),
                        Line2D([], [], lw=6, color="0.5", alpha=0.4, label="middle 95% of the splits")],
               loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return fig


# ---------------------------------------------------------------- one call per saved result


def figures_for(result, table, out_dir, *, loss_kind=None, n_convention="total", floors=None, n_column=None,
                prefix: str = "fit") -> list:
    """Draw a figure for each fit of `result` (a FitCollection of 1-d slices: one per group, plus its excess view
    where the floor is exact; a 2-d FitResult: one) into out_dir; returns the files. `table` is what was fitted
    (columns N, D, loss, optionally loss_se and family/param); floors: family -> (floor, kind)."""
    from pathlib import Path

    from scalingkit.fit.results import FitCollection, _clean

    out_dir = Path(out_dir)
    floors = floors or {}
    written = []
    if isinstance(result, FitCollection):
        groups = []
        for r in result.results:
            g = r.provenance.get("group", {})
            if g not in groups:
                groups.append(g)
        for g in groups or [{}]:
            floor, kind = floors.get(g.get("family"), (None, "unknown"))
            label = _clean(",".join(f"{k}={v}" for k, v in g.items())) or "all"
            lk = loss_kind or _group_loss(result, g)
            fig = plot_slices(result, table, g, loss_kind=lk, n_convention=n_convention, floor=floor,
                              floor_kind=kind, n_column=n_column, title=f"{result.form} slices [{label}]")
            written.append(style.save(fig, out_dir / f"{prefix}-{result.form}-{label}.png"))
            if kind == "exact" and floor is not None:
                fig = plot_excess(result, table, g, floor=floor, floor_kind=kind, loss_kind=lk,
                                  n_convention=n_convention, n_column=n_column)
                written.append(style.save(fig, out_dir / f"{prefix}-{result.form}-excess-{label}.png"))
        return written
    g = result.provenance.get("group", {})
    floor, kind = floors.get(g.get("family"), (None, "unknown"))
    label = _clean(result.provenance.get("label", "")) or "all"
    sub = group_table(table, g)
    if not {"N", "D"} <= set(sub.columns):  # a law in N only or D only (an expression): no 2-d figure to draw
        return written
    fig = plot_fit2d(result, sub, loss_kind=loss_kind or result.provenance.get("loss"), n_convention=n_convention,
                     floor=floor, floor_kind=kind, n_column=n_column, title=f"{result.form} fit [{label}]")
    written.append(style.save(fig, out_dir / f"{prefix}-{result.form}-{label}.png"))
    return written


def _group_loss(collection, group):
    kinds = {r.provenance.get("loss") for r in collection.results if r.provenance.get("group", {}) == group}
    kinds.discard(None)
    return sorted(kinds)[0] if len(kinds) == 1 else None
