"""--form expr: a law the user writes, fitted through lmfit's ExpressionModel with the 2-d forms' objective."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import one_line_error, run_cli
from scalingkit.cli import main as cli
from scalingkit.errors import UserError
from scalingkit.fit import expr as expr_module
from scalingkit.fit.expr import Expr, Problem
from scalingkit.fit.registry import estimator_class
from scalingkit.fit.results import load_result, save_result

EPOCH_CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chinchilla_epoch.csv"
needs_epoch = pytest.mark.skipif(not EPOCH_CSV.is_file(), reason=f"reference table {EPOCH_CSV} is absent")
EPOCH_FLAGS = ["--n-col", "Model Size", "--c-col", "Training FLOP", "--loss-col", "loss", "--drop-top", "5"]

LAW = "E + A*N**-alpha + B*D**-beta"
TRUE = {"E": 1.7, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.37}
GUESS = {"E": 1.5, "A": 300.0, "B": 1000.0, "alpha": 0.3, "beta": 0.3}
GUESS_TEXT = "E=1.5,A=300,B=1000,alpha=0.3,beta=0.3"


def chinchilla(N, D, p=TRUE):
    return p["E"] + p["A"] * N ** -p["alpha"] + p["B"] * D ** -p["beta"]


def synthetic(noise=0.0, seed=0):
    N = np.repeat(np.geomspace(1e6, 1e9, 6), 5)
    D = np.tile(np.geomspace(1e8, 1e11, 5), 6)
    L = chinchilla(N, D) * np.exp(np.random.default_rng(seed).normal(0, noise, len(N)))
    return N, D, L


def run_main(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


# -- fitting ------------------------------------------------------------------------------------------------------
def test_recovers_a_known_chinchilla_law():
    N, D, L = synthetic()
    res = Expr(expr=LAW, guess=GUESS, workers=1).fit(N, D, L)
    assert res.converged, res.failure
    assert res.form == "expr" and list(res.params) == ["E", "A", "alpha", "B", "beta"]
    for k, v in TRUE.items():
        assert res.params[k] == pytest.approx(v, rel=1e-4), k
    assert res.objective < 1e-12  # exact data: every log residual ~ 0
    assert res.diagnostics["starts"] == 8 and res.diagnostics["starts_at_best"] >= 2
    assert res.provenance["expr"] == LAW and res.provenance["n_points"] == len(L)


def test_noisy_law_recovered_from_a_dataframe():
    N, D, L = synthetic(noise=0.01, seed=3)
    res = Expr(expr=LAW, guess=GUESS_TEXT, workers=1).fit(pd.DataFrame({"N": N, "D": D, "loss": L}))
    assert res.converged, res.failure
    assert res.params["alpha"] == pytest.approx(0.34, abs=0.03) and res.params["E"] == pytest.approx(1.7, abs=0.05)


@needs_epoch
def test_epoch_table_reaches_the_builtin_chinchilla_objective(tmp_path, capsys):
    from scalingkit.fit.chinchilla import Chinchilla
    from scalingkit.fit.table import read_csv_table

    code, out, err = run_main(["fit", "--form", "expr", "--expr", LAW,
                               "--guess", "E=1.7,A=400,B=400,alpha=0.3,beta=0.3", "--bound", "alpha=0:2",
                               "--csv", EPOCH_CSV, *EPOCH_FLAGS, "--bootstrap", 0, "--json", "--out", tmp_path], capsys)
    assert code == 0, err
    doc = json.loads(out)
    df = read_csv_table(EPOCH_CSV, n_col="Model Size", c_col="Training FLOP", drop_top=5)
    ref = Chinchilla(bootstrap=0, workers=1).fit(df)
    assert doc["converged"] and doc["provenance"]["n_points"] == 240
    assert doc["objective"] <= ref.objective * (1 + 1e-8)
    for k, v in ref.params.items():
        assert doc["params"][k] == pytest.approx(v, rel=1e-4), k
    assert doc["provenance"]["expr"] == LAW and doc["provenance"]["settings"]["bounds"] == {"alpha": [0, 2]}
    assert list(tmp_path.glob("expr-*.json"))


def test_a_fixed_parameter_stays_fixed():
    N, D, L = synthetic(noise=0.005, seed=1)
    free = Expr(expr=LAW, guess=GUESS, starts=2).fit(N, D, L)
    res = Expr(expr=LAW, guess=GUESS, fixed={"E": 1.6}, starts=2, bootstrap=15, workers=1).fit(N, D, L)
    assert res.converged, res.failure
    assert res.params["E"] == 1.6  # exactly: lmfit's vary=False
    assert res.diagnostics["fixed"] == ["E"] and "E" not in res.intervals
    assert set(res.intervals) == {"A", "B", "alpha", "beta"}
    assert res.objective > free.objective  # E = 1.6 is not the data's optimum: the rest had to move
    assert res.params["alpha"] != pytest.approx(free.params["alpha"], rel=1e-3)
    # a fixed value overrides a guess for the same name (the CLI's --guess E=... --fix E=...)
    assert Expr(expr=LAW, guess=GUESS, fixed="E=1.6").settings["fixed"] == {"E": 1.6}


def test_bounds_are_honoured():
    N, D, L = synthetic()
    guess = {**GUESS, "beta": 0.5}  # a guess must lie inside its bound
    res = Expr(expr=LAW, guess=guess, bounds={"alpha": (0, 0.3), "beta": (0.4, None)}, starts=3).fit(N, D, L)
    assert res.converged, res.failure
    assert 0 <= res.params["alpha"] <= 0.3 and res.params["beta"] >= 0.4
    # the true values lie outside: both end on their bound, and the fit says so
    assert res.params["alpha"] == pytest.approx(0.3, abs=1e-6) and res.params["beta"] == pytest.approx(0.4, abs=1e-6)
    note = " ".join(res.diagnostics["notes"])
    assert "at a bound" in note and "alpha" in note and "beta" in note
    # a bound that holds the truth changes nothing
    inside = Expr(expr=LAW, guess=GUESS, bounds="alpha=0:2,E=:3", starts=3).fit(N, D, L)
    assert inside.params["alpha"] == pytest.approx(0.34, rel=1e-4) and "notes" not in inside.diagnostics


def test_a_model_below_zero_is_steered_away_from(monkeypatch):
    """c - A N^-alpha is <= 0 for small N at many parameter values: the solver's path crosses such values (the
    penalty residual is met) and still reaches the law; a NaN residual there would have aborted lmfit."""
    x = np.geomspace(1e3, 1e6, 12)
    y = 2.0 - 5.0 * x**-0.2
    hits = []
    residual = Problem.residual

    def counting(self, params):
        r = residual(self, params)
        hits.append(bool(np.any(r == expr_module.PENALTY)))
        return r

    monkeypatch.setattr(Problem, "residual", counting)
    res = Expr(expr="c - A*N**-alpha", guess={"c": 1.9, "A": 3.5, "alpha": 0.27}, starts=1).fit(x, y)
    assert any(hits)
    assert res.converged, res.failure
    assert res.params == pytest.approx({"c": 2.0, "A": 5.0, "alpha": 0.2}, rel=1e-6)


def test_one_d_expressions_take_x_and_loss():
    x = np.geomspace(1e6, 1e9, 10)
    y = 2.0 + 50.0 * x**-0.3
    est = Expr(expr="E + A*N**-alpha", guess={"E": 1.5, "A": 30, "alpha": 0.2}, workers=1)
    assert est.variables == ("N",) and est.min_points == 4
    a = est.fit(x, y)
    b = est.fit(N=x, loss=y)
    c = est.fit(pd.DataFrame({"N": x, "loss": y}))
    assert a.params == pytest.approx({"E": 2.0, "A": 50.0, "alpha": 0.3}, rel=1e-5)
    assert a.params == b.params == c.params
    d = Expr(expr="E + B*D**-beta", guess={"E": 1.5, "B": 30, "beta": 0.2}).fit(D=x, loss=y)
    assert d.params == pytest.approx({"E": 2.0, "B": 50.0, "beta": 0.3}, rel=1e-5)
    assert np.allclose(d.predict(x), y) and np.allclose(d.predict(None, x), y)
    with pytest.raises(UserError, match="uses N and D"):
        Expr(expr=LAW, guess=GUESS).fit(x, y)
    with pytest.raises(UserError, match="needs D"):
        Expr(expr=LAW, guess=GUESS).fit(N=x, loss=y)
    with pytest.raises(UserError, match="at least 4 points, got 3"):
        est.fit(x[:3], y[:3])


def test_json_round_trip_predicts_the_same(tmp_path):
    N, D, L = synthetic(noise=0.01, seed=2)
    res = Expr(expr=LAW, guess=GUESS, starts=2).fit(N, D, L)
    loaded = load_result(save_result(res, tmp_path))
    assert loaded.form == "expr" and loaded.params == res.params and loaded.state == res.state
    Nq, Dq = np.geomspace(1e5, 1e11, 7), np.geomspace(1e7, 1e13, 7)
    assert np.array_equal(loaded.predict(Nq, Dq), res.predict(Nq, Dq))
    assert np.allclose(loaded.predict(Nq, Dq), chinchilla(Nq, Dq, res.params), rtol=1e-12)
    assert loaded.predict(1e9, 1e10).shape == ()
    one_d = Expr(expr="E + A*exp(-k*log(N))", guess={"E": 1.0, "A": 10.0, "k": 0.2}, starts=2).fit(N, L)
    again = load_result(save_result(one_d, tmp_path))
    assert np.array_equal(again.predict(Nq), one_d.predict(Nq)) and np.all(np.isfinite(again.predict(Nq)))
    with pytest.raises(UserError, match="predict takes"):
        again.predict(Nq, Dq, Dq)


def test_bootstrap_intervals_contain_the_estimate():
    N, D, L = synthetic(noise=0.01, seed=4)
    res = Expr(expr=LAW, guess=GUESS, starts=2, bootstrap=30, workers=1, seed=2).fit(N, D, L)
    assert res.converged, res.failure
    assert res.diagnostics["bootstrap_draws"] == 30 and res.diagnostics["bootstrap_failed"] <= 3
    assert res.diagnostics["interval_method"] == "bootstrap over runs, bca"
    for k, v in res.params.items():
        lo, hi = res.intervals[k]
        assert lo < v < hi, (k, lo, v, hi)
        plo, phi = res.diagnostics["intervals_percentile"][k]
        assert plo < phi and res.diagnostics[f"se_{k}"] > 0
    assert res.intervals == res.diagnostics["intervals_bca"]


def test_the_registry_knows_the_form():
    assert estimator_class("expr") is Expr


@pytest.mark.parametrize("kwargs, fragment", [
    ({"expr": "E + A*N**"}, "cannot parse"),
    ({"expr": "x = N"}, "cannot parse"),
    ({"expr": "E + A*n**-alpha", "guess": {"E": 1, "A": 1, "alpha": 1}}, "uses neither N nor D"),
    ({"expr": "E + A*N**-alpha", "guess": {"E": 1, "A": 1}}, "'alpha' in the expression is neither N, D nor"),
    ({"expr": "E + A*N**-alpha", "guess": {"E": 1, "A": 1, "alpha": 1, "zz": 1}}, "'zz' is not in the expression"),
    ({"expr": "E + A*N**-alpha", "guess": {"E": 1, "A": 1, "alpha": 1, "pi": 1}}, "function or constant"),
    ({"expr": "E + A*N**-alpha", "guess": {"E": 1, "A": 1, "alpha": float("inf")}}, "not a finite number"),
    ({"expr": "E + A*N**-alpha", "guess": {"E": 1, "A": 1, "alpha": 1}, "bounds": {"alpha": (2, 1)}}, "lo > hi"),
    ({"expr": "E + A*N**-alpha", "guess": {"E": 1, "A": 1, "alpha": 3}, "bounds": {"alpha": (0, 2)}},
     "guess alpha=3 is outside its bound [0, 2]"),
    ({"expr": "E + A*N**-alpha", "guess": {"A": 1, "alpha": 1}, "fixed": {"E": 1}, "bounds": {"E": (2, None)}},
     "fixed value E=1 is outside its bound [2, inf]"),
    ({"expr": "E*N**0", "fixed": {"E": 1}}, "no free parameter"),
    ({}, "no expression given"),
])
def test_bad_settings_raise_one_line_user_errors(kwargs, fragment):
    with pytest.raises(UserError) as exc:
        Expr(**kwargs)
    assert fragment in str(exc.value) and "\n" not in str(exc.value)


# -- the command line: bad input is one line and exit code 2 ------------------------------------------------------
@pytest.fixture
def runs_csv(tmp_path):
    N, D, L = synthetic(noise=0.005)
    path = tmp_path / "runs.csv"
    pd.DataFrame({"params": N, "tokens": D, "loss": L}).to_csv(path, index=False)
    return path


def test_cli_fits_an_expression_and_a_one_d_one(runs_csv, tmp_path, capsys):
    code, out, err = run_main(["fit", "--form", "expr", "--expr", LAW, "--guess", "E=1.5,A=300", "--guess",
                               "B=1000,alpha=0.3,beta=0.3", "--fix", "E=1.7", "--bound", "alpha=0:1",
                               "--bound", "beta=0:", "--starts", 3, "--csv", runs_csv, "--n-col", "params",
                               "--d-col", "tokens", "--bootstrap", 0, "--verbose", "--out", tmp_path], capsys)
    assert code == 0, err
    assert "expr fit: 30 points" in out and "\n  E " in out and "starts=3" in out
    doc = json.loads(next(tmp_path.glob("expr-*.json")).read_text())
    assert doc["params"]["E"] == 1.7 and doc["params"]["alpha"] == pytest.approx(0.34, abs=0.01)
    assert doc["provenance"]["settings"]["fixed"] == {"E": 1.7}
    code, out, err = run_main(["fit", "--form", "expr", "--expr", "E + A*N**-alpha", "--guess", "E=1,A=100,alpha=0.3",
                               "--csv", runs_csv, "--n-col", "params", "--bootstrap", 0, "--out", tmp_path], capsys)
    assert code == 0, err


@pytest.mark.parametrize("args, fragments", [
    (["--expr", "E + A*N**", "--guess", "E=1"], ["cannot parse", "'E + A*N**'"]),
    (["--expr", "E + A*N**-alpha + c", "--guess", "E=1,A=1,alpha=0.3"], ["'c'", "neither N, D nor a parameter"]),
    (["--expr", "E + A*N**-alpha", "--guess", "E=1,A=1,alpha=0.3,zz=2"], ["guess for 'zz'", "not in the expression"]),
    (["--expr", "E + A*N**-alpha", "--guess", "E=1,A=1,alpha=0.3", "--bound", "alpha=2:1"], ["alpha=2:1", "lo > hi"]),
    (["--expr", "E + A*N**-alpha", "--guess", "A=1,alpha=0.3", "--bound", "E=0:1", "--fix", "E=3"],
     ["fixed value E=3", "outside its bound [0, 1]"]),
    (["--expr", "E + A*N**-alpha", "--guess", "E=nan,A=1,alpha=0.3"], ["guess E=nan", "not a finite number"]),
    (["--expr", "E + A*N**-alpha", "--guess", "E=inf,A=1,alpha=0.3"], ["guess E=inf", "not a finite number"]),
    (["--expr", "E + A*N**-alpha", "--guess", "E1,A=1,alpha=0.3"], ["--guess", "expected name=value", "'E1'"]),
    (["--expr", "E + A*N**-alpha", "--guess", "E=one,A=1,alpha=0.3"], ["--guess", "'one' is not a number"]),
    (["--expr", "E + A*N**-alpha", "--guess", "E=1,A=1,alpha=0.3,E=2"], ["--guess", "'E' is given twice"]),
    (["--expr", "E + A*N**-alpha", "--guess", "E=1,A=1,alpha=0.3", "--bound", "alpha=0"], ["--bound", "lo:hi"]),
    (["--guess", "E=1"], ["no expression given"]),
    (["--expr", "E - A*N**-alpha", "--guess", "E=0.1,A=100,alpha=0.1"], ["<= 0 or not finite at 30 of 30 points"]),
    (["--expr", "E + f(N)", "--guess", "E=1,f=2"], ["evaluating", "failed", "not callable"]),
])
def test_cli_bad_input_is_one_line_and_exit_2(runs_csv, tmp_path, capsys, args, fragments):
    code, out, err = run_main(["fit", "--form", "expr", *args, "--csv", runs_csv, "--n-col", "params", "--d-col",
                               "tokens", "--bootstrap", 0, "--out", tmp_path], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    assert not list(tmp_path.glob("expr-*.json"))


def test_cli_expr_flags_belong_to_the_expr_form_and_columns_are_checked(runs_csv, tmp_path, capsys):
    code, _, err = run_main(["fit", "--form", "chinchilla", "--guess", "E=1", "--csv", runs_csv, "--n-col", "params",
                             "--d-col", "tokens", "--out", tmp_path], capsys)
    assert code == 2 and "--guess goes with --form expr" in err
    code, _, err = run_main(["fit", "--form", "expr", "--expr", LAW, "--guess", GUESS_TEXT, "--csv", runs_csv,
                             "--n-col", "params", "--out", tmp_path], capsys)
    assert code == 2 and "the expression uses D: give --d-col or --c-col" in err


def test_bad_expression_through_the_installed_command(runs_csv, tmp_path):
    proc = run_cli("fit", "--form", "expr", "--expr", "E + A*N**-alpha + c", "--guess", "E=1,A=1,alpha=0.3",
                   "--csv", runs_csv, "--n-col", "params", "--d-col", "tokens", "--out", tmp_path)
    err = one_line_error(proc)
    assert "'c' in the expression is neither N, D nor a parameter with a guess" in err
