"""Figures of fits: data with 95% error bars, the fitted law with its bootstrap band, the floor, residuals; the
excess-loss view; labels that say which loss and which N; tick labels that never overlap; legends off the data."""
import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from scalingkit.fit import Chinchilla, fit_slices, load_result, save_result  # noqa: E402
from scalingkit.plots import fits, style  # noqa: E402

FLOOR = 2.0
N_VALUES = np.array([8e3, 2e4, 5e4, 1.2e5, 3e5])
D_VALUES = np.array([5e4, 1e5, 2e5, 4e5, 8e5])


def law_table(E=2.1, seed=0, se=2e-3):
    """L = E + A N^-0.5 + B D^-0.6 on a 5 x 5 grid, noise of s.d. `se` and that standard error in loss_se."""
    rng = np.random.default_rng(seed)
    n, d = np.meshgrid(N_VALUES, D_VALUES, indexing="ij")
    loss = E + 30.0 * n ** -0.5 + 400.0 * d ** -0.6 + rng.normal(0, se, n.shape)
    return pd.DataFrame({"family": "er", "param": "sp", "N": n.ravel().astype(np.int64),
                         "D": d.ravel().astype(np.int64), "loss": loss.ravel(), "loss_se": se,
                         "loss_kind": "exact"})


@pytest.fixture(scope="module")
def slices():
    table = law_table()
    coll = fit_slices(table, "powerlaw", floors={"er": (FLOOR, "exact")}, bootstrap=200, seed=1, workers=1)
    return table, coll


def _lines_below(ax, floor):
    """Points of drawn curves (not error bars, not the floor line itself) below the floor."""
    below = 0
    for line in ax.get_lines():
        y = np.asarray(line.get_ydata(), float)
        if len(y) > 10:  # a fitted curve: 50-120 points; data lines have 5
            below += int(np.sum(y[np.isfinite(y)] < floor - 1e-12))
    return below


def test_slice_figure_has_data_errors_fits_bands_floor_and_residuals(slices):
    table, coll = slices
    fig = fits.plot_slices(coll, table, {"family": "er", "param": "sp"}, loss_kind="exact", floor=FLOOR,
                           floor_kind="exact")
    assert style.layout_problems(fig) == []
    top_n, top_d = fig.axes[0], fig.axes[1]
    assert top_n.get_ylabel() == "exact loss (nats)" and top_d.get_ylabel() == "exact loss (nats)"
    assert fig.axes[2].get_xlabel() == "N (total parameters, embedding included)"
    assert fig.axes[3].get_xlabel() == "D (tokens)"
    assert fig.axes[2].get_ylabel() == "residual (nats)"
    for ax in (top_n, top_d):
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(bands) == 5  # one 95% band per fitted slice
        curves = [line for line in ax.get_lines() if len(line.get_xdata()) > 10]
        assert len(curves) == 5
        for band, curve in zip(bands, curves):  # the band contains its fitted line
            verts = band.get_paths()[0].vertices
            x, y = curve.get_xdata(), curve.get_ydata()
            mid = len(x) // 2
            at = verts[np.argmin(np.abs(np.log(verts[:, 0] / x[mid])))]
            column = verts[np.isclose(verts[:, 0], at[0])][:, 1]
            assert column.min() - 1e-9 <= y[mid] <= column.max() + 1e-9
        assert _lines_below(ax, FLOOR) == 0
        assert any(np.allclose(line.get_ydata(), FLOOR) for line in ax.get_lines())  # the floor is drawn
    legend_text = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "95% band (bootstrap refits)" in legend_text and "loss floor (exact)" in legend_text
    assert "data +- 95% (1.96 s.e.)" in legend_text


def test_band_is_the_saved_fits_own_bootstrap_and_vanishes_when_the_data_changed(slices, tmp_path):
    table, coll = slices
    back = load_result(save_result(coll, tmp_path))
    r = next(x for x in back.results if x.provenance["axis"] == "D")
    x, y, se = fits.slice_data(table, r)
    grid = np.geomspace(x.min(), x.max(), 30)
    lo, hi = fits.slice_band(r, x, y, grid)
    lo2, hi2 = fits.slice_band(coll.results[back.results.index(r)], x, y, grid)
    assert np.array_equal(lo, lo2) and np.array_equal(hi, hi2)  # the same draws, saved or not
    fit = r.predict(grid)
    assert np.all(lo <= fit + 1e-12) and np.all(fit <= hi + 1e-12) and np.all(hi - lo > 0)
    assert fits.slice_band(r, x, y + 0.05, grid) is None  # other data: the refit misses the saved estimate
    changed = table.assign(loss=table["loss"] + 0.01)
    fig = fits.plot_slices(back, changed, {"family": "er", "param": "sp"}, loss_kind="exact", floor=FLOOR,
                           floor_kind="exact")
    assert not [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]
    assert "no band (no bootstrap draws)" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_no_fitted_line_or_band_is_drawn_below_an_exact_floor():
    # a fit left free on data whose offset lies under the floor would draw below it: the figure must not
    table = law_table(E=FLOOR - 0.3, se=1e-3)
    res = Chinchilla(bootstrap=40, seed=0, workers=1).fit(table[["N", "D", "loss"]])
    assert res.params["E"] < FLOOR
    fig = fits.plot_fit2d(res, table, loss_kind="exact", floor=FLOOR, floor_kind="exact")
    for ax in fig.axes[:2]:
        assert _lines_below(ax, FLOOR) == 0
        for band in (c for c in ax.collections if isinstance(c, PolyCollection)):
            v = band.get_paths()[0].vertices
            assert np.all(v[np.isfinite(v[:, 1]), 1] >= FLOOR - 1e-12)
    assert style.layout_problems(fig) == []
    # with an estimated floor nothing is hidden
    fig = fits.plot_fit2d(res, table, loss_kind="exact", floor=FLOOR, floor_kind="estimate")
    assert _lines_below(fig.axes[0], FLOOR) > 0


