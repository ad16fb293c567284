"""The real `scalingkit train` / `status` / `table` commands, as a user runs them (subprocesses, real store)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from conftest import REPO, SCALINGKIT, one_line_error, run_cli, tiny_sweep_text
from scalingkit import store


def status_counts(path):
    ds = store.open_cube(path)
    values, counts = np.unique(ds["status"].values, return_counts=True)
    return dict(zip(values, counts))


def test_fill_missing_trains_then_trains_nothing(tmp_path, write_sweep):
    sweep_file = write_sweep(tiny_sweep_text())
    cube = tmp_path / "cube.zarr"
    first = run_cli("train", sweep_file, "--fill-missing", "--store", cube, "--workers", "2", "--no-progress")
    assert first.returncode == 0, first.stderr
    assert "4 done" in first.stdout
    ds = xr.open_zarr(cube, chunks=None, consolidated=False)  # what a notebook does
    assert int((ds["status"] == 1).sum()) == 4
    assert np.isfinite(ds["final_eval_loss"].values).all()
    before = {k: ds[k].values.copy() for k in ("eval_loss", "finished_at")}
    # no sweep argument: the store remembers its sweep
    second = run_cli("train", "--fill-missing", "--store", cube, "--no-progress")
    assert second.returncode == 0, second.stderr
    assert "nothing to train" in second.stdout
    ds = xr.open_zarr(cube, chunks=None, consolidated=False)
    assert np.array_equal(ds["eval_loss"].values, before["eval_loss"], equal_nan=True)
    assert np.array_equal(ds["finished_at"].values, before["finished_at"])
    status = run_cli("status", "--store", cube)
    assert status.returncode == 0 and "done: 4" in status.stdout and "missing: 0" in status.stdout
    table = run_cli("table", "--store", cube)
    assert table.returncode == 0 and "L(N, D) for er64/sp" in table.stdout


def test_adding_a_sweep_trains_only_its_new_cells(tmp_path, write_sweep):
    cube = tmp_path / "cube.zarr"
    assert run_cli("train", write_sweep(tiny_sweep_text(widths=(16,), tokens=(6400,))), "--fill-missing",
                   "--store", cube, "--workers", "0", "--no-progress").returncode == 0
    stored = store.open_cube(cube)["eval_loss"].sel(D=6400).values.copy()
    wider = write_sweep(tiny_sweep_text(name="wider", widths=(16, 24), tokens=(6400,)), "wider.toml")
    proc = run_cli("train", wider, "--fill-missing", "--store", cube, "--workers", "0", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "grew the cube: N +1" in proc.stdout and "trained 1/1 runs" in proc.stdout
    ds = store.open_cube(cube)
    assert np.array_equal(ds["eval_loss"].sel(D=6400, N=ds["N"].values[:1]).values.ravel(), stored.ravel(),
                          equal_nan=True)
    assert status_counts(cube) == {"done": 2}


def _children(pid):
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _start_long_run(tmp_path, write_sweep):
    """A one-run sweep long enough to be caught half-way; partial curves are saved at every point."""
    text = tiny_sweep_text(widths=(32,), tokens=(16 * 20 * 800,), extra_training="checkpoint_seconds = 0.0")
    cube = tmp_path / "cube.zarr"
    proc = subprocess.Popen([*SCALINGKIT, "train", str(write_sweep(text)), "--fill-missing", "--store", str(cube),
                             "--workers", "1", "--no-progress"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        try:
            tokens = zarr.open_group(str(cube), mode="r")["tokens"][0, 0, 0, 0, 0, 0, :]
            if np.isfinite(tokens).sum() >= 3:
                return proc, cube
        except Exception:
            pass  # the cube is not there yet
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the run never saved a partial curve")


def _assert_left_missing_then_rerun_completes(cube):
    assert status_counts(cube) == {"missing": 1}  # never a half-written `done`
    assert "missing: 1" in run_cli("status", "--store", cube).stdout
    rerun = run_cli("train", "--fill-missing", "--store", cube, "--no-progress")
    assert rerun.returncode == 0, rerun.stderr
    assert status_counts(cube) == {"done": 1}
    assert np.isfinite(store.open_cube(cube)["eval_loss"].values).sum() == 8  # the whole curve, rewritten


def test_worker_killed_mid_run_leaves_cell_missing_and_rerun_completes(tmp_path, write_sweep):
    proc, cube = _start_long_run(tmp_path, write_sweep)
    workers = [c for c in _children(proc.pid) if "resource_tracker" not in Path(f"/proc/{c}/cmdline").read_text()]
    assert workers, "no worker process found"
    for w in workers:
        os.kill(w, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in err and "worker process died" in err
    _assert_left_missing_then_rerun_completes(cube)


def test_ctrl_c_leaves_cell_missing_and_rerun_completes(tmp_path, write_sweep):
    proc, cube = _start_long_run(tmp_path, write_sweep)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C: the whole foreground group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert err.strip().splitlines()[-1] == "error: interrupted" and "Traceback" not in err
    _assert_left_missing_then_rerun_completes(cube)


BAD_SWEEPS = {
    "unknown top-level key": ("nmae = 'x'\n" + tiny_sweep_text(), "unknown key 'nmae'"),
    "unknown grid key": (tiny_sweep_text().replace("widths", "widht"), "grid.widht"),
    "missing tokens": (tiny_sweep_text().replace("tokens = [6400, 12800]\n", ""), "grid.tokens is required"),
    "bad type": (tiny_sweep_text().replace("lrs = [0.01]", "lrs = ['fast']"), "grid.lrs"),
    "bad family key": (tiny_sweep_text().replace("edges = 256", "edgez = 256"), "edgez"),
    "unknown kind": (tiny_sweep_text().replace('kind = "er"', 'kind = "lattice"'), "unknown kind"),
    "not toml": ("name = [unclosed", "not valid TOML"),
    "tokens below one step": (tiny_sweep_text(tokens=(100,)), "less than one step"),
    "odd head size": (tiny_sweep_text(widths=(20,)), "heads"),
    "bad training key": (tiny_sweep_text(extra_training="batchsize = 3"), "training.batchsize"),
    "cuda on a machine without it": (tiny_sweep_text(extra_training='device = "cuda"'), "no CUDA device"),
}


@pytest.mark.parametrize("case", sorted(BAD_SWEEPS))
def test_bad_sweep_files_give_one_line_errors(tmp_path, write_sweep, case):
    text, expected = BAD_SWEEPS[case]
    proc = run_cli("train", write_sweep(text), "--fill-missing", "--store", tmp_path / "cube.zarr")
    assert expected in one_line_error(proc)
    assert not (tmp_path / "cube.zarr").exists()


def test_cli_errors_for_missing_files_flags_and_corrupted_stores(tmp_path, write_sweep):
    cube = tmp_path / "cube.zarr"
    assert "does not exist" in one_line_error(run_cli("train", tmp_path / "nope.toml", "--fill-missing",
                                                      "--store", cube))
    assert "no cube" in one_line_error(run_cli("status", "--store", cube))
    assert "no cube" in one_line_error(run_cli("train", "--fill-missing", "--store", cube))
    one_line_error(run_cli("train", "--fil-missing"))
    assert run_cli("train", write_sweep(tiny_sweep_text(widths=(16,), tokens=(6400,))), "--fill-missing",
                   "--store", cube, "--workers", "0", "--no-progress").returncode == 0
    # a store whose status array metadata is damaged: clear error, and the data is still on disk
    status_meta = cube / "status" / "zarr.json"
    good = status_meta.read_text()
    status_meta.write_text(good[: len(good) // 2])
    err = one_line_error(run_cli("status", "--store", cube))
    assert "corrupted" in err
    err = one_line_error(run_cli("train", "--fill-missing", "--store", cube))
    assert "corrupted" in err
    assert any((cube / "eval_loss").rglob("*")), "stored curves were removed"
    status_meta.write_text(good)
    assert "done: 1" in run_cli("status", "--store", cube).stdout


def test_diverged_run_is_stored_as_diverged_and_not_retrained(tmp_path, write_sweep):
    text = tiny_sweep_text(widths=(16,), tokens=(6400,), lrs=(1e-2, 1e8),
                           extra_training="grad_clip = 0.0\nwarmup_fraction = 0.0")
    sweep_file, cube = write_sweep(text), tmp_path / "cube.zarr"
    proc = run_cli("train", sweep_file, "--fill-missing", "--store", cube, "--workers", "0", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "1 done, 1 diverged" in proc.stdout
    ds = store.open_cube(cube)
    run = ds.sel(lr=1e8).squeeze()
    assert run["status"].item() == "diverged" and "became" in str(run["message"].values)
    assert "diverged: 1" in run_cli("status", "--store", cube).stdout
    table = store.loss_table(cube)
    assert list(table["best_lr"]) == [0.01]  # a diverged run never counts as the best
    again = run_cli("train", "--fill-missing", "--store", cube, "--no-progress")
    assert "nothing to train" in again.stdout
