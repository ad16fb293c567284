"""The report's summary across families (scalingkit.plots.summary), built from real fits of a small synthetic
L(N, D) table: a family whose loss falls with N (alpha resolved, a number with its interval) and one whose loss
does not depend on N (not resolved), and compute-optimal reports with failed methods and a parametric row that is
not identified. About 3 s on 2 cores."""
import re

import numpy as np
import pandas as pd
import pytest

from scalingkit.fit.slices import fit_slices
from scalingkit.optimal import run_methods
from scalingkit.optimal.inputs import Inputs
from scalingkit.optimal.result import identified
from scalingkit.plots import summary
from scalingkit.plots.report import Doc
from scalingkit.run.synthetic import Law

N = (2e4, 4e4, 8e4, 1.6e5, 3.2e5)
D = (5e4, 1e5, 2e5, 4e5, 8e5)
LAWS = {"real": Law(E=1.5, A=40.0, B=200.0, alpha=0.5, beta=0.5),  # L(N) term of ~0.3-0.14 nats: resolved
        "flat": Law(E=1.5, A=0.0, B=200.0, alpha=0.5, beta=0.5)}  # no N term at all
NOISE = {"real": (0.002, 0), "flat": (0.005, 0)}  # relative s.d., seed (flat's: its parametric alpha reaches 0)
GROUPS = [{"family": f, "param": "sp"} for f in ("flat", "real")]


def law_table(family):
    noise, seed = NOISE[family]
    rng = np.random.default_rng(seed)
    law = LAWS[family]
    return pd.DataFrame([{"family": family, "param": "sp", "N": int(n), "D": int(d),
                          "loss": law(n, d) * (1 + noise * rng.standard_normal())} for n in N for d in D])


@pytest.fixture(scope="module")
def fits():
    """The 1-d slice fits of both families (one collection, as `scalingkit fit` saves it) and each family's
    compute-optimal report (envelope, both IsoFLOP fits, parametric), all real."""
    table = pd.concat([law_table(f) for f in LAWS], ignore_index=True)
    table["loss_se"] = 0.002 * table["loss"]
    coll = fit_slices(table, "powerlaw", group_cols=["family", "param"], bootstrap=200, seed=0, workers=1)
    reports = {f: run_methods(Inputs(f"{f}/sp", law_table(f)[["N", "D", "loss"]], source={}),
                              ["envelope", "isoflop", "parametric"], bootstrap=30, workers=1) for f in LAWS}
    return coll, reports


def test_alpha_row_resolved_and_not(fits):
    coll, _ = fits
    real = summary.alpha_row(GROUPS[1], coll, "er")
    assert real[:4] == ["real", "sp", "5", real[3]] and int(real[3]) >= 3
    # alpha at the largest D: a number with its interval, around the law's 0.5
    m = re.fullmatch(r"([0-9.]+) \[([0-9.]+), ([0-9.]+)\] at D = 800K", real[4])
    assert m, real[4]
    assert float(m[2]) > 0 and float(m[2]) < 0.5 < float(m[3]) and abs(float(m[1]) - 0.5) < 0.15
    lo, hi = map(float, real[5].split(" to "))
    assert 0 < lo <= float(m[1]) <= hi
    assert real[6] == "not given in PAPER.md"

    flat = summary.alpha_row(GROUPS[0], coll, "ba")
    assert flat == ["flat", "sp", "5", "0", "not resolved at D = 800K", "-", "not given in PAPER.md"]
    # resolved means: converged, off the fit's bound, interval above 0
    for r in summary.n_slices(coll, GROUPS[0]):
        assert not summary.alpha_resolved(r)
    assert len(summary.ALPHA_HEADER) == len(real)


def test_alpha_row_of_a_missing_result_and_the_paper_column(fits):
    assert summary.alpha_row(GROUPS[0], None, "er") == ["flat", "sp", "-", "-", "-", "-", "not given in PAPER.md"]
    assert summary.PAPER_ALPHA == {}  # PAPER.md gives no numeric alpha: nothing is quoted
    assert all(summary.paper_alpha(k) == "not given in PAPER.md" for k in ("er", "ba", "bigram", "generated",
                                                                            "text", None))
    note = summary.alpha_note([fits[0], None])
    assert "wild bootstrap, BCa, 200 draws" in note and "down to 0" in note


