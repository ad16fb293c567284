"""Chinchilla 2-d fit of the 240-point Epoch table: the default solver (full exponent grid + NNLS + L-BFGS-B)
against a plain scipy L-BFGS-B loop over Hoffmann's 4,500 starts; then the bootstrap (4,000 draws + the 240
leave-one-out jackknife fits for BCa) refitted draw by draw with L-BFGS-B (the old path) and all at once by
batched Newton (newton2d), timed in the same run, with the agreement of their draws and of their intervals.

    .venv/bin/python benchmarks/bench_fit_chinchilla.py [--skip-loop] [--draws 4000] [--repeats 2]

Targets (2-core machine): full-grid fit < 2 s (issue 3); 4,000 bootstrap refits + jackknife < 3 s.
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from scalingkit.fit import Chinchilla, read_csv_table
from scalingkit.fit import bootstrap as bs
from scalingkit.fit import logfit
from scalingkit.fit.form2d import BATCH_PER_WORKER, PER_DRAW_PER_WORKER, bootstrap_refits
from scalingkit.fit.parallel import n_workers
from scalingkit.fit.chinchilla import EPOCH_2024, from_public, hoffmann_grid, logpred, to_public
from scalingkit.fit.threads import single_threaded_blas

CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chinchilla_epoch.csv"


def plain_loop(data):
    """What one writes without variable projection: L-BFGS-B from each of the 4,500 starts, one process.

    Same objective, analytic gradient and trap-proof tolerances as the library, so only the strategy differs.
    """
    best = (np.inf, None)
    for start in hoffmann_grid():
        res = minimize(logfit.scaled_value_and_grad, start, args=(logpred, data), jac=True, method="L-BFGS-B",
                       options={"maxiter": 5000, "maxfun": 20000, "ftol": logfit.FTOL, "gtol": logfit.GTOL})
        if res.fun < best[0]:
            best = (res.fun, res.x)
    return best[0] * logfit.DELTA, to_public(best[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-loop", action="store_true", help="skip the (slow) plain 4,500-start loop")
    ap.add_argument("--draws", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=2, help="alternated timings of the two bootstrap paths")
    args = ap.parse_args()
    if not CSV.is_file():
        sys.exit(f"reference table {CSV} is absent")
    df = read_csv_table(CSV, n_col="Model Size", c_col="Training FLOP", loss_col="loss", drop_top=5)
    N, D, L = (df[c].to_numpy() for c in ("N", "D", "loss"))
    print(f"cores: {len(os.sched_getaffinity(0))}, points: {len(L)}")

    Chinchilla(workers=1).fit(N, D, L)  # warm-up (imports, caches)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        res = Chinchilla(workers=1).fit(N, D, L)
        times.append(time.perf_counter() - t)
    fit_s = float(np.median(times))
    print(f"varpro fit (40x40 exponent grid, 8 refinements), 1 process: median {fit_s:.3f} s "
          f"(min {min(times):.3f}, max {max(times):.3f}) [target < 2 s]")
    print("  estimate:", {k: round(v, 4) for k, v in res.params.items()}, f"objective {res.objective:.8g}")
    print("  Epoch:   ", EPOCH_2024)

    if not args.skip_loop:
        data = logfit.LogData.of(N, D, L)
        t = time.perf_counter()
        with single_threaded_blas():
            obj, params = plain_loop(data)
        loop_s = time.perf_counter() - t
        diff = max(abs(params[k] - res.params[k]) / abs(res.params[k]) for k in params)
        print(f"plain scipy L-BFGS-B loop over 4,500 starts, 1 process: {loop_s:.1f} s; "
              f"ratio loop / varpro = {loop_s / fit_s:.0f}x")
        print(f"  loop optimum objective {obj:.8g}, max relative parameter difference to varpro {diff:.1e}")

    bootstrap_paths(N, D, L, res, args.draws, args.repeats)


def rel_diff(a, b):
    """Largest relative difference, column by column, over rows where both are finite."""
    ok = np.all(np.isfinite(a) & np.isfinite(b), axis=1)
    return np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-300), axis=0)


def bootstrap_paths(N, D, L, res, draws, repeats):
    """Old path (L-BFGS-B per draw) against the batched Newton path: same draws, same process, all cores."""
    data = logfit.LogData.of(N, D, L)
    est = Chinchilla(workers=None)
    settings = {**est.settings, "budget": float(np.max(6 * N * D))}
    starts = est.form.from_public(res.params)[None, :]
    n = len(L)
    counts = np.stack([np.bincount(ix, minlength=n) for ix in bs.resample_indices(0, draws, n)])
    times = {"lbfgs": [], "newton": []}
    out = {}
    for _ in range(repeats):  # alternated, so that both see the same load
        for path in ("lbfgs", "newton"):
            t = time.perf_counter()
            out[path] = bootstrap_refits(est.form, data, {**settings, "bootstrap_solver": path}, starts, counts)
            times[path].append(time.perf_counter() - t)
    old, new = min(times["lbfgs"]), min(times["newton"])
    procs = {path: min(n_workers(None), max(1, draws // per)) for path, per in
             (("lbfgs", PER_DRAW_PER_WORKER), ("newton", BATCH_PER_WORKER))}
    print(f"bootstrap, {draws} draws + {n} jackknife refits, best of {repeats} (alternated), processes: "
          f"{procs['lbfgs']} old, {procs['newton']} new:")
    print(f"  per-draw L-BFGS-B (old path): {old:.2f} s (all: {', '.join(f'{x:.2f}' for x in times['lbfgs'])})")
    print(f"  batched Newton (new path):    {new:.2f} s (all: {', '.join(f'{x:.2f}' for x in times['newton'])}) "
          f"[target < 3 s]; ratio old / new = {old / new:.1f}x")
    (d_old, j_old, _), (d_new, j_new, fb) = out["lbfgs"], out["newton"]
    names = [*res.params, *res.derived]
    print(f"  draws the batch left to L-BFGS-B: {fb[0]} of {draws} (jackknife {fb[1]} of {n}); failed draws: "
          f"old {int(np.sum(~np.isfinite(d_old).all(axis=1)))}, new {int(np.sum(~np.isfinite(d_new).all(axis=1)))}")
    for label, new_rows, old_rows, W in (("bootstrap draws", d_new, d_old, counts),
                                         ("jackknife fits", j_new, j_old, 1.0 - np.eye(n))):
        diff = rel_diff(new_rows, old_rows)
        print(f"  agreement, {label}: largest relative difference new vs old")
        print("    " + ", ".join(f"{k} {v:.1e}" for k, v in zip(names, diff)))
        apart = np.flatnonzero(np.max(np.abs(new_rows[:, :5] / old_rows[:, :5] - 1), axis=1) > 1e-5)
        if apart.size:  # which of the two reached the lower objective there?
            f = {tag: np.array([logfit.objective(from_public(dict(zip(res.params, rows[i, :5]))), logpred,
                                                 data.reweighted(W[i])) for i in apart])
                 for tag, rows in (("new", new_rows), ("old", old_rows))}
            lower = np.sum(f["new"] < f["old"])
            print(f"    {apart.size} apart by > 1e-5: the batched refit's objective is the lower in {lower} "
                  f"(by up to {np.max((f['old'] - f['new']) / f['old']):.1e} relative)")

    # End to end, as `scalingkit fit --form chinchilla --bootstrap 4000` runs it: the point fit, then the refits.
    fits, wall = {}, {}
    for path in ("lbfgs", "newton"):
        t = time.perf_counter()
        fits[path] = Chinchilla(bootstrap=draws, seed=0, bootstrap_solver=path).fit(N, D, L)
        wall[path] = time.perf_counter() - t
    print(f"whole fit with {draws} bootstrap draws (point fit + draws + jackknife + intervals): "
          f"old {wall['lbfgs']:.2f} s, new {wall['newton']:.2f} s, ratio {wall['lbfgs'] / wall['newton']:.1f}x")
    a, b = fits["newton"], fits["lbfgs"]
    for kind in ("intervals_percentile", "intervals_bca"):
        ends = max(abs(x - y) / abs(y) for k in b.diagnostics[kind]
                   for x, y in zip(a.diagnostics[kind][k], b.diagnostics[kind][k]))
        print(f"  {kind[10:]} interval ends, largest relative difference new vs old: {ends:.1e}")
    se = max(abs(a.diagnostics[f"se_{k}"] / b.diagnostics[f"se_{k}"] - 1) for k in names)
    print(f"  standard errors, largest relative difference: {se:.1e}")
    print("  standard errors:", {k: round(a.diagnostics[f"se_{k}"], 4) for k in ("E", "A", "B", "alpha", "beta")})
    print("  Epoch's:         {'E': 0.03, 'A': 125, 'B': 1290, 'alpha': 0.015, 'beta': 0.021}")

if __name__ == "__main__":
    main()
