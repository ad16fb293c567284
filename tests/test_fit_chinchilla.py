"""Chinchilla 2-d form: the Epoch replication, the Hoffmann-start trap, recovery, failures, bootstrap over runs."""
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize, special

from scalingkit.errors import UserError
from scalingkit.fit import Chinchilla, read_csv_table
from scalingkit.fit.chinchilla import EPOCH_2024, HOFFMANN_2022, from_public, logpred

EPOCH_CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chinchilla_epoch.csv"
needs_epoch = pytest.mark.skipif(not EPOCH_CSV.is_file(), reason=f"reference table {EPOCH_CSV} is absent")


def epoch_table():
    df = read_csv_table(EPOCH_CSV, n_col="Model Size", c_col="Training FLOP", loss_col="loss", drop_top=5)
    return df["N"].to_numpy(), df["D"].to_numpy(), df["loss"].to_numpy()


def assert_close_to_epoch(p):
    assert abs(p["alpha"] - EPOCH_2024["alpha"]) < 0.003
    assert abs(p["beta"] - EPOCH_2024["beta"]) < 0.005
    assert abs(p["E"] - EPOCH_2024["E"]) < 0.005
    assert p["A"] == pytest.approx(EPOCH_2024["A"], rel=0.05)
    assert p["B"] == pytest.approx(EPOCH_2024["B"], rel=0.10)


def synthetic(seed=0, sigma=0.01, nN=8, nD=6, top=1e11):
    rng = np.random.default_rng(seed)
    N = np.repeat(np.geomspace(1e6, top, nN), nD)
    D = np.tile(np.geomspace(1e8, 100 * top, nD), nN)
    L = (1.7 + 400.0 * N**-0.34 + 2000.0 * D**-0.37) * np.exp(rng.normal(0, sigma, len(N)))
    return N, D, L


@needs_epoch
def test_epoch_table_fit_matches_the_published_replication():
    N, D, L = epoch_table()
    assert len(L) == 240 and L.max() < 3.447
    res = Chinchilla(workers=1).fit(N, D, L)
    assert res.converged, res.failure
    assert_close_to_epoch(res.params)
    assert res.diagnostics["starts_at_best"] >= 2 and res.diagnostics["rel_grad"] < 1e-6
    # implied compute-optimal exponents a = beta/(alpha+beta), b = alpha/(alpha+beta)
    p = res.params
    assert res.derived["a"] == pytest.approx(p["beta"] / (p["alpha"] + p["beta"]))
    assert res.derived["a"] + res.derived["b"] == pytest.approx(1.0)


@needs_epoch
def test_hoffmann_start_trap():
    N, D, L = epoch_table()
    lN, lD, lL = np.log(N), np.log(D), np.log(L)
    start = from_public(HOFFMANN_2022)

    # The trap: a mean-reduced Huber objective with L-BFGS-B's default tolerances stops next to the start.
    def mean_huber(theta):
        return np.mean(special.huber(1e-3, logpred(theta, lN, lD, grad=False)[0] - lL))

    naive = optimize.minimize(mean_huber, start, method="L-BFGS-B")
    assert abs(naive.x[3] - HOFFMANN_2022["alpha"]) < 0.01 and abs(naive.x[4] - HOFFMANN_2022["beta"]) < 0.01

    # Ours, started at the very same point, reaches the better optimum.
    res = Chinchilla(starts=[HOFFMANN_2022]).fit(N, D, L)
    assert res.converged, res.failure
    assert_close_to_epoch(res.params)
    assert res.objective < mean_huber(naive.x) * len(L) * 0.9


@needs_epoch
def test_cross_check_over_hoffmann_grid_agrees_with_varpro():
    N, D, L = epoch_table()
    res = Chinchilla(crosscheck=60, workers=1).fit(N, D, L)  # 60 of the 4,500 starts, evenly spread
    assert res.converged, res.failure
    assert res.diagnostics["crosscheck_starts"] == 60
    assert res.diagnostics["crosscheck_max_rel_diff"] < 1e-3
    assert res.diagnostics["crosscheck_objective"] == pytest.approx(res.objective, rel=1e-6)


@needs_epoch
def test_epoch_bootstrap_standard_errors_are_close_to_epochs():
    N, D, L = epoch_table()
    res = Chinchilla(bootstrap=200, seed=3).fit(N, D, L)
    epoch_se = {"E": 0.03, "A": 125.0, "B": 1290.0, "alpha": 0.015, "beta": 0.021}
    for name, se in epoch_se.items():
        assert res.diagnostics[f"se_{name}"] == pytest.approx(se, rel=0.4), name
        lo, hi = res.intervals[name]
        assert lo < res.params[name] < hi


def test_recovers_known_parameters_exactly_without_noise():
    res = Chinchilla(workers=1).fit(*synthetic(0, sigma=0.0))
    assert res.converged
    assert res.params == pytest.approx({"E": 1.7, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.37}, rel=1e-4)


