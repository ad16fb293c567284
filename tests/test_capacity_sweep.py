"""The N axis at CPU size (issue 19): the capacity-bound family of the demo and of `make reproduce-cpu`, on tiny
settings. benchmarks/RESULTS.md ("The N axis") has the pilots that chose it; these check what the choice rests on.

- the demo is the reproduction preset below its largest budget (same family, grid, search, training: same runs);
- the family is what the sweep says: ER 128 / 2,048 with kappa = 1 weights, whose transition probabilities fall
  exponentially with rank, not as a power law (a test that could have said the opposite: it fits both);
- capacity binds: a width-8 model stays put when its data doubles while a width-24 model keeps learning, and the
  wider one is far below (the cliff the pilots found below width 24).
"""
from pathlib import Path

import numpy as np
import pytest

from scalingkit.families import build_family
from scalingkit.model.counts import total_params
from scalingkit.sweep import spec

SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"


@pytest.fixture(scope="module")
def sweeps():
    return spec.load(SWEEPS / "er_cpu_demo.toml"), spec.load(SWEEPS / "er_capacity_cpu.toml")


def test_the_demo_is_the_capacity_preset_below_its_largest_budget(sweeps):
    demo, full = sweeps
    assert demo.families == full.families and demo.settings == full.settings and demo.lr_search == full.lr_search
    largest = max(full.grid["tokens"])
    assert demo.grid == {**full.grid, "tokens": [d for d in full.grid["tokens"] if d < largest]}
    assert set(demo.cells()) == {c for c in full.cells() if c.D < largest}
    n = sorted(demo.shapes)
    totals = [total_params(*demo.shapes[k], 128) for k in n]
    assert totals[-1] / totals[0] >= 8  # the factor the issue asks L(N) to fall over


def test_the_family_has_graded_transitions_that_fall_exponentially_with_rank(sweeps):
    demo, _ = sweeps
    (label, table), = demo.families.items()
    fam = build_family(label, table)
    assert fam.vocab_size == 128 and fam.P.nnz == 2 * 2048  # symmetric: both directions of every edge
    deg = np.diff(fam.P.indptr)
    assert deg.min() > 8 and 28 < deg.mean() < 36
    # every row's probabilities sorted by rank: log p against rank is a line (exponential fall), log p against log
    # rank is not (a power law would be the other way round); pooled over rows, ranks 1-20
    ranks = np.arange(1, 21)
    logp = np.array([np.log(np.sort(fam.P.data[fam.P.indptr[i]:fam.P.indptr[i + 1]])[::-1][:20])
                     for i in range(fam.vocab_size) if deg[i] >= 20]).mean(axis=0)

    def r2(x):
        fit = np.polyval(np.polyfit(x, logp, 1), x)
        return 1 - np.sum((logp - fit) ** 2) / np.sum((logp - logp.mean()) ** 2)

    assert r2(ranks) > 0.98 and r2(ranks) > r2(np.log(ranks)) + 0.05, (r2(ranks), r2(np.log(ranks)))
    assert 0 < fam.entropy_rate() < np.log(deg.mean())  # graded: below the uniform walk's log(degree)


def test_capacity_binds_below_the_cliff_and_not_above_it(sweeps):
    """Width 8 (2,600 parameters) against width 24 (17,016) at 100K and 200K tokens (about 12 s in all): the
    narrow model is capacity-bound (doubling its data moves it by under 0.05 nats), the wide one is not (over 0.1)
    and is more than 0.5 nats lower. Measured: 4.196 -> 4.183 and 3.511 -> 3.308 (floor 2.812)."""
    from scalingkit.train.engine import RunConfig, TrainSettings, train

    demo, _ = sweeps
    (label, table), = demo.families.items()
    fam = build_family(label, table)
    settings = TrainSettings(context=50, batch=8, eval_points=2, eval_sequences=64)
    loss = {(w, d): float(train(RunConfig(label, "sp", 2, w, tokens=d, lr=0.04, seed=0, settings=settings),
                                fam).exact_loss[-1])
            for w in (8, 24) for d in (100_000, 200_000)}
    assert loss[8, 100_000] - loss[8, 200_000] < 0.05, loss
    assert loss[24, 100_000] - loss[24, 200_000] > 0.1, loss
    assert loss[8, 200_000] - loss[24, 200_000] > 0.5, loss