def test_two_d_fit_band_comes_from_its_bootstrap_over_runs(slices):
    table, _ = slices
    res = Chinchilla(bootstrap=60, seed=2, workers=1).fit(table[["N", "D", "loss"]])
    draws = fits.surface_draws(res, *(table[c].to_numpy(float) for c in ("N", "D", "loss")))
    assert len(draws) >= 50
    E = np.array([d["E"] for d in draws])  # the draws' spread is the saved interval's: same draws
    lo, hi = res.intervals["E"]
    assert np.percentile(E, 2.5) == pytest.approx(res.diagnostics["intervals_percentile"]["E"][0], rel=1e-6)
    assert lo < res.params["E"] < hi
    fig = fits.plot_fit2d(res, table, loss_kind="exact", floor=FLOOR, floor_kind="exact")
    assert len([c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]) == len(D_VALUES)
    assert any(t.get_text().startswith("95% band (") for t in fig.legends[0].get_texts())


def test_weighted_fits_get_bands_from_their_own_weighted_draws():
    """--weights se: the bands are redrawn with the fit's weights (its saved intervals come out of the same draws),
    and without the standard errors no band is drawn rather than an unweighted one."""
    table = law_table(se=2e-3)
    se = 2e-3 * np.geomspace(0.2, 6.0, len(table))  # standard errors that vary 30x
    table = table.assign(loss_se=se)
    N, D, L = (table[c].to_numpy(float) for c in ("N", "D", "loss"))
    res = Chinchilla(bootstrap=60, seed=2, workers=1, weights="se").fit(N, D, L, se=se)
    draws = fits.surface_draws(res, N, D, L, se=se)
    assert len(draws) >= 50
    E = np.array([d["E"] for d in draws])
    assert np.percentile(E, 2.5) == pytest.approx(res.diagnostics["intervals_percentile"]["E"][0], rel=1e-6)
    assert fits.surface_draws(res, N, D, L) == []  # a weighted fit's draws without its weights: none
    fig = fits.plot_fit2d(res, table, loss_kind="exact", floor=FLOOR, floor_kind="exact")
    assert len([c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]) == len(D_VALUES)
    coll = fit_slices(table, "powerlaw", floors={"er": (FLOOR, "exact")}, bootstrap=200, seed=1, workers=1,
                      weights="se")
    fig = fits.plot_slices(coll, table, {"family": "er", "param": "sp"}, loss_kind="exact", floor=FLOOR,
                           floor_kind="exact")
    assert "95% band (bootstrap refits)" in [t.get_text() for t in fig.legends[0].get_texts()]
    r = next(x for x in coll.results if x.provenance["axis"] == "D")
    x, y, s = fits.slice_data(table, r)
    grid = np.geomspace(x.min(), x.max(), 30)
    lo, hi = fits.slice_band(r, x, y, grid, se=s)
    fit = r.predict(grid)
    assert np.all(lo <= fit + 1e-12) and np.all(fit <= hi + 1e-12) and np.all(hi - lo > 0)
    assert fits.slice_band(r, x, y, grid) is None


def test_excess_view_is_log_log_with_one_line_per_fitted_slice(slices):
    table, coll = slices
    fig = fits.plot_excess(coll, table, {"family": "er", "param": "sp"}, floor=FLOOR, loss_kind="exact")
    assert style.layout_problems(fig) == []
    for ax in fig.axes[:2]:
        if ax.get_label() == "<colorbar>":
            continue
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        assert ax.get_ylabel() == "exact loss - floor (nats)"
        dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert len(dashed) == 5
        for line in dashed:  # straight in log-log
            lx, ly = np.log(line.get_xdata()), np.log(line.get_ydata())
            assert np.allclose(np.diff(ly) / np.diff(lx), (ly[-1] - ly[0]) / (lx[-1] - lx[0]))


