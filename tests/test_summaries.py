"""The compact fit tables: an exponent the data cannot resolve is said to be unresolved, never printed as a number."""
import numpy as np
import pandas as pd

from scalingkit.cli.summaries import at_fitting_bound, slices_table
from scalingkit.fit.slices import fit_slices


def test_a_flat_axis_is_reported_unresolved_and_a_power_law_axis_with_its_exponent():
    rng = np.random.default_rng(0)
    N = np.array([1e4, 2e4, 4e4, 8e4, 1.6e5])
    D = np.array([5e4, 1e5, 2e5, 4e5, 8e5])
    rows = [{"family": "f", "param": "sp", "N": n, "D": d,
             # data-limited: the loss depends on D only (as in the demo), with a little scatter
             "loss": 1.5 + 4e3 * d**-0.8 * (1 + 0.002 * rng.standard_normal())} for n in N for d in D]
    coll = fit_slices(pd.DataFrame(rows), "powerlaw", bootstrap=200, seed=0)
    text = slices_table(coll)
    n_block = text.split("L(D) at fixed N")[0]
    assert "alpha: not resolved at this size" in n_block or "more not resolved" in n_block
    unresolved = [r for r in coll.results if r.provenance["axis"] == "N" and r.converged
                  and at_fitting_bound(r, "alpha")]
    assert unresolved and n_block.count("not resolved (bound)") == len(unresolved)
    d_block = text.split("L(D) at fixed N")[1]
    assert "beta: mean 0.799" in d_block and "not resolved" not in d_block
