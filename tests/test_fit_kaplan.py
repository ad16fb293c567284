"""Kaplan joint form: recovery from noisy synthetic data and its compute-optimal allocation."""
import numpy as np
import pytest

from scalingkit.errors import UserError
from scalingkit.fit import Kaplan
from scalingkit.fit.kaplan import KAPLAN_2020, KaplanForm, logpred

TRUTH = KAPLAN_2020  # Nc 6.4e13, Dc 1.8e13, alpha 0.076, beta 0.103


def synthetic(seed, sigma, nN=8, nD=6):
    rng = np.random.default_rng(seed)
    N = np.repeat(np.geomspace(1e6, 1e10, nN), nD)
    D = np.tile(np.geomspace(1e8, 1e12, nD), nN)
    clean = np.exp(logpred(KaplanForm().from_public(TRUTH), np.log(N), np.log(D), grad=False)[0])
    return N, D, clean * np.exp(rng.normal(0, sigma, len(N)))


def test_recovers_kaplan_parameters_exactly_without_noise():
    res = Kaplan(workers=1).fit(*synthetic(0, 0.0))
    assert res.converged, res.failure
    assert res.params == pytest.approx(TRUTH, rel=1e-4)


def test_recovers_kaplan_parameters_from_noisy_data_within_intervals():
    N, D, L = synthetic(1, 0.005)
    res = Kaplan(workers=1, bootstrap=100, seed=0).fit(N, D, L)
    assert res.converged, res.failure
    assert res.params["alpha"] == pytest.approx(TRUTH["alpha"], rel=0.05)
    assert res.params["beta"] == pytest.approx(TRUTH["beta"], rel=0.1)
    for name in ("alpha", "beta", "Nc", "Dc"):
        lo, hi = res.intervals[name]
        assert lo < TRUTH[name] < hi, (name, lo, hi)
    assert np.allclose(res.predict(N, D), L, rtol=0.03)


def test_kaplan_allocation_is_the_minimum_along_the_budget():
    res = Kaplan(workers=1, budget=1e20).fit(*synthetic(2, 0.002))
    n = np.geomspace(1e4, 1e14, 400001)
    best = n[np.argmin(res.predict(n, 1e20 / (6 * n)))]
    assert res.derived["N_opt"] == pytest.approx(best, rel=1e-3)
    assert res.derived["a"] == pytest.approx(res.params["beta"] / (res.params["alpha"] + res.params["beta"]))


def test_kaplan_needs_five_points():
    N, D, L = synthetic(3, 0.01)
    with pytest.raises(UserError, match="at least 5 points"):
        Kaplan().fit(N[:4], D[:4], L[:4])
