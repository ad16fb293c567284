"""1-d forms: recovery from noisy synthetic data, the batched solver against scipy, the wild-bootstrap coverage."""
import numpy as np
import pandas as pd
import pytest
from scipy.optimize import least_squares

from scalingkit.errors import UserError
from scalingkit.fit import Exponential, PowerLaw
from scalingkit.fit.curve1d import jackknife, multistart, refit_rows
from scalingkit.fit.huber import mad_delta
from scalingkit.fit.powerlaw import CURVE

X = np.geomspace(1e6, 1e9, 10)


def noisy_power(seed, E=2.0, A=300.0, alpha=0.3, sigma=0.02, x=X):
    rng = np.random.default_rng(seed)
    return E + A * x**-alpha + rng.normal(0, sigma, len(x))


def test_power_law_recovers_known_parameters_within_its_intervals():
    y = noisy_power(0, sigma=0.01)
    res = PowerLaw(bootstrap=1000, seed=1).fit(X, y)
    assert res.converged
    for name, true in {"E": 2.0, "A": 300.0, "alpha": 0.3}.items():
        lo, hi = res.intervals[name]
        assert lo < true < hi, (name, lo, true, hi)
    assert res.params["alpha"] == pytest.approx(0.3, abs=0.01)
    assert res.params["E"] == pytest.approx(2.0, abs=0.05)
    assert np.allclose(res.predict(X), 2.0 + 300.0 * X**-0.3, atol=0.02)
    assert "interval_method" in res.diagnostics and "E" in str(res)


def test_exponential_recovers_known_parameters():
    x = np.linspace(1.0, 40.0, 12)
    rng = np.random.default_rng(3)
    y = 1.5 + 2.0 * np.exp(-0.1 * x) + rng.normal(0, 0.005, len(x))
    res = Exponential(bootstrap=500, seed=0).fit(x, y)
    assert res.converged
    assert res.params == pytest.approx({"a": 1.5, "b": 2.0, "c": 0.1}, rel=0.05)
    for name, true in {"a": 1.5, "b": 2.0, "c": 0.1}.items():
        assert res.intervals[name][0] < true < res.intervals[name][1]
    # on exponential data the exponential wins the MSE comparison; on power-law data the power law does
    assert res.diagnostics["mse_ratio_power_vs_exp"] > 1
    assert PowerLaw(bootstrap=0).fit(X, noisy_power(1)).diagnostics["mse_ratio_power_vs_exp"] < 1


def test_batched_refits_agree_with_scipy_least_squares():
    # The bootstrap's vectorised Levenberg-Marquardt must land where scipy's bounded trust region does.
    y = noisy_power(5)
    x0 = np.median(X)
    u = X / x0
    delta = mad_delta(y)
    best, _ = multistart(CURVE, u, y, delta)
    rng = np.random.default_rng(0)
    Y = best.fun + y + rng.normal(0, 0.03, (25, len(y)))  # perturbed responses around the fit
    batched = refit_rows(Y, CURVE, u, best.x, delta)
    for row, p in zip(Y, batched):
        ref = least_squares(lambda q: CURVE.f(q, u) - row, best.x, jac=lambda q: CURVE.jac(q, u),
                            bounds=(CURVE.lower, CURVE.upper), loss="huber", f_scale=delta, xtol=1e-14,
                            ftol=1e-14, gtol=1e-14)
        assert p == pytest.approx(ref.x, rel=1e-5, abs=1e-8)


def test_huber_limits_an_outlier():
    y = noisy_power(7, sigma=0.002)
    y[4] += 1.0  # one gross outlier
    robust = PowerLaw(bootstrap=0, delta=0.01).fit(X, y)
    plain = PowerLaw(bootstrap=0, delta=1e6).fit(X, y)  # delta this large is plain least squares
    assert abs(robust.params["alpha"] - 0.3) < abs(plain.params["alpha"] - 0.3)
    assert robust.params["alpha"] == pytest.approx(0.3, abs=0.02)


def test_window_sensitivity_report():
    res = PowerLaw(bootstrap=0).fit(X, noisy_power(2))
    w = res.diagnostics["window"]
    assert set(w) >= {"drop_smallest", "drop_largest", "drop_both", "max_shift"}
    assert w["parameter"] == "alpha"
    refit = PowerLaw(bootstrap=0).fit(X[1:], noisy_power(2)[1:]).params["alpha"]
    assert w["drop_smallest"] == pytest.approx(refit, rel=1e-6)
    assert w["max_shift"] == pytest.approx(max(abs(w[k] - res.params["alpha"]) for k in
                                               ("drop_smallest", "drop_largest", "drop_both")))


def test_dataframe_input_and_bad_input():
    df = pd.DataFrame({"D": X, "loss": noisy_power(4)})
    res = PowerLaw(bootstrap=0, names=("E", "B", "beta")).fit(df, xcol="D")
    assert set(res.params) == {"E", "B", "beta"}
    with pytest.raises(UserError, match="at least 4 points"):
        PowerLaw().fit(X[:3], noisy_power(4)[:3])
    with pytest.raises(UserError, match="NaN"):
        PowerLaw().fit(X, np.r_[np.nan, noisy_power(4)[1:]])
    with pytest.raises(UserError, match="positive"):
        PowerLaw().fit(-X, noisy_power(4))


