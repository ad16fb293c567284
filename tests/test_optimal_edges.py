"""Off-grid optima are detected: the envelope's running minimum, IsoFLOP edge rejection, surrogate clipping.

These use closed forms (a known law as the 'surrogate', exact parabolas) so each check is exact, and fast.
"""
import numpy as np
import pandas as pd
import pytest

from scalingkit.optimal.envelope import lower_envelope
from scalingkit.optimal.inputs import Inputs
from scalingkit.optimal.isoflop import fit_profile, interpolated_slices, isoflop, merge_close
from scalingkit.optimal.surrogate import minimise_along_compute
from scalingkit.run.synthetic import Law


def test_lower_envelope_matches_brute_force():
    rng = np.random.default_rng(0)
    C = rng.choice(np.geomspace(1, 1e6, 300), 2000)  # repeated C values: ties must keep only the lowest loss
    L = 1 + 5 * C ** -0.3 + rng.random(2000)
    idx = lower_envelope(C, L)
    brute = [i for i in range(len(C)) if not np.any((C <= C[i]) & (L < L[i]) | (C < C[i]) & (L <= L[i]))]
    # brute force: no other point as good with no more compute; among exact duplicates lexsort keeps one
    assert set(idx) <= set(brute)
    assert {(C[i], L[i]) for i in idx} == {(C[i], L[i]) for i in brute}
    assert np.all(np.diff(C[idx]) > 0) and np.all(np.diff(L[idx]) < 0)


def test_parabola_and_akima_find_an_interior_minimum():
    x = np.log(np.geomspace(1e6, 1e8, 7))
    y = 2.0 + 0.3 * (x - np.log(3e6 * 3)) ** 2
    fit = fit_profile(x, y)
    assert fit["parabola"]["reject"] is None and fit["akima"]["reject"] is None
    assert fit["parabola"]["logN"] == pytest.approx(np.log(9e6), abs=1e-9)  # exact for a parabola
    assert fit["akima"]["logN"] == pytest.approx(np.log(9e6), abs=0.05)  # an interpolant: within the spacing
    assert fit["parabola"]["L"] == pytest.approx(2.0, abs=1e-9)


@pytest.mark.parametrize("centre, side", [(1e5, "smallest"), (1e9, "largest")])
def test_profile_minimum_outside_the_sampled_range_is_rejected(centre, side):
    x = np.log(np.geomspace(1e6, 1e8, 6))
    y = 2.0 + 0.3 * (x - np.log(centre)) ** 2
    fit = fit_profile(x, y)
    assert side in fit["parabola"]["reject"] and side in fit["akima"]["reject"]


def test_parabola_opening_downward_is_rejected():
    x = np.log(np.geomspace(1e6, 1e8, 6))
    y = 3.0 - 0.1 * (x - x.mean()) ** 2 + np.r_[0, 0, -0.5, 0, 0, 0]  # a dip in the middle of a cap
    assert fit_profile(x, y)["parabola"]["reject"] == "parabola opens downward"


def test_near_duplicate_sizes_are_merged_before_interpolating():
    x = np.log([1e8, 1e8 * 1.001, 2e8, 4e8, 8e8])
    y = np.array([3.0, 3.2, 2.9, 2.95, 3.1])
    mx, my = merge_close(x, y)
    assert len(mx) == 4 and my[0] == pytest.approx(3.1)


def _law_table(law, N, D):
    n, d = np.meshgrid(N, D, indexing="ij")
    return pd.DataFrame({"N": n.ravel(), "D": d.ravel(), "loss": law(n, d).ravel()})


