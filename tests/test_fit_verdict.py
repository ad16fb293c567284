"""The per-slice verdict (power law, exponential, transient, inconclusive): right on synthetic slices that look like
the cube's, the transient flag on a plateau escape and not on a power law, and the rule as documented."""
from collections import Counter

import numpy as np
import pytest

from scalingkit.errors import UserError
from scalingkit.fit import PowerLaw
from scalingkit.fit.curve1d import multistart
from scalingkit.fit.manyfits import multistart_rows
from scalingkit.fit.powerlaw import CURVE
from scalingkit.fit.verdict import assess_many, decide, transient, window_check

FLOOR = 2.525  # the demo cube's er256 entropy rate, rounded
# Noise like the cube's: exact-loss standard errors are 1e-5 to 6e-5 nats, sampled ones 5e-4 to 8e-4 nats at losses
# of 2.5 to 5; taken larger here: 1e-4 of the loss (exact) and 1e-3 nats (sampled).
NOISE = {"exact": lambda Y: 1e-4 * Y, "sampled": lambda Y: np.full_like(Y, 1e-3)}


def grid(n, x1=4e4):
    return x1 * 2.0 ** np.arange(n)  # factor-2 spacing, as the cube's token budgets


def offsets(rng, size, floor):
    # no floor: offsets 1 to 4; with a floor: on it (data-limited) or up to 0.5 above it (capacity-limited), half each
    if floor is None:
        return rng.uniform(1, 4, size)
    return floor + rng.uniform(0, 0.5, size) * (rng.random(size) < 0.5)


def drops(rng, size):
    return np.exp(rng.uniform(np.log(0.05), 0.0, size))  # the curve falls by 0.05 to 1 nats over the range


def power_slices(rng, size, n, noise, floor=None):
    x = grid(n)
    t = x / x[0]
    E, alpha, drop = offsets(rng, size, floor), rng.uniform(0.2, 1.5, size), drops(rng, size)
    Y = E[:, None] + (drop / (1 - t[-1] ** -alpha))[:, None] * t ** -alpha[:, None]
    return x, Y + rng.normal(size=Y.shape) * noise(Y)


def exponential_slices(rng, size, n, noise, floor=None):
    x = grid(n)
    t = x / x[0]
    a, cx1, drop = offsets(rng, size, floor), np.exp(rng.uniform(np.log(0.05), 0.0, size)), drops(rng, size)
    # c x1 from 0.05 to 1: the decay happens inside the sampled range (c x_n from 0.8 to 128 with 5 to 8 points)
    Y = a[:, None] + (drop / (np.exp(-cx1) - np.exp(-cx1 * t[-1])))[:, None] * np.exp(-cx1[:, None] * t)
    return x, Y + rng.normal(size=Y.shape) * noise(Y)


def sigmoid_slices(rng, size, n, noise):
    """Escape from a plateau: a logistic in log2 x (width 0.4 to 1.2 doublings, height 0.3 to 2.5 nats), its
    steepest point at least 1.5 doublings after the first x and one before the last (the runs sample the escape)."""
    x = grid(n)
    t = np.log2(x / x[0])
    E, h, w, m = (rng.uniform(1, 4, size), rng.uniform(0.3, 2.5, size), rng.uniform(0.4, 1.2, size),
                  rng.uniform(1.5, t[-1] - 1.0, size))
    Y = E[:, None] + h[:, None] / (1 + np.exp((t - m[:, None]) / w[:, None]))
    return x, Y + rng.normal(size=Y.shape) * noise(Y)


