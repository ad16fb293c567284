"""`scalingkit fit` / `compare` from the command line: the Epoch example, the cube, and one-line errors."""
import json
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import one_line_error, run_cli, tiny_sweep_text
from scalingkit.cli import main as cli

EPOCH_CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chinchilla_epoch.csv"
needs_epoch = pytest.mark.skipif(not EPOCH_CSV.is_file(), reason=f"reference table {EPOCH_CSV} is absent")
EPOCH_FLAGS = ["--n-col", "Model Size", "--c-col", "Training FLOP", "--loss-col", "loss", "--drop-top", "5"]


def run_main(argv, capsys):
    """The real entry point in-process (fast): exit code, stdout, stderr."""
    with pytest.raises(SystemExit) as exc:
        cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


@pytest.fixture
def grid_csv(tmp_path):
    rng = np.random.default_rng(0)
    N = np.repeat(np.geomspace(1e6, 1e9, 5), 4)
    D = np.tile(np.geomspace(1e8, 1e11, 4), 5)
    L = (1.7 + 400.0 * N**-0.34 + 2000.0 * D**-0.37) * np.exp(rng.normal(0, 0.005, len(N)))
    path = tmp_path / "runs.csv"
    pd.DataFrame({"params": N, "tokens": D, "loss": L}).to_csv(path, index=False)
    return path


@needs_epoch
def test_epoch_example_prints_and_saves_json(tmp_path):
    proc = run_cli("fit", "--form", "chinchilla", "--csv", EPOCH_CSV, *EPOCH_FLAGS, "--bootstrap", 40,
                   "--json", "--out", tmp_path / "fits")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    p = doc["params"]
    assert abs(p["alpha"] - 0.3478) < 0.003 and abs(p["beta"] - 0.3658) < 0.005 and abs(p["E"] - 1.8172) < 0.005
    assert set(doc["intervals"]) >= {"E", "A", "B", "alpha", "beta", "a", "b", "G", "tokens_per_param"}
    assert doc["provenance"]["n_points"] == 240
    saved = list((tmp_path / "fits").glob("chinchilla-*.json"))
    assert len(saved) == 1 and "saved" in proc.stderr
    assert json.loads(saved[0].read_text())["params"] == p


@needs_epoch
def test_epoch_example_table(tmp_path, capsys):
    code, out, err = run_main(["fit", "--form", "chinchilla", "--csv", EPOCH_CSV, *EPOCH_FLAGS, "--bootstrap", 0,
                               "--verbose", "--out", tmp_path], capsys)
    assert code == 0, err
    for name in ("E", "A", "B", "alpha", "beta", "a", "b", "objective", "diagnostics"):
        assert f"\n  {name}" in out


def test_powerlaw_on_csv_prints_slices_and_summary(grid_csv, tmp_path, capsys):
    code, out, err = run_main(["fit", "--form", "powerlaw", "--csv", grid_csv, "--n-col", "params", "--d-col",
                               "tokens", "--bootstrap", 100, "--verbose", "--out", tmp_path], capsys)
    assert code == 0, err
    assert out.count("powerlaw fit [L(N)") == 4 and out.count("powerlaw fit [L(D)") == 5
    assert "alpha over D: n=4" in out and "beta over N: n=5" in out and "window:" in out


def test_failed_fit_exits_non_zero_without_printing_estimates(grid_csv, tmp_path, capsys, monkeypatch):
    from scalingkit.fit import form2d

    monkeypatch.setattr(form2d, "REL_GRAD_FAIL", -1.0)  # every fit now fails its convergence test
    monkeypatch.setattr(form2d, "ABS_GRAD_OK", -1.0)
    code, out, err = run_main(["fit", "--form", "kaplan", "--csv", grid_csv, "--n-col", "params", "--d-col",
                               "tokens", "--bootstrap", 0, "--out", tmp_path], capsys)
    assert code == 1 and "FAILED" in out and "estimates withheld" in out
    assert "fit(s) failed" in err


# -- the cube -------------------------------------------------------------------------------------------------
@pytest.fixture
def cube(tmp_path):
    """A real cube whose finished runs carry losses from a known Chinchilla law (no training needed)."""
    from scalingkit import store
    from scalingkit.sweep import plan
    from scalingkit.sweep import spec as sweep

    text = tiny_sweep_text(widths=(16, 32, 48, 64), tokens=(3200, 6400, 12800, 25600), lrs=(1e-2, 3e-2))
    sw = sweep.from_table(tomllib.loads(text))
    path = tmp_path / "store" / "cube.zarr"
    plan.prepare(path, sw)
    n_params = store.open_cube(path)["n_params"].sel(family="er64")
    writer = store.RunWriter(path)
    done = []
    for cell in sw.cells():
        n = float(n_params.sel(N=cell.N))
        loss = 2.5 + 40.0 * n**-0.3 + 30.0 * cell.D**-0.35 + (0.05 if cell.lr > 0.02 else 0.0)
        writer.write_run_values(cell, {"final_eval_loss": loss})
        done.append((cell, "done"))
    writer.write_status(done)
    return path


def test_the_default_output_is_one_line_per_fit(grid_csv, tmp_path, capsys):
    """Without --verbose: per axis a header, one line per slice with its estimates, intervals and verdict, the
    exponent's mean, and the verdict counts; the details stay in the saved JSON."""
    code, out, err = run_main(["fit", "--form", "powerlaw", "--csv", grid_csv, "--n-col", "params", "--d-col",
                               "tokens", "--bootstrap", 100, "--out", tmp_path], capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) <= 2 * 2 + 4 + 5 + 2 + 3, out  # two headers and column lines, 9 slices, 2 means, footers
    assert sum(line.startswith("  ") and line.count("[") == 2 and "95%" not in line for line in lines) == 9
    assert "alpha: mean" in out and "beta: mean" in out and out.count("slices by verdict") == 1
    assert "powerlaw fit [" not in out  # the verbose blocks are not printed