def test_isoflop_on_an_exact_law_recovers_a_and_rejects_edge_slices():
    N = np.geomspace(1e6, 1e8, 12)
    D = np.geomspace(1e8, 1e10, 12)
    law = Law.centred((N[0], N[-1]), (D[0], D[-1]))
    inputs = Inputs("exact", _law_table(law, N, D))
    # slices from below the compute range where the optimum sits at the smallest N up to the top
    budgets = np.geomspace(6 * N[0] * D[0] * 20, 6 * N[-1] * D[-1] / 20, 12)
    profs = interpolated_slices(*inputs.arrays(), budgets=budgets)
    parabola, akima = isoflop(inputs, [1e17], n_slices=12, bootstrap=0)
    assert parabola.diagnostics["rejected"] >= 2  # the lowest and highest slices have N_opt off their N range
    for prof in parabola.diagnostics["profiles"]:
        n_opt, sampled = law.N_opt(prof["C"]), prof["N"]
        if prof["parabola"]["reject"]:  # rejected only where the true optimum is at or beyond the slice's edge
            assert n_opt < sampled[1] or n_opt > sampled[-2]
        else:
            assert sampled[0] < n_opt < sampled[-1]
    # exact data: the only error is the profile's shape (not a parabola in log N) and interpolation in log D
    assert parabola["a"] == pytest.approx(law.a, abs=0.02)
    assert akima["a"] == pytest.approx(law.a, abs=0.02)
    assert len(profs) > 0


def test_surrogate_search_clips_where_the_optimum_leaves_the_grid():
    N_range, D_range = (1e6, 1e8), (1e8, 1e10)
    law = Law.centred(N_range, D_range)
    opt = minimise_along_compute(law, N_range, D_range, grid=100)
    # at both ends of C the constraint meets the box only near a corner, and the optimum is beyond it
    assert opt["clipped_low"] > 0 and opt["clipped_high"] > 0
    assert opt["holes"] == 0
    # kept optima are the law's own, to well within a grid step (0.02 decades) thanks to the parabolic refinement
    assert np.max(np.abs(np.log10(opt["N"] / law.N_opt(opt["C"])))) < 0.005
    # searching over N and over D agree
    assert opt["disagreement_max_dex"] < 0.005
    # a C is kept exactly when its true optimum lies inside the box's stretch of the constraint, up to the
    # grid step h either side (where the grid minimum may fall on either side of the edge)
    C_all = np.geomspace(6 * N_range[0] * D_range[0], 6 * N_range[1] * D_range[1], 100)
    kept = np.isin(C_all, opt["C"])
    n_opt = law.N_opt(C_all)
    lo = np.maximum(N_range[0], C_all / (6 * D_range[1]))
    hi = np.minimum(N_range[1], C_all / (6 * D_range[0]))
    step = np.log(N_range[1] / N_range[0]) / 99
    well_inside = (np.log(n_opt / lo) > 2 * step) & (np.log(hi / n_opt) > 2 * step)
    outside = (np.log(n_opt / lo) < -step) | (np.log(hi / n_opt) < -step)
    assert kept[well_inside].all() and not kept[outside].any()
    assert outside.any()


def test_a_profile_cut_by_the_budgets_names_the_size_beyond_it_and_a_failure_says_why():
    """A grid whose budgets do not reach where the optimum lies: a profile's end is then often not the sweep's end
    (the next size would need a budget it was not trained on). An optimum there is rejected with that size and the
    budget it would need; when too few optima remain, the failure line counts the rejections by reason instead of
    only saying the optima are too few."""
    import re

    N = np.geomspace(1e4, 2e5, 5)
    D = np.geomspace(1e6, 1.6e7, 5)  # budgets 100x past N: with D_opt ~ N_opt the optima lie above the sizes
    law = Law(E=2.5, A=60.0, B=60.0, alpha=0.5, beta=0.5)
    parabola, akima = isoflop(Inputs("cut", _law_table(law, N, D)), [1e12], bootstrap=0)
    cut = [(p, p["parabola"]["reject"]) for p in parabola.diagnostics["profiles"]
           if p["parabola"]["reject"] and "this profile reaches" in p["parabola"]["reject"]]
    assert cut, [p["parabola"]["reject"] for p in parabola.diagnostics["profiles"]]
    for profile, why in cut:
        n, need = (float(x) for x in re.search(r"N = (\S+) would need D = (\S+), outside", why).groups())
        assert n not in np.round(profile["N"], -2) and np.isclose(n, N, rtol=1e-2).any(), (n, profile["N"])
        assert np.isclose(need, profile["C"] / (6 * n), rtol=1e-2) and not D[0] <= need <= D[-1], why
        assert f"outside the {D[0]:.3g} to {D[-1]:.3g} it was trained on" in why
    assert not parabola.converged
    assert "profiles rejected:" in parabola.failure and "this profile reaches" in parabola.failure, parabola.failure
    assert parabola.failure.startswith(f"{parabola.diagnostics['n_points']} compute-optimal point(s)")


