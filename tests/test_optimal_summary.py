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


def test_a_parametric_row_whose_alpha_the_runs_do_not_fix_says_so():
    """Runs whose loss does not move with N (A ~ 0, 0.3% noise): the Chinchilla fit's alpha has no support, so
    neither have a, b or N_opt; the row carries the flag and the table says so in one line. The same grid with
    a real N term is resolved, and the line is absent."""
    import pandas as pd

    from scalingkit.optimal.inputs import Inputs
    from scalingkit.optimal.parametric import parametric
    from scalingkit.run.synthetic import Law

    rng = np.random.default_rng(0)
    N, D = (g.ravel() for g in np.meshgrid(np.geomspace(1e4, 1e5, 5), np.geomspace(1e5, 2e6, 6)))
    for A, flagged in ((1e-9, True), (400.0, False)):
        law = Law(E=2.0, A=A, B=40.0, alpha=0.5, beta=0.4)
        loss = law(N, D) * (1 + 0.003 * rng.standard_normal(N.size))
        res = parametric(Inputs("g", pd.DataFrame({"N": N, "D": D, "loss": loss})), [1e12], bootstrap=100)
        assert res.converged, res.failure
        assert ("alpha" in res.diagnostics.get("unresolved", [])) == flagged, res.diagnostics.get("exponent_intervals")
        assert "beta" not in res.diagnostics.get("unresolved", [])  # the D term is fixed by the runs either way
        assert res.diagnostics["exponent_intervals"]["beta"][0] > 0
        text = OptimalReport("g", [res, _result("envelope", 0.5)]).table(verbose=False)
        line = "parametric: alpha not resolved at these sizes, so its gamma, a, b, N_opt and D_opt are not identified"
        assert (line in text) == flagged, text
        # the row prints no numbers for what rests on alpha (issue #19: an N_opt of 33 parameters was printed)
        rows = [ln.split() for ln in text.splitlines() if ln.strip().startswith("parametric ")]
        assert len(rows) == 2, text  # the laws' row and the budget's row
        law_row, budget_row = (" ".join(r) for r in rows)
        assert (law_row.count("not identified") == 3) == flagged, law_row  # gamma, a, b
        assert (budget_row.count("not identified") == 3) == flagged, budget_row  # N_opt, D_opt, D/N
        n_opt = f"{res.budgets[0]['values']['N_opt']:.3g}"
        assert (n_opt in budget_row) != flagged, (n_opt, budget_row)
        assert "not identified" not in " ".join(ln for ln in text.splitlines() if "envelope" in ln)
        # an unresolved row takes no part in the agreement on a
        line = OptimalReport("g", [res, _result("envelope", 0.9), _result("isoflop", 0.3)]).agreement()
        assert ("the others 0.3 to 0.3;" in line) == flagged, line
        if flagged:
            assert res.diagnostics["notes"][0].startswith("alpha [")
        # the side-by-side figure says "not identified" where the row has no number, and draws the others
        from scalingkit.plots.optimal import methods_figure

        fig = methods_figure(OptimalReport("g", [res, _result("envelope", 0.5)]))
        said = [t.get_text() for ax in fig.axes for t in ax.texts].count("not identified")
        assert said == (6 if flagged else 0), said  # gamma, a, b, N_opt, D_opt, D/N


def test_an_isoflop_figure_draws_from_a_saved_report_whose_profile_had_no_minimum(synthetic_inputs, tmp_path):
    """A profile whose parabola opens downward has no minimum (NaN); saved as JSON it reads back as null. The
    figure drawn from the saved report (what `scalingkit report` reuses) skips that marker, as from the live one."""
    from scalingkit.optimal import load_report, run_methods, save_report
    from scalingkit.plots.optimal import isoflop_figure

    report = run_methods(synthetic_inputs, ["isoflop"], budgets=[1e13], bootstrap=0)
    profiles = report["isoflop-parabola"].diagnostics["profiles"]
    profiles[0]["parabola"].update(logN=float("nan"), L=float("nan"))  # as a downward parabola leaves it
    back = load_report(save_report(report, tmp_path))
    assert back["isoflop-parabola"].diagnostics["profiles"][0]["parabola"]["logN"] is None
    markers = [len(isoflop_figure(r, synthetic_inputs).axes[0].lines) for r in (report, back)]
    assert markers[0] == markers[1] > 0


def test_an_l_opt_law_with_too_few_optima_reads_not_fitted_not_nan():
    """Three optima fix a and b but not L_opt(C)'s three parameters: gamma is NaN in the result, and the table says
    'not fitted' (its note says why) rather than printing nan."""
    from scalingkit.optimal.laws import laws_from_points

    C = np.array([1e10, 2e10, 4e10])
    N = 1e3 * C ** 0.5 / 1e5
    res = laws_from_points("isoflop-parabola", C, N, C / (6 * N), 3.0 + C ** -0.1, [1e11], bootstrap=0)
    assert res.converged and np.isnan(res.params["gamma"]) and res.diagnostics["gamma_failure"]
    row = next(line for line in OptimalReport("g", [res]).table().splitlines() if line.strip().startswith("isoflop"))
    assert "not fitted" in row and "nan" not in row, row
    assert any("L_opt(C) not fitted" in n for n in res.diagnostics["notes"])


def test_an_outlier_whose_interval_takes_in_the_others_is_said_to_differ_within_its_uncertainty():
    wide = _result("isoflop-parabola", 0.57)
    wide.intervals["a"] = (-0.18, 1.32)
    rest = [_result("envelope", 0.29), _result("isoflop-akima", 0.28), _result("parametric", 0.46)]
    line = OptimalReport("g", [*rest, wide]).agreement()  # the N-axis reproduction's figures
    assert "isoflop-parabola gives 0.57" in line and "takes in theirs" in line, line
    narrow = _result("isoflop-parabola", 0.57)
    narrow.intervals["a"] = (0.5, 0.65)
    line = OptimalReport("g", [*rest, narrow]).agreement()
    assert "isoflop-parabola gives 0.57" in line and "takes in theirs" not in line, line