def test_csv_fits_are_labelled_loss_and_name_their_n_column(tmp_path):
    table = law_table()[["N", "D", "loss"]]
    res = Chinchilla(bootstrap=0, workers=1).fit(table)
    [path] = fits.figures_for(res, table, tmp_path, n_column="Model Size")
    assert path.is_file() and matplotlib.image.imread(path).shape[0] > 300
    fig = fits.plot_fit2d(res, table, n_column="Model Size")
    assert fig.axes[0].get_ylabel() == "loss" and fig.axes[2].get_ylabel() == "residual"
    assert fig.axes[2].get_xlabel() == "N (column 'Model Size')"
    assert "no band (no bootstrap)" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_a_one_column_csv_fit_gets_one_panel_with_its_fit_and_residuals():
    table = law_table()[["N", "loss"]]  # N only: one power law over the whole table
    coll = fit_slices(table, "powerlaw", group_cols=[], bootstrap=100)
    fig = fits.plot_slices(coll, table, {}, n_column="params")
    assert style.layout_problems(fig) == []
    main, resid = fig.axes[:2]
    assert main.get_title() == "L(N) (1 of 1 slices fitted)" and main.get_ylabel() == "loss"
    assert resid.get_xlabel() == "N (column 'params')"
    assert len([c for c in main.collections if isinstance(c, PolyCollection)]) == 1


def test_ratio_figure_marks_every_slice_by_verdict(slices):
    _, coll = slices
    fig = fits.plot_ratios(coll, {"family": "er", "param": "sp"})
    assert style.layout_problems(fig) == []
    markers = [line for ax in fig.axes for line in ax.get_lines() if line.get_marker() not in ("None", None, "")
               and len(line.get_xdata()) == 1]
    assert len(markers) == 2 * len(coll.results)  # in-sample and leave-one-out ratio of each slice
    assert fig.axes[0].get_yscale() == "log"


def test_layout_check_catches_overlapping_ticks_and_a_legend_on_data():
    fig, axes = style.figure(1, 1, size=(2.0, 2.0))
    ax = axes[0, 0]
    ax.plot(np.arange(50), np.arange(50), "o", label="points")
    ax.set_xticks(np.arange(50))
    ax.legend(loc="center")
    problems = style.layout_problems(fig)
    assert any("x tick labels overlap" in p for p in problems)
    assert any("legend covers" in p for p in problems)
    style.declutter(fig)
    assert not any("tick labels overlap" in p for p in style.layout_problems(fig))


def test_comparison_figure_has_a_row_per_form():
    rng = np.random.default_rng(0)
    doc = {"forms": ["chinchilla", "kaplan", "kernel"], "best": "chinchilla",
           "train_mse": rng.uniform(1e-4, 2e-4, (3, 10)).tolist(), "val_mse": rng.uniform(2e-4, 5e-4, (3, 10)).tolist(),
           "summary": {"kaplan": {"n_failed": 2}}, "settings": {"splits": 10, "n_train": 20, "n_val": 5}}
    fig = fits.plot_comparison(doc)
    assert style.layout_problems(fig) == []
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["chinchilla *best", "kaplan (2 failed)", "kernel"]
    assert len([c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]) == 6


@pytest.fixture(scope="module")
def one_family_cube(tmp_path_factory):
    from scalingkit.run.synthetic import chinchilla_cube

    path = tmp_path_factory.mktemp("cube") / "cube.zarr"
    chinchilla_cube(path, widths=(16, 24, 32, 48), tokens=(50_000, 100_000, 200_000, 400_000, 800_000), lrs=(0.01,))
    return path


def test_cube_figure_says_which_loss_and_its_ticks_do_not_overlap(one_family_cube, tmp_path):
    from scalingkit import store
    from scalingkit.plots import curves

    ds = store.open_cube(one_family_cube)
    best = store.best_loss(ds, "nonembedding", "sampled")
    fig = curves.loss_figure(ds, best, "er64", "sp", "sampled", "nonembedding")
    assert style.layout_problems(fig) == []  # the old L(D) panel's 2x10^5, 3x10^5, 4x10^5 labels overlapped
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert [ax.get_ylabel() for ax in axes] == ["sampled loss (nats)"] * 3
    assert axes[1].get_xlabel() == "N (non-embedding parameters)" and axes[2].get_xlabel() == "D (tokens)"
    assert not fig.legends[0].get_texts()[0].get_text().startswith("eval")
    written = curves.plot_cube(one_family_cube, tmp_path)
    assert [p.name for p in written] == ["loss-er64-sp.png"]


def test_exponent_figure_with_one_family_shows_every_slice_with_its_band(one_family_cube):
    from scalingkit.plots.exponents import exponent_points, exponents_figure

    points, skipped = exponent_points(one_family_cube, bootstrap=100)
    assert len(points) == 1 and skipped == []
    fig = exponents_figure(points, skipped)
    assert style.layout_problems(fig) == []
    bottom = [ax for ax in fig.axes if ax.get_title().startswith(("alpha of each", "beta of each"))]
    assert len(bottom) == 2
    for ax, n in zip(bottom, (5, 4)):  # alpha at each of 5 D, beta at each of 4 N, each with its band
        [line] = [line for line in ax.get_lines() if len(line.get_xdata()) == n]
        assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 1