def test_fit_on_the_cube_saves_beside_it(cube, capsys):
    code, out, err = run_main(["fit", "--form", "chinchilla", "--store", cube, "--bootstrap", 0, "--verbose"], capsys)
    assert code == 0, err
    assert "chinchilla fit [family=er64,param=" in out
    assert "E   " in out or "\n  E" in out
    saved = list((cube.parent / "fits").glob("chinchilla-*.json"))
    assert saved, err
    res = json.loads(saved[0].read_text())
    # best over lr picks the lower-loss learning rate: the law is recovered
    assert res["params"]["alpha"] == pytest.approx(0.3, abs=1e-3) and res["params"]["E"] == pytest.approx(2.5, abs=1e-3)

    code, out, err = run_main(["fit", "--form", "powerlaw", "--store", cube, "--bootstrap", 50,
                               "--n-convention", "nonembedding", "--family", "er64", "--verbose"], capsys)
    assert code == 0, err
    assert "alpha over D" in out and "beta over N" in out


def test_cube_errors_are_one_line(cube, tmp_path, capsys):
    code, _, err = run_main(["fit", "--form", "chinchilla", "--store", cube, "--family", "nope"], capsys)
    assert_one_line_error(code, err, "nope")
    code, _, err = run_main(["fit", "--form", "chinchilla", "--store", tmp_path / "absent.zarr"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1


# -- bad input: one line, exit code 2 ---------------------------------------------------------------------------
def write_csv(tmp_path, **columns):
    path = tmp_path / "bad.csv"
    pd.DataFrame(columns).to_csv(path, index=False)
    return path


def good_columns(n=12):
    N = np.geomspace(1e6, 1e9, n)
    D = np.geomspace(1e9, 1e11, n)[::-1]
    return {"N": N, "D": D, "loss": 2 + 100 * N**-0.3 + 300 * D**-0.3}


@pytest.mark.parametrize("case, fragments", [
    ("missing column", ["'tokens'", "columns: N, D, loss"]),
    ("non-positive N", ["'N'", "positive", "row(s) 3"]),
    ("non-positive D", ["'D'", "positive"]),
    ("non-positive loss", ["'loss'", "positive"]),
    ("NaN", ["'loss'", "NaN", "row(s) 2"]),
    ("too few points", ["too few points for chinchilla", "5 row(s)", "at least 6"]),
    ("unknown form", ["--form", "cubic"]),
    ("no such file", ["no such CSV file"]),
    ("d and c", ["not both"]),
    ("drop everything", ["would drop all"]),
    ("text in a number column", ["non-numeric", "'N'"]),
])
def test_bad_input_gives_one_line_error_and_exit_2(tmp_path, capsys, case, fragments):
    cols = good_columns()
    form, flags = "chinchilla", ["--n-col", "N", "--d-col", "D"]
    if case == "missing column":
        flags = ["--n-col", "N", "--d-col", "tokens"]
    elif case.startswith("non-positive"):
        cols[case.split()[-1]][2] = 0.0 if case != "non-positive D" else -5.0
    elif case == "NaN":
        cols["loss"][1] = np.nan
    elif case == "too few points":
        cols = {k: v[:5] for k, v in cols.items()}
    elif case == "unknown form":
        form = "cubic"
    elif case == "d and c":
        flags += ["--c-col", "D"]
    elif case == "drop everything":
        flags += ["--drop-top", "12"]
    elif case == "text in a number column":
        cols["N"] = cols["N"].astype(object)
        cols["N"][4] = "lots"
    path = write_csv(tmp_path, **cols) if case != "no such file" else tmp_path / "none.csv"
    code, _, err = run_main(["fit", "--form", form, "--csv", path, *flags, "--bootstrap", 0, "--out", tmp_path],
                            capsys)
    assert_one_line_error(code, err, *fragments)


def test_one_d_form_with_too_few_points_per_slice(tmp_path, capsys):
    cols = good_columns(3)
    code, _, err = run_main(["fit", "--form", "powerlaw", "--csv", write_csv(tmp_path, **cols), "--n-col", "N",
                             "--bootstrap", 0, "--out", tmp_path], capsys)
    assert_one_line_error(code, err, "too few points for powerlaw")


def test_bad_input_through_the_installed_command(tmp_path):
    proc = run_cli("fit", "--form", "kaplan", "--csv", write_csv(tmp_path, **good_columns()), "--n-col", "N",
                   "--d-col", "nope", "--out", tmp_path)
    err = one_line_error(proc)
    assert "'nope'" in err


def test_compare_on_csv(grid_csv, tmp_path, capsys):
    pytest.importorskip("scalingkit.fit.compare")
    code, out, err = run_main(["compare", "--forms", "chinchilla,kaplan", "--splits", 3, "--csv", grid_csv,
                               "--n-col", "params", "--d-col", "tokens", "--out", tmp_path, "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["provenance"]["data_sha256"]
    assert list((tmp_path).glob("compare-*.json"))
    code, _, err = run_main(["compare", "--forms", "chinchilla,powerlaw", "--csv", grid_csv, "--n-col", "params",
                             "--d-col", "tokens"], capsys)
    assert_one_line_error(code, err, "1-d")
