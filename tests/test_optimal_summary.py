"""What `optimal` prints: whether the methods agree on a (or which disagrees, and why), and budgets whose optimum
lies outside the sampled sizes marked as extrapolations."""
import numpy as np

from scalingkit.optimal.pipeline import outside_sampled
from scalingkit.optimal.result import OptimalReport, OptimalResult


def _result(method, a, notes=(), n_opt=1e4):
    return OptimalResult(method, params={"gamma": 0.3, "a": a, "b": 1 - a}, intervals={},
                         budgets=[{"C": 1e12, "values": {"N_opt": n_opt, "D_opt": 1e12 / (6 * n_opt),
                                                         "tokens_per_param": 1e12 / (6 * n_opt**2)},
                                   "intervals": {}}],
                         diagnostics={"n_points": 5, "notes": list(notes)})


def test_methods_within_tolerance_agree_and_an_outlier_is_named_with_its_reason():
    close = OptimalReport("g", [_result("envelope", 0.45), _result("isoflop-parabola", 0.5)])
    assert "agree on a within 0.2 (0.45 to 0.5)" in close.table()
    far = OptimalReport("g", [_result("envelope", 0.45), _result("parametric", 0.5),
                              _result("surrogate-kernel", 0.9, notes=["surrogate train RMSE 0.03",
                                                                      "12 of 100 compute values clipped below"])])
    line = next(line for line in far.table().splitlines() if "disagree" in line)
    assert "surrogate-kernel gives 0.9, the others 0.45 to 0.5" in line and "clipped" in line


def test_an_optimum_outside_the_sampled_sizes_is_marked_as_an_extrapolation():
    inside, outside = _result("envelope", 0.5, n_opt=3e4), _result("parametric", 0.5, n_opt=14.0)
    N, D = np.array([1e4, 1e5]), np.array([1e5, 1e8])
    assert outside_sampled(inside, N, D) == []
    notes = outside_sampled(outside, N, D)
    assert notes and "N_opt = 14 at C = 1e+12 lies outside the sampled range" in notes[0]
    text = OptimalReport("g", [inside, outside]).table(verbose=False)
    marked = [line for line in text.splitlines() if line.strip().startswith("parametric") and "*" in line]
    assert marked and "outside the sampled N or D" in text
    assert not any("*" in line for line in text.splitlines() if line.strip().startswith("envelope"))