def test_wild_bootstrap_bca_interval_covers_the_true_exponent_about_95_percent():
    trials, hits, widths = 200, 0, []
    for t in range(trials):
        y = noisy_power(1000 + t, sigma=0.02)
        res = PowerLaw(bootstrap=400, seed=t, window=False, alternative=False, workers=1).fit(X, y)
        lo, hi = res.intervals["alpha"]
        hits += lo <= 0.3 <= hi
        widths.append(hi - lo)
    coverage = hits / trials
    print(f"\nwild bootstrap BCa 95% coverage of alpha: {coverage:.3f} over {trials} trials "
          f"(10 points, 400 draws; median width {np.median(widths):.4f})")
    assert 0.85 <= coverage <= 0.99


# -- offsets tied to an exact loss floor ------------------------------------------------------------------------
XF = np.geomspace(1.0, 32.0, 6)
FLOOR = 2.0


def below_floor_data(seed=0):
    """Points whose best unconstrained offset lies near 1, below the floor 2 (all points above the floor)."""
    rng = np.random.default_rng(seed)
    return 1.0 + 3.0 * XF**-0.3 + rng.normal(0, 0.002, len(XF))


def test_a_free_offset_never_falls_below_an_exact_floor():
    y = below_floor_data()
    assert PowerLaw(bootstrap=0).fit(XF, y).params["E"] < FLOOR - 0.5  # unconstrained, the fit wants E near 1
    est = PowerLaw(bootstrap=300, seed=1, floor=FLOOR)
    res = est.fit(XF, y)
    assert res.params["E"] == pytest.approx(FLOOR) and res.params["E"] >= FLOOR
    assert res.intervals["E"][0] >= FLOOR  # every bootstrap draw kept the bound
    assert res.diagnostics["at_bound"] == ["E"]
    assert any("ended on its lower bound, the exact loss floor 2" in n for n in res.diagnostics["notes"])
    assert res.diagnostics["offset"] == "bounded by the floor" and res.diagnostics["loss_floor"] == FLOOR
    # the jackknife (BCa acceleration) and the competing exponential keep it too
    curve = est.fit_curve
    u = XF / np.median(XF)
    p = multistart(curve, u, y, mad_delta(y))[0].x
    assert np.all(jackknife(curve, u, y, p, mad_delta(y))[:, 0] >= FLOOR)
    exp = Exponential(bootstrap=0, floor=FLOOR).fit(XF, y)
    assert exp.params["a"] >= FLOOR
    assert res.diagnostics["mse_exponential"] == pytest.approx(exp.diagnostics["mse"], rel=1e-6)
    # the window refits: the floor-bounded exponent without an end point is the bounded refit's
    assert res.diagnostics["window"]["drop_smallest"] == pytest.approx(
        PowerLaw(bootstrap=0, floor=FLOOR).fit(XF[1:], y[1:]).params["alpha"], rel=1e-6)


def test_no_seed_takes_the_offset_below_the_floor():
    for seed in range(10):
        res = PowerLaw(bootstrap=50, seed=seed, floor=FLOOR).fit(XF, below_floor_data(seed))
        assert res.params["E"] >= FLOOR and res.intervals["E"][0] >= FLOOR, seed


def test_a_floor_below_the_offset_changes_nothing():
    y = noisy_power(3, sigma=0.005)
    free = PowerLaw(bootstrap=0).fit(X, y)
    bounded = PowerLaw(bootstrap=0, floor=1.5).fit(X, y)  # true E is 2
    assert bounded.params == pytest.approx(free.params, rel=1e-6)
    assert bounded.diagnostics["at_bound"] == [] and "notes" not in bounded.diagnostics


def test_offset_floor_fixes_the_offset_exactly():
    rng = np.random.default_rng(2)
    y = FLOOR + 3.0 * XF**-0.5 + rng.normal(0, 0.002, len(XF))
    res = PowerLaw(bootstrap=300, seed=0, floor=FLOOR, offset="floor").fit(XF, y)
    assert res.params["E"] == FLOOR and res.intervals["E"] == (FLOOR, FLOOR) and res.diagnostics["se_E"] == 0
    assert res.params["alpha"] == pytest.approx(0.5, abs=0.02)
    assert res.intervals["alpha"][0] < 0.5 < res.intervals["alpha"][1]
    assert res.diagnostics["offset"] == "fixed at the floor" and "E" not in res.diagnostics["at_bound"]
    assert any("fixed at the exact loss floor" in n for n in res.diagnostics["notes"])
    assert np.allclose(res.predict(XF), FLOOR + 3.0 * XF**-0.5, atol=0.005)
    exp = Exponential(bootstrap=0, floor=FLOOR, offset="floor").fit(XF, y)
    assert exp.params["a"] == FLOOR
    assert exp.diagnostics["verdict"]["verdict"] == res.diagnostics["verdict"]["verdict"] == "power law"


def test_offset_settings_are_checked():
    with pytest.raises(UserError, match="needs the loss floor"):
        PowerLaw(offset="floor")
    with pytest.raises(UserError, match="offset must be one of free, floor"):
        PowerLaw(floor=2.0, offset="fixed")
    with pytest.raises(UserError, match="finite number"):
        Exponential(floor=float("nan"))
    with pytest.raises(UserError, match="se must be"):
        PowerLaw(bootstrap=0).fit(X, noisy_power(0), se=[0.01, 0.02])
