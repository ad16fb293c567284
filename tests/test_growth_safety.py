"""Growing the cube (and upgrading its schema, and writing its attributes) interrupted at every step: SIGKILL, Ctrl-C
or a full disk leaves a readable store with every stored run intact, the old cube or the new one, never a mix; the
next open finishes an interrupted growth and re-running the sweep completes it."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tomllib
import warnings

import numpy as np
import pytest
import xarray as xr

from conftest import REPO, run_cli, tiny_sweep_text
from scalingkit import store
from scalingkit.errors import StoreError
from scalingkit.store import atomic, journal
from scalingkit.sweep import plan
from scalingkit.sweep import spec as sweep

OLD = tiny_sweep_text(widths=(16,), tokens=(3200, 6400))
BIG = tiny_sweep_text(name="big", widths=(16, 24), tokens=(3200, 6400, 1600), lrs=(1e-2, 3e-2))  # N, D and lr grow
PREPARE = ("import sys, tomllib; from scalingkit.sweep import plan, spec; "
           "plan.prepare(sys.argv[1], spec.from_table(tomllib.loads(open(sys.argv[2]).read())))")
UPGRADE = "import sys; from scalingkit import store; store.upgrade(sys.argv[1])"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A store with two trained runs, and the bigger sweep's file."""
    folder = tmp_path_factory.mktemp("growth")
    (folder / "old.toml").write_text(OLD)
    (folder / "big.toml").write_text(BIG)
    base = folder / "base.zarr"
    proc = run_cli("train", folder / "old.toml", "--fill-missing", "--store", base, "--workers", "0", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    return base, folder / "big.toml"


def _copy(base, to):
    shutil.copytree(base, to)
    return to


def _labels(path) -> dict:
    ds = store.open_cube(path)
    return {d: ds[d].values.tolist() for d in ("N", "D", "lr")}


def _runs(path) -> dict:
    """Every finished run's curve and final loss, by its labels."""
    ds = store.open_cube(path)
    out = {}
    for cell in ds["status"].where(ds["status"] == "done", drop=True).stack(run=store.RUN_DIMS)["run"].values:
        run = ds.sel(dict(zip(store.RUN_DIMS, cell)))
        out[cell] = (run["eval_loss"].values.copy(), float(run["final_eval_loss"]))
    return out


def _assert_intact(path, before: dict, more: bool = False) -> None:
    """Every run of `before` finished as it was; no other run finished (unless `more`)."""
    after = _runs(path)
    assert set(after) >= set(before) if more else set(after) == set(before)
    for cell, (curve, final) in before.items():
        np.testing.assert_array_equal(after[cell][0], curve)
        assert after[cell][1] == final


def _interrupt(script: str, args: list, hook: str, sig: int) -> int:
    """Run `script` with a growth or upgrade paused at the hook's step, then send it `sig`. Returns the change's
    step count, as the pause reported it."""
    env = {**os.environ, journal.HOOK: hook, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script, *map(str, args)], cwd=REPO, stderr=subprocess.PIPE,
                            text=True, env=env)
    line = proc.stderr.readline()
    assert "paused at step" in line, line + proc.stderr.read()
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    return int(line.split()[-1])


