"""The results index: every saved result gets one row in index.csv beside it, and `scalingkit results` lists them."""
import csv
import json

import numpy as np
import pandas as pd
import pytest

from conftest import one_line_error, run_cli
from scalingkit.fit import Chinchilla, fit_slices, save_result
from scalingkit.fit.results import INDEX_COLUMNS, read_index, save_document, source_record
from scalingkit.optimal import from_csv, run_methods, save_report


def grid_table(seed=0):
    rng = np.random.default_rng(seed)
    N = np.repeat(np.geomspace(1e6, 1e9, 5), 4)
    D = np.tile(np.geomspace(1e8, 1e11, 4), 5)
    L = (1.7 + 400.0 * N**-0.34 + 2000.0 * D**-0.37) * np.exp(rng.normal(0, 0.005, len(N)))
    return pd.DataFrame({"N": N, "D": D, "loss": L})


def rows(folder):
    with open(folder / "index.csv") as fh:
        return list(csv.DictReader(fh))


def test_each_save_adds_one_row_and_a_resave_replaces_it(tmp_path):
    df = grid_table()
    res = Chinchilla(bootstrap=0, seed=3, workers=1).fit(df, label="family=er,param=sp")
    res.provenance["group"] = {"family": "er", "param": "sp"}
    res.provenance["loss"] = "exact"
    res.provenance["source"] = source_record(store="store/cube.zarr", n_convention="total")
    path = save_result(res, tmp_path)
    [row] = rows(tmp_path)
    assert tuple(row) == INDEX_COLUMNS
    assert row["kind"] == "fit" and row["form"] == "chinchilla" and row["file"] == path.name
    assert row["source"] == "store/cube.zarr" and row["family"] == "er" and row["param"] == "sp"
    assert row["loss"] == "exact" and row["n_convention"] == "total" and row["drop_top"] == "0"
    assert row["data_sha256"] == res.provenance["data_sha256"] and len(row["data_sha256"]) == 64
    assert json.loads(row["settings"])["seed"] == 3
    assert save_result(res, tmp_path) == path
    assert len(rows(tmp_path)) == 1  # the same file saved again: its row replaced, not doubled
    coll = fit_slices(df, "powerlaw", bootstrap=0)
    save_result(coll, tmp_path)
    assert [r["form"] for r in rows(tmp_path)] == ["chinchilla", "powerlaw"]


def test_a_csv_result_records_its_file_hash_and_column_mapping(tmp_path):
    csv_path = tmp_path / "runs.csv"
    df = grid_table()
    df.assign(C=6 * df["N"] * df["D"]).rename(columns={"N": "params", "C": "flops"}).drop(columns="D").to_csv(
        csv_path, index=False)
    res = Chinchilla(bootstrap=0, workers=1).fit(df)
    res.provenance["source"] = source_record(csv=csv_path, n_col="params", c_col="flops", loss_col="loss",
                                             drop_top=2)
    save_result(res, tmp_path / "fits")
    [row] = rows(tmp_path / "fits")
    import hashlib

    assert row["source"] == str(csv_path)
    assert row["source_sha256"] == hashlib.sha256(csv_path.read_bytes()).hexdigest()
    assert (row["n_col"], row["d_col"], row["c_col"], row["loss_col"], row["drop_top"]) == \
        ("params", "", "flops", "loss", "2")
    assert row["loss"] == "csv"
    # compute-optimal reports write their row through the same index, with their source
    [inputs] = from_csv(csv_path, n_col="params", c_col="flops", drop_top=2)
    report = run_methods(inputs, ["parametric"], bootstrap=0)
    save_report(report, tmp_path / "fits")
    opt = rows(tmp_path / "fits")[-1]
    assert opt["kind"] == "optimal" and opt["form"] == "parametric" and opt["c_col"] == "flops"
    assert opt["source"] == str(csv_path) and opt["drop_top"] == "2"
    assert json.loads(opt["settings"])["bootstrap"] == 0 and "grid" not in json.loads(opt["settings"])
    # and a comparison, named by its label
    save_document({"kind": "comparison", "forms": ["chinchilla", "kaplan"], "settings": {"splits": 3},
                   "provenance": {"label": "family=er,param=mup", "data_sha256": "ab" * 32}}, "compare",
                  tmp_path / "fits")
    cmp_row = rows(tmp_path / "fits")[-1]
    assert (cmp_row["kind"], cmp_row["form"], cmp_row["family"], cmp_row["param"]) == \
        ("compare", "chinchilla,kaplan", "er", "mup")


def test_results_lists_rows_and_unindexed_files(tmp_path):
    store = tmp_path / "cube.zarr"
    fits = tmp_path / "fits"
    res = Chinchilla(bootstrap=0, workers=1).fit(grid_table())
    save_result(res, fits)
    legacy = fits / "powerlaw-legacy.json"  # saved before the index existed
    legacy.write_text(json.dumps(fit_slices(grid_table(1), "powerlaw", bootstrap=0).to_dict()))
    (fits / "notes.json").write_text("[1, 2]")  # not a result: ignored
    listed = read_index(fits)
    assert [r["file"] for r in listed] == [next(fits.glob("chinchilla-*.json")).name, legacy.name]
    assert listed[1]["kind"] == "fit (unindexed)"
    proc = run_cli("results", "--store", store, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [r["form"] for r in doc] == ["chinchilla", "powerlaw"] and doc[0]["data_sha256"] == \
        res.provenance["data_sha256"]
    proc = run_cli("results", "--store", store)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["time", "kind", "form"] and len(lines) == 3
    assert "chinchilla" in lines[1] and "unindexed" in lines[2]


def test_results_says_when_there_is_nothing_and_fails_cleanly_on_bad_input(tmp_path):
    proc = run_cli("results", "--store", tmp_path / "cube.zarr")
    assert proc.returncode == 0 and "no saved results" in proc.stdout
    err = one_line_error(run_cli("results", "--store", tmp_path / "cube.zarr", "--fits", tmp_path / "missing"))
    assert "no results folder" in err


@pytest.mark.parametrize("bad", ["time,kind,file\n\"unterminated\n", "a,b\n1,2\n", "time,kind,file\n1,2\n"])
def test_a_damaged_index_is_a_one_line_error(tmp_path, bad):
    (tmp_path / "fits").mkdir()
    (tmp_path / "fits" / "index.csv").write_text(bad)
    proc = run_cli("results", "--store", tmp_path / "cube.zarr")
    err = one_line_error(proc)
    assert "index" in err
