"""Generic bootstrap pieces: BCa against scipy's implementation, percentile intervals, Rademacher signs."""
import numpy as np
import pytest
from scipy import stats

from scalingkit.fit import bootstrap as bs


def test_wild_signs_are_rademacher_and_seeded():
    s = bs.wild_signs(3, 2000, 10)
    assert s.shape == (2000, 10)
    assert set(np.unique(s)) == {-1.0, 1.0}
    assert abs(s.mean()) < 0.03
    assert np.array_equal(s, bs.wild_signs(3, 2000, 10))
    assert not np.array_equal(s, bs.wild_signs(4, 2000, 10))


def test_bca_matches_scipy_on_a_skewed_statistic():
    # The variance of an exponential sample is skewed: bias and acceleration both matter.
    rng = np.random.default_rng(0)
    x = rng.exponential(size=40)
    B = 20000
    idx = bs.resample_indices(1, B, len(x))
    draws = x[idx].var(axis=1, ddof=1)
    jack = np.array([np.delete(x, i).var(ddof=1) for i in range(len(x))])
    lo, hi = bs.bca_interval(x.var(ddof=1), draws, jack, alpha=0.05)
    ref = stats.bootstrap((x,), lambda a: a.var(ddof=1), n_resamples=B, method="BCa",
                          random_state=2).confidence_interval
    width = ref.high - ref.low
    assert abs(lo - ref.low) < 0.05 * width and abs(hi - ref.high) < 0.05 * width
    # BCa moves away from the percentile interval on this statistic (both ends shift the same way)
    plo, phi = bs.percentile_interval(draws)
    assert lo > plo and hi > phi


def test_bca_with_no_bias_and_no_skew_is_the_percentile_interval():
    rng = np.random.default_rng(1)
    draws = rng.normal(size=100001)
    draws -= np.median(draws)  # exactly half below the estimate 0: z0 = 0
    jack = np.r_[-1.0, 0.0, 1.0]  # symmetric: acceleration 0
    assert bs.bca_interval(0.0, draws, jack) == pytest.approx(bs.percentile_interval(draws), abs=1e-9)
    assert bs.percentile_interval(draws) == pytest.approx(stats.norm.ppf([0.025, 0.975]), abs=0.02)


def test_columns_and_non_finite_draws():
    rng = np.random.default_rng(2)
    draws = np.column_stack([rng.normal(0, 1, 5000), rng.normal(10, 2, 5000)])
    draws[:7, 0] = np.nan  # failed refits are ignored, not propagated
    lo, hi = bs.bca_interval(np.array([0.0, 10.0]), draws, rng.normal(size=(20, 2)))
    assert lo.shape == (2,) and np.all(np.isfinite(lo)) and np.all(hi > lo)
    assert hi[1] - lo[1] == pytest.approx(2 * (hi[0] - lo[0]), rel=0.1)


def test_standard_error_of_draws_beyond_float_range_is_inf_without_a_warning():
    import warnings

    from scalingkit.fit.bootstrap import standard_error

    draws = np.array([[1e200, 1.0], [-1e200, 2.0], [3e199, 1.5], [1e308, 1.0]])  # an unidentified amplitude beside a sane one
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        se = standard_error(draws)
    assert np.isinf(se[0]) and se[1] == pytest.approx(np.std([1.0, 2.0, 1.5, 1.0], ddof=1))