def test_a_surrogate_optimum_within_half_a_data_spacing_of_the_box_edge_is_clipped():
    """The same exact law searched with margins: a C is kept only where its optimum lies at least the margin inside
    the constraint's stretch of the box, so the kept C shrink to exactly those, and with no margin the test above's
    rule holds. data_margin is half the median log spacing of the sampled values."""
    from scalingkit.optimal.surrogate import data_margin

    assert data_margin([1e4, 2e4, 4e4, 8e4]) == pytest.approx(0.5 * np.log(2))
    assert data_margin([5.0]) == 0.0
    N_range, D_range = (1e6, 1e8), (1e8, 1e10)
    law = Law.centred(N_range, D_range)
    margin = 0.25 * np.log(10)  # a quarter decade: half the spacing of a grid sampled every half decade
    loose = minimise_along_compute(law, N_range, D_range, grid=100)
    strict = minimise_along_compute(law, N_range, D_range, grid=100, margins=(margin, margin))
    assert 3 <= strict["kept"] < loose["kept"]
    assert set(strict["C"]) <= set(loose["C"])
    lo = np.maximum(N_range[0], strict["C"] / (6 * D_range[1]))
    hi = np.minimum(N_range[1], strict["C"] / (6 * D_range[0]))
    n_opt = law.N_opt(strict["C"])
    step = np.log(N_range[1] / N_range[0]) / 99  # the grid's own resolution
    assert np.all(np.log(n_opt / lo) > margin - step) and np.all(np.log(hi / n_opt) > margin - step)
    dropped = np.setdiff1d(loose["C"], strict["C"])
    n_drop = law.N_opt(dropped)
    lo_d = np.maximum(N_range[0], dropped / (6 * D_range[1]))
    hi_d = np.minimum(N_range[1], dropped / (6 * D_range[0]))
    assert np.all((np.log(n_drop / lo_d) < margin + step) | (np.log(hi_d / n_drop) < margin + step))


def test_a_surrogate_whose_optimum_stays_between_two_sampled_sizes_fails_and_says_why():
    """The demo's law (its Chinchilla fit) on exact data: on budgets that hold the compute-optimal ridge only over a
    short stretch, the kernel surrogate's optimum never crosses a sampled size, and its a would be the smoother's
    interpolation: the method fails and says so. On budgets that hold the ridge it succeeds, near the law's a."""
    from scalingkit.optimal.surrogate import surrogate

    law = Law(E=2.812, A=1.26e4, B=1.27e4, alpha=1.115, beta=0.893)
    N = np.array([17016, 28832, 61680, 106816, 164240.0])
    short = surrogate(Inputs("short", _law_table(law, N, np.geomspace(5e4, 4e5, 4))), [1e12], kind="kernel",
                      grid=60, bootstrap=0)
    assert not short.converged and "the optimum moves" in short.failure, short.failure
    assert "less than one step between sampled sizes (0.23 dex)" in short.failure
    wide = surrogate(Inputs("wide", _law_table(law, N, np.geomspace(2e5, 6.4e6, 6))), [1e12], kind="kernel",
                     grid=60, bootstrap=0)
    assert wide.converged, wide.failure
    assert wide["a"] == pytest.approx(law.beta / (law.alpha + law.beta), abs=0.05)
