"""4,000 wild-bootstrap refits of a 1-d power-law fit of 10 points (issue 3 target: < 30 s).

    .venv/bin/python benchmarks/bench_fit_wild.py
"""
import time

import numpy as np

from scalingkit.fit import PowerLaw
from scalingkit.fit.curve1d import multistart, refit_rows
from scalingkit.fit.huber import mad_delta
from scalingkit.fit.powerlaw import CURVE


def main():
    rng = np.random.default_rng(0)
    x = np.geomspace(1e6, 1e9, 10)
    y = 2.0 + 300.0 * x**-0.3 + rng.normal(0, 0.02, 10)
    PowerLaw(bootstrap=100).fit(x, y)  # warm-up
    t = time.perf_counter()
    res = PowerLaw(bootstrap=4000, seed=1).fit(x, y)
    total = time.perf_counter() - t
    print(f"PowerLaw(bootstrap=4000).fit on 10 points (40 starts, 4,000 refits, jackknife, window report, "
          f"exponential alternative): {total:.3f} s [target < 30 s]")
    print("  alpha", round(res.params["alpha"], 4), "BCa 95%", tuple(round(v, 4) for v in res.intervals["alpha"]))

    u = x / np.median(x)
    delta = mad_delta(y)
    best, _ = multistart(CURVE, u, y, delta)
    Y = CURVE.f(best.x, u) + rng.choice([-1.0, 1.0], size=(4000, 10)) * (y - CURVE.f(best.x, u))
    t = time.perf_counter()
    draws = refit_rows(Y, CURVE, u, best.x, delta)
    refits = time.perf_counter() - t
    print(f"  the 4,000 refits alone: {refits:.3f} s ({refits / 4000 * 1e6:.0f} us each), "
          f"failed: {int(np.isnan(draws).any(axis=1).sum())}")


if __name__ == "__main__":
    main()
