"""Compute-optimal curves: every method side by side, with intervals (PAPER.md, "Compute-optimal curves").

    from scalingkit.optimal import from_cube, run_methods
    for inputs in from_cube("store/cube.zarr", n_convention="total"):
        report = run_methods(inputs, ["all"], budgets=[1e12])
        print(report); report["parametric"].params["a"]

Methods (one module each): envelope (approach 1), isoflop (approach 2, parabola and Akima), parametric
(approach 3, closed form from the Chinchilla fit) and surrogate (the paper's: MLP and kernel surrogates
minimised along C = 6ND). laws.py turns compute-optimal points into gamma, a, b with intervals; result.py
holds the results; inputs.py reads the cube (curves and L(N, D)) or a CSV.

Downstream of the fits: may import fit, store (to read the cube) and the shared modules; never torch at module
level, never the training side, plots or cli.
"""
from scalingkit.optimal.inputs import Curves, Inputs, from_csv, from_cube
from scalingkit.optimal.pipeline import METHODS, run_methods
from scalingkit.optimal.result import OptimalReport, OptimalResult, load_report, save_report

__all__ = ["Curves", "Inputs", "from_csv", "from_cube", "METHODS", "run_methods", "OptimalReport",
           "OptimalResult", "load_report", "save_report"]
