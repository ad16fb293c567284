"""`scalingkit optimal --method all` on a cube of 200 runs x 50 points, bootstrap included (issue 4 target: < 60 s).

    .venv/bin/python benchmarks/bench_optimal.py [--keep DIR]

1. The command itself, as a user runs it (a subprocess: start-up, reading, every method with 200 bootstrap
   draws, the 256-wide MLP with up to 5,000 epochs, the kernel surrogate, figures, JSON).
2. The same pipeline in-process twice, as written and with naive pieces swapped in (the baseline): curves read
   run by run, the envelope by a per-point dominance loop, the surrogate minimised one C at a time, and the
   L_opt(C) wild bootstrap refitted one draw at a time (scipy least_squares per draw and per jackknife point)
   instead of the fit package's batched solver. Stage times and the ratio are printed.
"""
import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WIDTHS = (16, 24, 32, 40, 48, 64, 80, 96, 112, 128)
TOKENS = tuple(int(100_000 * 2 ** (0.8 * k)) for k in range(10))  # 1e5 to 5e6
BUDGETS = ["1e12", "1e13"]


# -- the naive pieces --------------------------------------------------------------------------------------------
def naive_curves(sub, n_by_N, flops):
    """Read each finished run's curve with its own .sel (what a first notebook does)."""
    from scalingkit.optimal.inputs import Curves

    rows = []
    for i, n in enumerate(sub["N"].values):
        for d in sub["D"].values:
            for lr in sub["lr"].values:
                for seed in sub["seed"].values:
                    run = sub.sel(N=n, D=d, lr=lr, seed=seed)
                    if run["status"].item() != "done":
                        continue
                    rows.append((float(n_by_N[i]), float(d), float(lr), float(seed), run["tokens"].values,
                                 run["eval_loss"].values, float(run["flops_exact"].values)))
    N, D, lr, seed = (np.array([r[k] for r in rows]) for k in range(4))
    per_token = 6.0 * N if flops == "6nd" else np.array([r[6] for r in rows]) / D
    return Curves(N, D, lr, seed, np.stack([r[4] for r in rows]), np.stack([r[5] for r in rows]), per_token)


def naive_lower_envelope(C, L):
    """Keep a point when no point with no more compute has a lower loss: one pass over the points per point."""
    C, L = np.asarray(C, float).ravel(), np.asarray(L, float).ravel()
    ok = np.flatnonzero(np.isfinite(C) & np.isfinite(L))
    keep = []
    for i in ok:
        c, l = C[ok], L[ok]
        beaten = ((c < C[i]) & (l <= L[i])) | ((c == C[i]) & ((l < L[i]) | ((l == L[i]) & (ok < i))))
        if not beaten.any():
            keep.append(i)
    keep = np.array(keep, dtype=int)
    return keep[np.argsort(C[keep], kind="stable")]


def naive_search(predict, axis, C, other_range, over):
    """Minimise along each C separately: one surrogate call per compute value."""
    from scalingkit.optimal import surrogate

    parts = [surrogate._vectorised_search(predict, axis, C[i:i + 1], other_range, over) for i in range(len(C))]
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))


def naive_refit_rows(Y, curve, u, p0, delta):
    from scalingkit.fit.curve1d import _solve

    out = np.full((len(Y), len(p0)), np.nan)
    for i, y in enumerate(Y):
        res = _solve(curve, u, y, p0, delta)
        if res.status > 0:
            out[i] = res.x
    return out


def naive_jackknife(curve, u, y, p0, delta):
    from scalingkit.fit.curve1d import _solve

    out = np.full((len(y), len(p0)), np.nan)
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        res = _solve(curve, u[keep], y[keep], p0, delta)
        if res.status > 0:
            out[i] = res.x
    return out


@contextlib.contextmanager
def naive():
    from scalingkit.fit import curve1d
    from scalingkit.optimal import envelope, inputs, surrogate

    saved = [(inputs, "_curves", inputs._curves), (envelope, "lower_envelope", envelope.lower_envelope),
             (surrogate, "_search", surrogate._search), (curve1d, "refit_rows", curve1d.refit_rows),
             (curve1d, "jackknife", curve1d.jackknife)]
    surrogate._vectorised_search = surrogate._search
    inputs._curves = naive_curves
    envelope.lower_envelope = naive_lower_envelope
    surrogate._search = naive_search
    curve1d.refit_rows = naive_refit_rows
    curve1d.jackknife = naive_jackknife
    try:
        yield
    finally:
        for module, name, fn in saved:
            setattr(module, name, fn)