def verdicts(make, noise, seed, floor=None, offset="free", total=100):
    """Verdicts of `total` slices with 5 to 8 points (a quarter each), judged in batches that share x."""
    rng = np.random.default_rng(seed)
    out = []
    for n in (5, 6, 7, 8):
        x, Y = make(rng, total // 4, n, NOISE[noise], floor)
        out += [v["verdict"] for v in assess_many(x, Y, floor=floor, offset=offset)]
    return Counter(out)


@pytest.mark.parametrize("noise", ["exact", "sampled"])
def test_verdict_is_right_on_95_percent_of_synthetic_power_laws_and_exponentials(noise):
    rates = {}
    for name, make, want, seed in (("power", power_slices, "power law", 1), ("exp", exponential_slices,
                                                                            "exponential", 2)):
        for label, floor in (("free", None), ("floor-bounded", FLOOR)):
            counts = verdicts(make, noise, seed, floor=floor)
            rates[name, label] = counts[want] / sum(counts.values())
            print(f"\n{noise} noise, {name} slices, offset {label}: right {rates[name, label]:.2f} {dict(counts)}")
    assert min(rates.values()) >= 0.95, rates


def test_batched_fits_of_many_slices_agree_with_the_polished_single_fit():
    rng = np.random.default_rng(3)
    x, Y = power_slices(rng, 6, 6, NOISE["sampled"])
    u = x / np.median(x)
    # multistart_rows fits rows scaled to delta = 1 (as assess_many does); the single fit takes that delta too
    P = multistart_rows(CURVE, u, Y / 0.01, 40)
    for y, p in zip(Y, P):
        best, _ = multistart(CURVE, u, y / 0.01, 1.0)
        assert p == pytest.approx(best.x, rel=1e-5, abs=1e-8)


def test_the_verdict_of_a_fit_is_the_verdict_of_the_batch():
    rng = np.random.default_rng(4)
    x, Y = power_slices(rng, 3, 6, NOISE["sampled"], floor=FLOOR)
    x2, Y2 = exponential_slices(rng, 3, 6, NOISE["sampled"], floor=FLOOR)
    Y = np.r_[Y, Y2]
    batch = assess_many(x, Y, floor=FLOOR)
    for y, b in zip(Y, batch):
        v = PowerLaw(bootstrap=0, floor=FLOOR).fit(x, y).diagnostics["verdict"]
        assert v["verdict"] == b["verdict"]
        assert v["cv_ratio_power_vs_exp"] == pytest.approx(b["cv_ratio_power_vs_exp"], rel=1e-3)
        assert v["delta_aicc_exp_minus_power"] == pytest.approx(b["delta_aicc_exp_minus_power"], rel=1e-3, abs=1e-3)
    assert {b["verdict"] for b in batch} == {"power law", "exponential"}


@pytest.mark.parametrize("noise", ["exact", "sampled"])
def test_transient_flag_fires_on_a_plateau_escape_and_not_on_a_power_law(noise):
    rng = np.random.default_rng(5)
    fired = {"sigmoid": [], "power": [], "power, noise from residuals": []}
    for n in (5, 6, 7, 8):
        x, S = sigmoid_slices(rng, 100, n, NOISE[noise])
        fired["sigmoid"] += [transient(x, y, se=NOISE[noise](y))["fired"] for y in S]
        x, P = power_slices(rng, 100, n, NOISE[noise])
        fired["power"] += [transient(x, y, se=NOISE[noise](y))["fired"] for y in P]
        fired["power, noise from residuals"] += [v["transient"] for v in assess_many(x, P[:25])]
    rates = {k: float(np.mean(v)) for k, v in fired.items()}
    print(f"\n{noise} noise, transient flag rates over {len(fired['sigmoid'])} slices of each kind: {rates}")
    assert rates["sigmoid"] >= 0.95
    assert rates["power"] <= 0.01 and rates["power, noise from residuals"] <= 0.02


def test_the_demo_drops_per_doubling_are_a_transient():
    # L(D) at N = 20088 of the demo cube: drops per doubling 0.42, 0.58, 0.71, then 0.39
    D = 4e4 * 2.0 ** np.arange(5)
    loss = np.array([4.722833, 4.307196, 3.725989, 3.017467, 2.623022])
    t = transient(D, loss, se=8e-4)
    assert t["fired"] and t["drops_per_doubling"] == pytest.approx([0.4156, 0.5812, 0.7085, 0.3944], abs=1e-4)
    assert t["where"] == [4e4, 1.6e5]
    # the same points read as a power law (drops shrinking geometrically) do not fire
    assert not transient(D, 2.5 + 2.0 * (D / D[0]) ** -0.5, se=8e-4)["fired"]


def test_decision_rule():
    assert decide(0.2, 5.0, False) == "power law"
    assert decide(0.2, 5.0, True) == "transient"  # the drops grow: not a scaling tail, whatever the fits say
    assert decide(5.0, -5.0, True) == "exponential"  # an exponential's drops grow too, before c x ~ 1
    assert decide(0.2, 1.0, False) == "inconclusive"  # the IC prefers the power law by less than the margin
    assert decide(0.7, 5.0, False) == "inconclusive"  # cross-validation prefers it by less than 2x
    assert decide(0.2, -5.0, False) == "inconclusive"  # the criteria disagree
    assert decide(float("nan"), 5.0, False) == "inconclusive"


def test_window_shift_is_set_beside_the_interval():
    assert window_check({"max_shift": 0.3}, (0.2, 0.6)) == {
        "window_max_shift": 0.3, "interval_half_width": pytest.approx(0.2), "window_exceeds_interval": True}
    assert window_check({"max_shift": 0.1}, (0.2, 0.6))["window_exceeds_interval"] is False
    assert window_check({"max_shift": 0.1}, None) == {"window_max_shift": 0.1}
    assert window_check({}, (0.2, 0.6)) == {}


def test_bad_input():
    x = grid(5)
    with pytest.raises(UserError, match="needs a loss floor"):
        assess_many(x, np.ones((1, 5)), offset="floor")
    with pytest.raises(UserError, match="offset must be one of"):
        assess_many(x, np.ones((1, 5)), offset="fixed")
    with pytest.raises(UserError, match="at least 4 points"):
        assess_many(x[:3], np.ones((1, 3)))