def test_growth_killed_or_interrupted_at_any_step_leaves_the_old_or_the_new_cube(trained, tmp_path):
    base, big = trained
    old_runs, old_labels = _runs(base), _labels(base)
    grown = _copy(base, tmp_path / "reference.zarr")
    plan.prepare(grown, sweep.from_table(tomllib.loads(BIG)))
    new_labels = _labels(grown)
    total = _interrupt(PREPARE, [_copy(base, tmp_path / "probe.zarr"), big], "grow:0:pause", signal.SIGKILL)
    assert total > 30  # every array's shape is a step of its own
    # both ends (before the journal, its first step; the last steps) and two inside; the full-disk test below
    # walks every fourth step
    steps = sorted({0, 1, total // 3, 2 * total // 3, total - 1, total})
    for trial, step in enumerate(steps):
        cube = _copy(base, tmp_path / f"trial{step}.zarr")
        sig = (signal.SIGKILL, signal.SIGINT)[trial % 2]
        _interrupt(PREPARE, [cube, big], f"grow:{step}:pause", sig)
        labels = _labels(cube)  # readable: the first open finishes an interrupted growth
        assert labels in (old_labels, new_labels), (step, sig, labels)
        assert not journal.pending(cube)
        assert (step >= 1) == (labels == new_labels)  # once journalled, a growth is finished, not lost
        _assert_intact(cube, old_runs)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            plain = xr.open_zarr(cube)  # a notebook's plain open: quiet (consolidated metadata), the same cube
        assert {d: plain.sizes[d] for d in labels} == {d: len(v) for d, v in labels.items()}
        assert len(store.loss_table(cube)) == 2 and (store.open_cube(cube)["d_model"] > 0).all()
        plan.prepare(cube, sweep.from_table(tomllib.loads(BIG)))  # re-running the sweep completes the growth
        assert _labels(cube) == new_labels
        _assert_intact(cube, old_runs)
        assert len(plan.missing_cells(cube, plan.stored_sweeps(cube))) == 12 - 2
    # and the runs the growth added train: the last trial's store, through the command line
    proc = run_cli("train", big, "--fill-missing", "--store", cube, "--workers", "0", "--no-progress")
    assert proc.returncode == 0 and "10 done" in proc.stdout, proc.stdout + proc.stderr
    _assert_intact(cube, old_runs, more=True)
    assert (store.open_cube(cube)["status"] == "done").sum() == 12


def test_growth_on_a_full_disk_is_undone_at_once(trained, tmp_path, monkeypatch):
    base, _ = trained
    old_runs, old_labels = _runs(base), _labels(base)
    bigger = sweep.from_table(tomllib.loads(BIG))
    step = 0
    while True:
        cube = _copy(base, tmp_path / f"full{step}.zarr")
        monkeypatch.setenv(journal.HOOK, f"grow:{step}:enospc")
        try:
            plan.prepare(cube, bigger)
        except StoreError as exc:
            assert "No space left on device" in str(exc)
            assert "as it was" in str(exc) or "unchanged" in str(exc)
        else:
            break  # past the last step: the hook never fired
        monkeypatch.delenv(journal.HOOK)
        assert not journal.pending(cube) and _labels(cube) == old_labels
        _assert_intact(cube, old_runs)
        xr.open_zarr(cube, chunks=None, consolidated=False)
        step += 4  # every fourth step: each is undone the same way
    assert step > 30


def test_an_interrupted_growth_that_cannot_be_finished_is_undone_on_the_next_open(trained, tmp_path):
    base, big = trained
    old_runs, old_labels = _runs(base), _labels(base)
    cube = _copy(base, tmp_path / "cube.zarr")
    _interrupt(PREPARE, [cube, big], "grow:12:pause", signal.SIGKILL)
    journal_doc = json.loads(journal.path_of(cube).read_text())
    broken = next(i for i, s in enumerate(journal_doc["steps"]) if s.get("values") == "N")
    journal_doc["steps"][broken]["new"].append(99)  # more labels than the array holds: this step fails for good
    journal.path_of(cube).write_text(json.dumps(journal_doc))
    assert _labels(cube) == old_labels
    _assert_intact(cube, old_runs)
    assert not journal.pending(cube)


def _as_previous_schema(path):
    """What the store looked like before the latest schema: without the arrays it added."""
    for name in store.cube.ADDED_IN[store.SCHEMA_VERSION]:
        shutil.rmtree(path / name)
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["schema_version"] = store.SCHEMA_VERSION - 1
    (path / "zarr.json").write_text(json.dumps(meta))
    return path


def test_an_interrupted_schema_upgrade_is_finished_and_keeps_every_run(trained, tmp_path):
    base, _ = trained
    old_runs = _runs(base)
    older = _as_previous_schema(_copy(base, tmp_path / "older.zarr"))
    added = store.cube.ADDED_IN[store.SCHEMA_VERSION]
    opened = store.open_cube(older)
    assert all((opened[name] == "").all() if opened[name].dtype == object else opened[name].isnull().all()
               for name in added)  # measurements (or checksums) it never made
    total = _interrupt(UPGRADE, [_copy(older, tmp_path / "probe.zarr")], "upgrade:0:pause", signal.SIGKILL)
    for step in range(total + 1):
        for sig in (signal.SIGKILL, signal.SIGINT):
            cube = _copy(older, tmp_path / f"up{step}-{sig}.zarr")
            _interrupt(UPGRADE, [cube], f"upgrade:{step}:pause", sig)
            version = store.attrs(cube)["schema_version"]
            assert version == (store.SCHEMA_VERSION if step >= 1 else store.SCHEMA_VERSION - 1)
            _assert_intact(cube, old_runs)
            store.upgrade(cube)
            assert store.attrs(cube)["schema_version"] == store.SCHEMA_VERSION
            assert all((cube / name / "zarr.json").exists() for name in added)
            _assert_intact(cube, old_runs)


def test_attributes_are_written_whole_or_not_at_all(trained, tmp_path, monkeypatch):
    cube = _copy(trained[0], tmp_path / "cube.zarr")
    before = (cube / "zarr.json").read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StoreError, match="No space left on device.*as they were"):
        store.set_attrs(cube, sweeps=[])
    monkeypatch.undo()
    assert (cube / "zarr.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube.zarr", "cube.zarr.lock"]  # no stray temporary file
    store.set_attrs(cube, note="kept")
    assert store.attrs(cube)["note"] == "kept" and store.attrs(cube)["sweeps"]