def test_recovers_known_parameters_from_noisy_synthetic_data():
    N, D, L = synthetic(0, sigma=0.005, nN=10, nD=8)
    res = Chinchilla(workers=1, bootstrap=100, seed=0).fit(N, D, L)
    assert res.converged
    truth = {"E": 1.7, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.37}
    assert res.params["alpha"] == pytest.approx(0.34, abs=0.02)
    assert res.params["beta"] == pytest.approx(0.37, abs=0.02)
    assert res.params["E"] == pytest.approx(1.7, abs=0.02)
    for name, value in truth.items():
        lo, hi = res.intervals[name]
        assert lo < value < hi, (name, lo, value, hi)
    true_loss = 1.7 + 400.0 * N**-0.34 + 2000.0 * D**-0.37
    assert np.max(np.abs(np.log(res.predict(N, D) / true_loss))) < 0.005


def test_derived_allocation_is_the_minimum_along_the_compute_budget():
    res = Chinchilla(workers=1, budget=1e21).fit(*synthetic(1))
    C = 1e21
    n_grid = np.geomspace(1e6, 1e13, 200001)
    n_best = n_grid[np.argmin(res.predict(n_grid, C / (6 * n_grid)))]
    assert res.derived["N_opt"] == pytest.approx(n_best, rel=1e-3)
    assert res.derived["tokens_per_param"] == pytest.approx(C / (6 * n_best) / n_best, rel=3e-3)


def test_failed_fit_is_reported_as_failed_not_printed():
    N, D, L = synthetic(2)
    res = Chinchilla(starts=[HOFFMANN_2022], maxiter=2).fit(N, D, L)  # stopped far too early
    assert not res.converged
    assert "gradient" in res.failure
    text = res.table()
    assert "FAILED" in text and f"{res.params['alpha']:.6g}" not in text
    with pytest.raises(UserError, match="failed"):
        res.predict(N, D)


def test_bootstrap_over_runs_is_seeded_and_independent_of_the_number_of_workers():
    N, D, L = synthetic(3, nN=6, nD=5)
    one = Chinchilla(bootstrap=120, seed=7, workers=1).fit(N, D, L)
    two = Chinchilla(bootstrap=120, seed=7, workers=2).fit(N, D, L)
    other = Chinchilla(bootstrap=120, seed=8, workers=1).fit(N, D, L)
    assert one.intervals == two.intervals
    assert one.intervals != other.intervals
    for name in ("E", "A", "B", "alpha", "beta", "a", "b", "G", "tokens_per_param"):
        lo, hi = one.intervals[name]
        assert lo <= one[name] <= hi, name
        assert name in one.diagnostics["intervals_percentile"]
    pct = Chinchilla(bootstrap=120, seed=7, workers=1, interval="percentile").fit(N, D, L)
    assert pct.intervals == one.diagnostics["intervals_percentile"]


def test_too_few_points_and_bad_values():
    N, D, L = synthetic(4)
    with pytest.raises(UserError, match="at least 6 points"):
        Chinchilla().fit(N[:5], D[:5], L[:5])
    with pytest.raises(UserError, match="positive"):
        Chinchilla().fit(N, D, np.r_[0.0, L[1:]])
    with pytest.raises(UserError, match="solver must be one of varpro, lbfgs"):
        Chinchilla(solver="newton")
    with pytest.raises(UserError, match="bootstrap must be >= 0"):
        Chinchilla(bootstrap=-1)


def test_a_wild_fit_predicts_inf_or_nan_without_a_warning():
    """A form comparison's split or a bootstrap draw can land on a law that overflows away from its data: its
    prediction is non-finite (callers read that as no prediction) and nothing is printed."""
    import warnings

    from scalingkit.fit.base import FitResult

    wild = FitResult("chinchilla", {"E": 1.5, "A": 0.0, "B": 2.0, "alpha": -900.0, "beta": 0.3})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = wild.predict(np.array([1e5, 1e6]), np.array([1e6, 1e7]))
    assert not np.isfinite(y).any()


def test_an_offset_on_its_bound_zero_is_said_to_be_unidentified():
    """No floor known: E is bounded by 0. Runs whose loss is a pure sum of power laws put E there, and the fit says
    the offset is not identified; the same runs 1.7 nats higher give an E that is an estimate, with no such note."""
    N, D, L = synthetic(0, sigma=0.0)
    with_offset = Chinchilla(workers=1).fit(N, D, L)
    without = Chinchilla(workers=1).fit(N, D, L - 1.7)
    assert with_offset.params["E"] == pytest.approx(1.7, rel=1e-3)
    assert "E" not in with_offset.diagnostics.get("at_bound", [])
    assert not any("lower bound 0" in n for n in with_offset.diagnostics.get("notes", []))
    assert without.params["E"] < 1e-6
    assert "E" in without.diagnostics["at_bound"]
    assert any(n.startswith("E reached its lower bound 0") for n in without.diagnostics["notes"])
