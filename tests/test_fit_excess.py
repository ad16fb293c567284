"""Excess-loss fits: the exponent as the slope of log(L - floor) against log x, where the floor is exact."""
import numpy as np
import pytest

from scalingkit.errors import UserError
from scalingkit.fit import PowerLaw
from scalingkit.fit.excess import fit_excess

FLOOR = 2.525
D = 4e4 * 2.0 ** np.arange(6)


def test_recovers_the_exponent_with_an_interval_that_covers_it():
    hits, trials = 0, 200
    for seed in range(trials):
        rng = np.random.default_rng(seed)
        y = FLOOR + 0.8 * (D / D[0]) ** -0.6 + rng.normal(0, 1e-3, len(D))  # sampled-loss noise, 1e-3 nats
        ex = fit_excess(D, y, FLOOR)
        hits += ex["interval"][0] <= 0.6 <= ex["interval"][1]
    print(f"\nexcess-loss alpha: 95% interval (weighted RLM covariance, t quantile) covered 0.6 in {hits} of {trials}")
    assert 0.92 * trials <= hits <= 0.99 * trials
    assert ex["alpha"] == pytest.approx(0.6, abs=0.03) and ex["n_used"] == 6 and ex["n_below_floor"] == 0
    assert ex["mse_log_power"] < ex["mse_log_exp"]


def test_an_exponential_excess_prefers_the_exponential_line():
    y = FLOOR + 0.8 * np.exp(-D / 3e5)
    ex = fit_excess(D, y, FLOOR)
    assert ex["c"] == pytest.approx(1 / 3e5, rel=1e-6)
    assert ex["mse_log_exp"] < 1e-12 < ex["mse_log_power"]


def test_points_at_or_below_the_floor_are_left_out_and_counted():
    y = FLOOR + 0.8 * (D / D[0]) ** -0.6
    y[-1], y[-2] = FLOOR, FLOOR - 1e-4
    ex = fit_excess(D, y, FLOOR)
    assert ex["n_used"] == 4 and ex["n_below_floor"] == 2
    assert ex["alpha"] == pytest.approx(0.6, rel=1e-9)
    y[:4] = FLOOR - 0.01
    few = fit_excess(D, y, FLOOR)
    assert few["n_used"] == 0 and np.isnan(few["alpha"]) and "needs 3" in few["note"]


def test_a_fit_with_a_floor_carries_its_excess_fit():
    y = FLOOR + 0.8 * (D / D[0]) ** -0.6 + np.random.default_rng(0).normal(0, 1e-3, len(D))
    res = PowerLaw(bootstrap=0, floor=FLOOR).fit(D, y)
    assert res.diagnostics["excess"] == fit_excess(D, y, FLOOR)
    assert "excess" not in PowerLaw(bootstrap=0).fit(D, y).diagnostics


def test_bad_input():
    with pytest.raises(UserError, match="finite number"):
        fit_excess(D, D, float("nan"))
    with pytest.raises(UserError, match="one length"):
        fit_excess(D, D[:3], FLOOR)
