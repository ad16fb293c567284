"""Chinchilla with a known loss floor: E >= floor in the fit and in every refit, or E fixed at the floor."""
import numpy as np
import pytest

from scalingkit.errors import UserError
from scalingkit.fit import Chinchilla, bootstrap as bs, logfit
from scalingkit.fit.form2d import bootstrap_refits

TRUTH = {"E": 1.7, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.37}


def synthetic(seed=0, sigma=0.005, nN=10, nD=8):
    """The known law on a grid of N and D, times small multiplicative noise."""
    rng = np.random.default_rng(seed)
    N = np.repeat(np.geomspace(1e6, 1e11, nN), nD)
    D = np.tile(np.geomspace(1e8, 1e13, nD), nN)
    L = (TRUTH["E"] + TRUTH["A"] * N ** -TRUTH["alpha"] + TRUTH["B"] * D ** -TRUTH["beta"])
    return N, D, L * np.exp(rng.normal(0, sigma, len(N)))


def test_a_floor_below_the_true_offset_changes_nothing():
    N, D, L = synthetic()
    free = Chinchilla(workers=1).fit(N, D, L)
    low = Chinchilla(workers=1, floor=1.5).fit(N, D, L)
    assert free.converged and low.converged
    assert low.params["E"] == pytest.approx(TRUTH["E"], abs=0.02)
    assert low.params == pytest.approx(free.params, rel=1e-6)
    assert "at_bound" not in low.diagnostics and "notes" not in low.diagnostics
    assert low.diagnostics["loss_floor"] == 1.5 and low.diagnostics["offset"] == "bounded by the floor"
    settings = low.provenance["settings"]
    assert settings["floor"] == 1.5 and settings["offset"] == "free"
    assert Chinchilla(floor=1.5).get_settings()["floor"] == 1.5
    assert Chinchilla().get_settings()["floor"] is None  # today's behaviour: E >= 0 only


def test_a_floor_above_the_true_offset_holds_E_there_and_says_so():
    N, D, L = synthetic()
    res = Chinchilla(workers=1, floor=1.9).fit(N, D, L)
    assert res.converged, res.failure
    assert res.params["E"] == pytest.approx(1.9, rel=1e-9) and res.params["E"] >= 1.9
    assert res.diagnostics["at_bound"] == ["E"]
    assert any("reached the loss floor" in note for note in res.diagnostics["notes"])
    assert "note: E reached the loss floor" in res.table()
    # the constrained optimum is a real one: no point with E >= floor near it does better
    free = Chinchilla(workers=1).fit(N, D, L)
    assert res.objective > free.objective


def test_notes_are_appended_to_an_existing_list():
    N, D, L = synthetic()

    class Noted(Chinchilla):
        def _bootstrap(self, result, data, s, starts):
            result.diagnostics["notes"] = ["an earlier note"]

    res = Noted(workers=1, floor=1.9, bootstrap=10).fit(N, D, L)
    assert res.diagnostics["notes"][0] == "an earlier note" and len(res.diagnostics["notes"]) == 2


def test_offset_fixed_at_the_true_floor():
    N, D, L = synthetic(1)
    res = Chinchilla(workers=1, floor=TRUTH["E"], offset="floor", bootstrap=100, seed=0).fit(N, D, L)
    assert res.converged, res.failure
    assert res.params["E"] == TRUTH["E"]  # exactly, not exp(log(floor))
    assert res.intervals["E"] == (TRUTH["E"], TRUTH["E"])
    assert res.diagnostics["se_E"] < 1e-12 * TRUTH["E"]  # every draw is the floor (np.std rounds to ~1e-16)
    assert res.diagnostics["fixed"] == ["E"] and res.diagnostics["offset"] == "fixed at the floor"
    assert "at_bound" not in res.diagnostics
    for name in ("A", "B", "alpha", "beta"):
        lo, hi = res.intervals[name]
        assert lo < TRUTH[name] < hi, (name, lo, hi)
    assert set(res.derived) >= {"a", "b", "G", "N_opt"}


def test_offset_floor_needs_a_floor_and_bad_settings_are_one_line_errors():
    with pytest.raises(UserError, match="offset='floor'.*needs"):
        Chinchilla(offset="floor")
    with pytest.raises(UserError, match="offset must be one of free, floor"):
        Chinchilla(floor=1.0, offset="fixed")
    for bad in (-1.0, 0.0, float("nan"), float("inf"), "low"):
        with pytest.raises(UserError, match="floor must be"):
            Chinchilla(floor=bad)
    with pytest.raises(UserError, match="bootstrap_solver must be one of newton, lbfgs"):
        Chinchilla(bootstrap_solver="bfgs")


@pytest.mark.parametrize("solver", ["newton", "lbfgs"])
def test_bootstrap_and_jackknife_refits_never_go_below_the_floor(solver):
    N, D, L = synthetic(2, sigma=0.01, nN=8, nD=6)
    floor = 1.72  # just above the true E: many draws want E below it
    est = Chinchilla(workers=1, floor=floor)
    res = est.fit(N, D, L)
    counts = np.stack([np.bincount(ix, minlength=len(L)) for ix in bs.resample_indices(0, 150, len(L))])
    settings = {**est.settings, "budget": 1e21, "bootstrap_solver": solver}
    draws, jack, _ = bootstrap_refits(est.form, logfit.LogData.of(N, D, L), settings,
                                      est.form.from_public(res.params)[None, :], counts)
    E = np.concatenate([draws[:, 0], jack[:, 0]])
    assert np.all(np.isfinite(E))
    assert np.all(E >= floor)
    assert np.sum(E == floor) > 10  # the bound was active, not merely unneeded
    boot = Chinchilla(workers=1, floor=floor, bootstrap=150, seed=0, bootstrap_solver=solver).fit(N, D, L)
    assert boot.intervals["E"][0] >= floor
    assert boot.diagnostics["bootstrap_E_at_floor"] == int(np.sum(draws[:, 0] <= floor * (1 + 1e-6)))