# -- timing ---------------------------------------------------------------------------------------------------------
def timed_pipeline(cube, out_dir):
    """Read, every method (each timed), figures; returns (stage -> seconds, report)."""
    from scalingkit.optimal import from_cube, run_methods
    from scalingkit.optimal.pipeline import DEFAULTS
    from scalingkit.optimal.result import OptimalReport
    from scalingkit.plots.optimal import plot_report

    times = {}
    t = time.perf_counter()
    (inputs,) = from_cube(cube)
    times["read"] = time.perf_counter() - t
    results = []
    for method in ("envelope", "isoflop", "parametric", "surrogate"):
        t = time.perf_counter()
        results += run_methods(inputs, [method], budgets=[float(b) for b in BUDGETS]).results
        times[method] = time.perf_counter() - t
    t = time.perf_counter()
    report = OptimalReport(inputs.label, results, settings={**DEFAULTS, "budgets": [float(b) for b in BUDGETS]})
    plot_report(report, inputs, out_dir)
    times["figures"] = time.perf_counter() - t
    return times, report


def warm_up():
    """Import the heavy modules first, so that no stage is charged for them."""
    import matplotlib.pyplot  # noqa: F401
    import scipy.optimize  # noqa: F401
    import statsmodels.api  # noqa: F401
    import torch  # noqa: F401
    import xarray  # noqa: F401


def pieces(cube):
    """The swapped pieces alone: the envelope of 10,000 points, and the 200-draw L_opt bootstrap on it."""
    from scalingkit.optimal import envelope, from_cube
    from scalingkit.optimal.laws import fit_gamma

    (inputs,) = from_cube(cube)
    C, L = inputs.curves.compute, inputs.curves.loss
    t = time.perf_counter()
    idx = envelope.lower_envelope(C, L)
    out = {"  of which: envelope of 10,000 points": time.perf_counter() - t}
    t = time.perf_counter()
    fit_gamma(C.ravel()[idx], L.ravel()[idx], bootstrap=200, seed=0, confidence=0.95)
    out["  of which: L_opt fit, 200 draws"] = time.perf_counter() - t
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", default=None, help="build the cube here and keep it (default: a temporary directory)")
    args = ap.parse_args()
    from scalingkit.run.synthetic import chinchilla_cube

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_optimal_"))
    cube = tmp / "store" / "cube.zarr"
    if not cube.exists():
        t = time.perf_counter()
        _, law = chinchilla_cube(cube, widths=WIDTHS, tokens=TOKENS, points=50)
        print(f"built the cube: 200 runs x 50 points in {time.perf_counter() - t:.1f} s "
              f"(truth a = {law.a:.3f}, gamma = {law.gamma:.4f})")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")

    cmd = [sys.executable, "-m", "scalingkit.cli.main", "optimal", "--method", "all", "--store", str(cube),
           "--out", str(tmp / "cli")] + [x for b in BUDGETS for x in ("--budget", b)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"the command failed: {proc.stderr}")
    print(f"scalingkit optimal --method all (200 bootstrap draws, MLP 256 wide / up to 5,000 epochs, grid 100, "
          f"figures): {wall:.1f} s [target < 60 s]")
    print("\n".join("  " + line for line in proc.stdout.splitlines()[:9]))

    warm_up()
    fast, report = timed_pipeline(cube, tmp / "fast")
    fast.update(pieces(cube))
    with naive():
        slow, naive_report = timed_pipeline(cube, tmp / "naive")
        slow.update(pieces(cube))
    for r, q in zip(report.results, naive_report.results):  # the baseline computes the same numbers
        assert np.isclose(r.params.get("a", 0), q.params.get("a", 0), rtol=1e-6, equal_nan=True), r.method
    print(f"\nin-process, stage by stage (seconds): {'as written':>12} {'naive':>10} {'ratio':>8}")
    for stage in fast:
        print(f"  {stage:<36} {fast[stage]:>12.2f} {slow[stage]:>10.2f} {slow[stage] / fast[stage]:>8.1f}")
    total_fast = sum(v for k, v in fast.items() if not k.startswith("  "))
    total_slow = sum(v for k, v in slow.items() if not k.startswith("  "))
    print(f"  {'total':<36} {total_fast:>12.2f} {total_slow:>10.2f} {total_slow / total_fast:>8.1f}")


if __name__ == "__main__":
    main()
