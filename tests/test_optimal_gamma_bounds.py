"""gamma's interval from refits over runs: an end that is the fitting bound is reported as open, not as a limit."""
import numpy as np

from scalingkit.fit.powerlaw import GAMMA_BOUNDS
from scalingkit.optimal.laws import laws_from_points, open_gamma_ends


def _points(gamma=0.3):
    C = np.geomspace(1e15, 1e19, 6)
    N = 0.1 * C**0.5
    return C, N, C / (6 * N), 2.0 + 50.0 * C**-gamma


def test_draws_at_the_upper_bound_open_the_interval_above():
    upper = GAMMA_BOUNDS[1]
    draws = np.r_[np.full(10, upper), np.linspace(0.2, 0.6, 90)]  # 10% at the bound: more than alpha/2 = 2.5%
    got = open_gamma_ends(draws, 0.05)
    assert got["gamma_open"] == "above"
    assert f"10 of 100 refits ran to gamma's bound {upper:g}" in got["gamma_note"]


def test_draws_at_the_lower_bound_open_it_below_and_a_few_at_a_bound_do_not():
    assert open_gamma_ends(np.r_[np.zeros(20), np.linspace(0.2, 0.6, 80)], 0.05)["gamma_open"] == "below"
    assert open_gamma_ends(np.r_[np.full(2, GAMMA_BOUNDS[1]), np.linspace(0.2, 0.6, 98), np.nan], 0.05) == {}


def test_laws_from_points_marks_the_open_end_in_the_result_and_the_table():
    from scalingkit.optimal.result import OptimalReport

    C, N, D, L = _points()
    draws = np.r_[np.full(30, GAMMA_BOUNDS[1]), np.linspace(0.25, 0.35, 70)]
    r = laws_from_points("isoflop-akima", C, N, D, L, [1e20], gamma_draws=draws)
    assert abs(r.params["gamma"] - 0.3) < 0.01
    assert r.intervals["gamma"][1] == GAMMA_BOUNDS[1] and r.diagnostics["gamma_open"] == "above"
    assert any("do not bound it above" in n for n in r.diagnostics["notes"])
    table = OptimalReport("g", [r]).table()
    assert f"{GAMMA_BOUNDS[1]:g} (bound)]" in table

    closed = laws_from_points("isoflop-akima", C, N, D, L, [1e20], gamma_draws=np.linspace(0.25, 0.35, 100))
    assert "gamma_open" not in closed.diagnostics and "(bound)" not in OptimalReport("g", [closed]).table()