def test_optimal_row_failed_unidentified_and_numbers(fits):
    _, reports = fits
    flat = reports["flat"]
    assert not identified(flat["parametric"], "a")  # the setting this test rests on: alpha's interval reaches 0
    assert not flat["isoflop-parabola"].converged and not flat["envelope"].converged
    row = summary.optimal_row(GROUPS[0], flat)
    assert len(row) == len(summary.OPTIMAL_HEADER) == 2 + 6 + 1
    cells = dict(zip(summary.METHOD_ORDER, row[2:8]))
    assert cells["isoflop-parabola"] == "FAILED: 0 compute-optimal point(s)"  # the first clause only
    assert cells["envelope"].startswith("FAILED: ")
    assert cells["parametric"] == "not identified"
    assert cells["surrogate-mlp"] == cells["surrogate-kernel"] == "-"  # not run
    assert row[-1] == "fewer than two methods give a"

    real = summary.optimal_row(GROUPS[1], reports["real"])
    cells = dict(zip(summary.METHOD_ORDER, real[2:8]))
    number = r"[0-9.e+-]+ \[[0-9.e+-]+, [0-9.e+-]+\]"
    assert re.fullmatch(number, cells["parametric"]), cells["parametric"]
    assert re.fullmatch(number, cells["envelope"]), cells["envelope"]
    verdict = (r"agree within 0\.2 \(.* to .*\)|disagree: \S+ gives \S+, (others .* to .*|the other \S+)"
               r"( \(within its own interval\))?")
    assert re.fullmatch(verdict, real[-1]), real[-1]
    assert summary.optimal_row(GROUPS[1], None) == ["real", "sp"] + ["-"] * 7


def test_short_failure_and_agreement_wording():
    long = "not converged: " + "x" * 100 + "; second clause"
    assert summary.short_failure(long).endswith("...") and len(summary.short_failure(long)) == 60
    assert summary.short_failure("2 runs; the Chinchilla fit needs 5") == "2 runs"

    class Rep:  # only agreement() is read here; its wording is OptimalReport.agreement's
        def __init__(self, line):
            self.line = line

        def agreement(self):
            return self.line

    assert summary.agreement_cell(Rep("the 4 methods agree on a within 0.2 (0.41 to 0.52)")) == \
        "agree within 0.2 (0.41 to 0.52)"
    assert summary.agreement_cell(Rep("methods disagree on a: envelope gives 1, the others 0.473 to 0.5; envelope: "
                                      "6 envelope points on the smallest or largest N left out")) == \
        "disagree: envelope gives 1, others 0.473 to 0.5"
    assert summary.agreement_cell(Rep("methods disagree on a: envelope gives 1, the others 0.473 to 0.473; why")) == \
        "disagree: envelope gives 1, the other 0.473"


def test_tables_render_in_markdown(fits, tmp_path):
    coll, reports = fits
    doc = Doc(dpi=50)
    doc.table(summary.ALPHA_HEADER, [summary.alpha_row(g, coll, "er") for g in GROUPS])
    doc.table(summary.OPTIMAL_HEADER, [summary.optimal_row(g, reports[g["family"]]) for g in GROUPS])
    md = doc.markdown(tmp_path / "figures", "figures")
    assert "| flat | sp | 5 | 0 | not resolved at D = 800K | - | not given in PAPER.md |" in md
    assert "| flat | sp | FAILED: " in md and "| not identified |" in md


def test_the_agreement_cell_keeps_the_numbers_and_says_when_the_outlier_is_within_its_interval():
    from scalingkit.optimal.result import OptimalReport, OptimalResult
    from scalingkit.plots.summary import agreement_cell

    def res(method, a, iv=None):
        return OptimalResult(method, params={"a": a}, intervals={"a": iv} if iv else {},
                             diagnostics={"n_points": 5, "notes": []})

    rest = [res("envelope", 0.29), res("isoflop-akima", 0.28), res("parametric", 0.46)]
    assert agreement_cell(OptimalReport("g", [*rest, res("isoflop-parabola", 0.57)])) == \
        "disagree: isoflop-parabola gives 0.57, others 0.28 to 0.46"
    assert agreement_cell(OptimalReport("g", [*rest, res("isoflop-parabola", 0.57, (-0.18, 1.32))])) == \
        "disagree: isoflop-parabola gives 0.57, others 0.28 to 0.46 (within its own interval)"
    assert agreement_cell(OptimalReport("g", rest)) == "agree within 0.2 (0.28 to 0.46)"
