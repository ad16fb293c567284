"""The demo's claims (issue 19), checked on its cube: both axes of the scaling study and the compute-optimal split.

Run after `make demo` (its store, store/cube.zarr, or --store), optionally with the demo's terminal output and wall
time (`script -q -c 'make demo' demo.log` and `/usr/bin/time`) to check the lines and the minutes too:

    .venv/bin/python benchmarks/bench_demo.py [--store store/cube.zarr] [--log demo.log] [--seconds 480]

It recomputes what the demo prints, with the demo's settings, through the library (not by reading its text), and
prints each figure beside its bar, with PASS or FAIL:
- L(N): slices at fixed D whose alpha is resolved (interval reaching neither 0 nor the fit's bound): >= 2;
- L(D): slices at fixed N where the power law is ahead of the exponential (offset fitted, bounded by the exact
  floor): >= 4 of 5, with median MSE ratio <= 0.1;
- compute-optimal: the methods that succeed give a within 0.2 of each other; IsoFLOP has >= 3 accepted profiles, or
  its failure says why (a reason naming the profiles);
- the terminal output (--log): at most 60 lines; the wall time (--seconds): under 600 s.
Exit code 1 if a claim fails.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
import time

import numpy as np


def _resolved(result) -> bool:
    from scalingkit.fit.resolved import at_fitting_bound

    iv = result.intervals.get("alpha")
    return bool(result.converged and not at_fitting_bound(result, "alpha") and iv is not None and iv[0] > 0)


def _terminal_lines(path) -> int:
    """Lines a terminal would show: a progress bar rewrites its line with carriage returns and erases itself."""
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:  # keep the carriage returns
        text = fh.read().replace("\r\n", "\n")  # a terminal (and `script`) ends each line with both
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)  # cursor moves and colours of the progress bars
    lines = [line.split("\r")[-1] for line in text.split("\n")]
    return sum(1 for line in lines if line.strip() and not line.startswith("Script "))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="store/cube.zarr")
    ap.add_argument("--log", default=None, help="the demo's terminal output, to count its lines")
    ap.add_argument("--seconds", type=float, default=None, help="the demo's wall time, from a fresh clone")
    args = ap.parse_args(argv)

    from scalingkit.fit.slices import fit_slices
    from scalingkit.optimal import from_cube, run_methods
    from scalingkit.store import family_floors, loss_table

    t0 = time.perf_counter()
    df = loss_table(args.store)
    fits = fit_slices(df, "powerlaw", group_cols=["family", "param"], floors=family_floors(args.store),
                      bootstrap=4000, seed=0)
    by_n = [r for r in fits.results if r.diagnostics.get("axis", r.provenance.get("axis")) == "N"
            or "alpha" in r.params]
    by_d = [r for r in fits.results if "beta" in r.params]
    resolved = [r for r in by_n if _resolved(r)]
    ratios = [r.diagnostics.get("mse_ratio_power_vs_exp", math.nan) for r in by_d if r.converged]
    ahead = sum(1 for x in ratios if x < 1)
    median = float(np.nanmedian(ratios)) if ratios else math.nan
    (inputs,) = from_cube(args.store)
    report = run_methods(inputs, ["envelope", "isoflop", "parametric", "surrogate"], budgets=[1e11])
    ok = [r for r in report.results if r.converged and not r.diagnostics.get("unresolved")]
    a = {r.method: r.params["a"] for r in ok}
    spread = max(a.values()) - min(a.values()) if len(a) >= 2 else math.nan
    iso = report["isoflop-parabola"]
    accepted = iso.diagnostics.get("slices", 0) - iso.diagnostics.get("rejected", 0)
    seconds = time.perf_counter() - t0

    claims = []

    def claim(name, figure, passed):
        claims.append(passed)
        print(f"{'PASS' if passed else 'FAIL'}  {name}: {figure}")

    alphas = ", ".join(f"D={float(r.provenance.get('fixed', {}).get('D', 'nan')):.3g}: {r.params['alpha']:.3g} "
                       f"[{r.intervals['alpha'][0]:.3g}, {r.intervals['alpha'][1]:.3g}]" for r in resolved)
    claim("L(N) slices with a resolved alpha (>= 2)", f"{len(resolved)} of {len(by_n)} ({alphas})", len(resolved) >= 2)
    claim("L(D) slices with the power law ahead (>= 4 of 5), median MSE ratio (<= 0.1)",
          f"{ahead} of {len(ratios)}, median {median:.3g}", ahead >= 4 and median <= 0.1)
    shown = ", ".join(f"{m} {v:.3g}" for m, v in a.items())
    claim("compute-optimal a of the methods that succeed, within 0.2", f"{shown}; spread {spread:.3g}",
          len(a) >= 2 and spread <= 0.2)
    iso_ok = accepted >= 3 or ("profiles rejected" in (iso.failure if not iso.converged else ""))
    claim("IsoFLOP profiles with an interior minimum (>= 3, or the failure says why)",
          f"{accepted} of {iso.diagnostics.get('slices', 0)}"
          + ("" if iso.converged else f"; failure: {iso.failure}"), iso_ok)
    for r in report.results:
        if not r.converged:
            print(f"      {r.method}: FAILED: {r.failure}")
    if args.log:
        n = _terminal_lines(args.log)
        claim("lines of the demo's terminal output (<= 60)", f"{n}", n <= 60)
    if args.seconds is not None:
        claim("the demo's wall time from a fresh clone (< 600 s)", f"{args.seconds:.0f} s", args.seconds < 600)
    print(f"(recomputed in {seconds:.1f} s from {args.store}: {len(df)} cells)")
    return 0 if all(claims) else 1


if __name__ == "__main__":
    sys.exit(main())
