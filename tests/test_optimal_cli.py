"""`scalingkit optimal` end to end on a real (synthetic) cube: the table, the JSON, the saved result, the figures,
and one-line errors for bad input.

The cube is small (6 widths x 6 budgets, 12 points a curve) and the settings tiny (10 bootstrap draws, a 16-wide
MLP for 100 epochs, a 30-point grid): this file checks the command's plumbing, not the estimates
(test_optimal_recovery does those).
"""
import json

import matplotlib.image
import pytest

from conftest import one_line_error, run_cli
from scalingkit.optimal import load_report
from scalingkit.run.synthetic import chinchilla_cube

FAST = ["--bootstrap", "10", "--grid", "30", "--mlp-epochs", "100", "--mlp-hidden", "16"]
METHODS = ("envelope", "isoflop-parabola", "isoflop-akima", "parametric", "surrogate-mlp", "surrogate-kernel")


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    path, _ = chinchilla_cube(tmp_path_factory.mktemp("cli") / "store" / "cube.zarr", widths=(16, 24, 32, 48, 64, 96),
                              tokens=(100_000, 200_000, 400_000, 800_000, 1_600_000, 3_200_000), lrs=(0.01,),
                              points=12)
    return path


def test_all_methods_print_save_and_draw_beside_the_store(cube):
    proc = run_cli("optimal", "--method", "all", "--store", cube, "--budget", "1e12", "--budget", "1e13", *FAST)
    assert proc.returncode == 0, proc.stderr
    for method in METHODS:
        assert method in proc.stdout
    assert "at C = 1e+12" in proc.stdout and "at C = 1e+13" in proc.stdout
    assert "95% intervals" in proc.stdout
    saved = list((cube.parent / "fits").glob("optimal-*.json"))
    assert len(saved) == 1
    report = load_report(saved[0])
    assert report.methods == list(METHODS)
    assert report.settings["budgets"] == [1e12, 1e13] and report.provenance["data_sha256"]
    figures = sorted((cube.parent / "figures").glob("optimal-*.png"))
    assert [f.name.split("-")[1] for f in figures] == ["allocation", "compute", "isoflop"]
    for f in figures:
        assert f.stat().st_size > 10_000
        image = matplotlib.image.imread(f)
        assert image.shape[0] > 300 and image.shape[1] > 500
        assert image[..., :3].std() > 0.05  # something was drawn


def test_json_and_out_directory(cube, tmp_path):
    proc = run_cli("optimal", "--method", "envelope,parametric", "--store", cube, "--json", "--out", tmp_path,
                   "--n-convention", "nonembedding", "--flops", "exact", *FAST)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [r["method"] for r in doc["results"]] == ["envelope", "parametric"]
    assert doc["settings"]["n_convention"] == "nonembedding" and doc["settings"]["flops"] == "exact"
    for r in doc["results"]:
        assert set(r["params"]) >= {"gamma", "a", "b"}
        assert set(r["budgets"][0]["values"]) == {"N_opt", "D_opt", "tokens_per_param"}
    assert list(tmp_path.glob("optimal-*.json")) and list(tmp_path.glob("optimal-compute-*.png"))
    # the envelope is over each run's final point by default (a cosine run's earlier points are not what a run of
    # that length reaches); --envelope-min-fraction 0 takes every logged point
    envelope = doc["results"][0]
    assert doc["settings"]["envelope_min_fraction"] == 1.0 and envelope["diagnostics"]["min_fraction"] == 1.0
    on = envelope["diagnostics"]["notes"][0]  # "K envelope points from R of M runs, ...; F are final points"
    assert on.split(" envelope points")[0] == on.split("; ")[-1].split(" are final")[0], on
    every = json.loads(run_cli("optimal", "--method", "envelope", "--store", cube, "--json", "--out", tmp_path,
                               "--envelope-min-fraction", "0", *FAST).stdout)["results"][0]
    notes = every["diagnostics"]["notes"][0]
    assert int(notes.split(" envelope points")[0]) > int(notes.split("; ")[-1].split(" are final")[0]), notes


@pytest.mark.parametrize("args, message", [
    (["--method", "bogus"], "unknown method 'bogus'"),
    (["--store", "nowhere/cube.zarr"], "no cube at nowhere/cube.zarr"),
    (["--family", "nope"], "family 'nope' is not in the cube"),
    (["--budget", "-1"], "budgets must be positive"),
    (["--n-col", "N"], "describe a CSV"),
    (["--method", "surrogate", "--surrogates", "mlp,forest"], "--surrogates takes"),
])
def test_bad_input_on_the_cube_is_a_one_line_error(cube, args, message):
    store = [] if "--store" in args else ["--store", cube]
    err = one_line_error(run_cli("optimal", *store, *args, "--no-figures"))
    assert message in err


@pytest.mark.parametrize("extra, message", [
    (["--n-col", "params", "--d-col", "tokens", "--loss-col", "nope"], "column 'nope' is not in"),
    (["--n-col", "params", "--d-col", "tokens", "--flops", "exact"], "--flops exact needs the cube"),
    (["--n-col", "params"], "say which columns hold N and D"),
    (["--n-col", "params", "--d-col", "tokens", "--c-col", "tokens"], "either --d-col"),
])
def test_bad_csv_input_is_a_one_line_error(tmp_path, extra, message):
    csv = tmp_path / "runs.csv"
    csv.write_text("params,tokens,loss\n1e6,1e8,3.0\n2e6,1e8,2.9\n")
    err = one_line_error(run_cli("optimal", "--csv", csv, *extra, "--no-figures"))
    assert message in err


def test_too_little_data_is_refused_before_any_method_runs(tmp_path):
    # two runs cannot identify an allocation: refused in one line (exit 2) rather than every method failing after
    # it ran (issue #14: data that cannot identify a law gets a clear error, never confident exponents)
    csv = tmp_path / "runs.csv"
    csv.write_text("params,tokens,loss\n1e6,1e8,3.0\n2e6,1e8,2.9\n")
    proc = run_cli("optimal", "--csv", csv, "--n-col", "params", "--d-col", "tokens", "--out", tmp_path,
                   "--no-figures")
    assert "not identifiable: 2 distinct N" in one_line_error(proc)
    assert not list(tmp_path.glob("optimal-*.json"))  # nothing saved
