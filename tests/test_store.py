"""The cube: creation, round trip, growth that keeps stored runs, concurrent writers, corrupted stores."""
import multiprocessing as mp

import numpy as np
import pytest
import xarray as xr

from conftest import tiny_sweep_text
from scalingkit import store
from scalingkit.errors import StoreError
from scalingkit.store import Cell, RunWriter
from scalingkit.sweep import plan
from scalingkit.sweep import spec as sweep
from scalingkit.train.engine import RunResult


def make_store(tmp_path, text=None):
    path = tmp_path / "cube.zarr"
    sw = sweep.from_table(__import__("tomllib").loads(text or tiny_sweep_text()))
    plan.prepare(path, sw)
    return path, sw


def fake_result(seed, n=5):
    # a synthetic curve: the store must keep exactly what it is given
    rng = np.random.default_rng(seed)
    steps = np.arange(1, n + 1) * 3
    return RunResult("done", steps, steps * 320.0, rng.random(n) + 2, rng.random(n) + 2, rng.random(n) * 1e-2, 1.5)


def test_created_cube_has_the_designed_schema(tmp_path):
    path, sw = make_store(tmp_path)
    ds = xr.open_zarr(path, chunks=None, consolidated=False)
    assert tuple(ds["eval_loss"].dims) == ("family", "param", "N", "D", "lr", "seed", "point")
    assert tuple(ds["status"].dims) == ("family", "param", "N", "D", "lr", "seed")
    assert ds["status"].attrs["flag_meanings"] == "missing done diverged failed"
    assert (ds["status"].values == 0).all()  # everything missing
    assert np.isnan(ds["eval_loss"].values).all()
    assert list(ds["d_model"].values) == [16, 32]
    # N labels the shape without the embedding; n_params counts it
    assert (ds["n_params"].sel(family="er64").values - ds["N"].values == 64 * ds["d_model"].values).all()
    assert ds.attrs["schema_version"] == store.SCHEMA_VERSION
    fam = ds.attrs["families"]["er64"]
    assert fam["entropy_rate"] == pytest.approx(float(ds["entropy_rate"].sel(family="er64")))
    assert ds.attrs["sweeps"][0]["name"] == "tiny"
    assert "torch" in ds.attrs["versions"]
    # one run = one chunk along every run dimension
    assert ds["eval_loss"].encoding["chunks"] == (1, 1, 1, 1, 1, 1, 8)


def test_round_trip_of_a_run(tmp_path):
    path, sw = make_store(tmp_path)
    cell = sw.cells()[1]
    result = fake_result(0)
    writer = RunWriter(path)
    writer.write_curve(cell, result)
    writer.write_run_values(cell, {"final_eval_loss": 2.5, "config_hash": "abc", "wall_seconds": 1.5})
    writer.write_status([(cell, "done")])
    ds = store.open_cube(path)
    run = ds.sel(family=cell.family, param=cell.param, N=cell.N, D=cell.D, lr=cell.lr, seed=cell.seed)
    n = len(result.steps)
    assert np.array_equal(run["eval_loss"].values[:n], result.eval_loss)
    assert np.array_equal(run["tokens"].values[:n], result.tokens)
    assert np.isnan(run["eval_loss"].values[n:]).all()
    assert float(run["final_eval_loss"]) == 2.5 and str(run["config_hash"].values) == "abc"
    assert run["status"].item() == "done"
    # every other run untouched
    others = ds["status"].values.ravel()
    assert sorted(others) == ["done"] + ["missing"] * (len(others) - 1)


def test_growing_keeps_every_stored_run(tmp_path):
    path, sw = make_store(tmp_path)
    writer = RunWriter(path)
    results = {cell: fake_result(i) for i, cell in enumerate(sw.cells())}
    for cell, res in results.items():
        writer.write_curve(cell, res)
    writer.write_status([(c, "done") for c in results])
    bigger = sweep.from_table(__import__("tomllib").loads(
        tiny_sweep_text(name="bigger", widths=(16, 24, 32), tokens=(6400, 12800, 3200), lrs=(1e-2, 3e-3))))
    info = plan.prepare(path, bigger)
    assert set(info["added"]) == {"N", "D", "lr"}
    ds = store.open_cube(path)
    assert list(ds["d_model"].values) == [16, 24, 32]  # open_cube sorts labels
    assert list(ds["D"].values) == [3200, 6400, 12800]
    for cell, res in results.items():
        run = ds.sel(family=cell.family, param=cell.param, N=cell.N, D=cell.D, lr=cell.lr, seed=cell.seed)
        assert run["status"].item() == "done"
        assert np.array_equal(run["eval_loss"].values[:5], res.eval_loss)
    assert (ds["status"] == "done").sum() == len(results)
    assert len(plan.missing_cells(path, [bigger])) == len(bigger.cells()) - len(results)
    # both sweeps are remembered
    assert [s.name for s in plan.stored_sweeps(path)] == ["tiny", "bigger"]


def _writer_process(path, cells, seed_offset):
    writer = RunWriter(path)
    for i, cell in enumerate(cells):
        writer.write_curve(cell, fake_result(seed_offset + i))
        writer.write_checksum(cell, "done")  # a worker's last write; then its coordinator records the run
        with store.lock(path):
            RunWriter(path).write_status([(cell, "done")])


def test_two_processes_writing_different_runs_lose_nothing(tmp_path):
    text = tiny_sweep_text(widths=(16, 32), tokens=(6400, 12800, 25600), lrs=(1e-2, 3e-3, 1e-3), seeds=(0, 1))
    path, sw = make_store(tmp_path, text)
    cells = sw.cells()  # 36 runs
    halves = [cells[0::2], cells[1::2]]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer_process, args=(str(path), halves[k], 1000 * k)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    ds = store.open_cube(path)
    assert (ds["status"] == "done").sum() == len(cells)
    for k in range(2):
        for i, cell in enumerate(halves[k]):
            run = ds.sel(family=cell.family, param=cell.param, N=cell.N, D=cell.D, lr=cell.lr, seed=cell.seed)
            assert np.array_equal(run["eval_loss"].values[:5], fake_result(1000 * k + i).eval_loss)


def test_best_loss_keeps_the_argmin(tmp_path):
    text = tiny_sweep_text(widths=(16,), tokens=(6400,), lrs=(1e-2, 3e-3, 1e-3), seeds=(0, 1))
    path, sw = make_store(tmp_path, text)
    writer = RunWriter(path)
    losses = {}
    for i, cell in enumerate(sw.cells()):
        losses[cell] = 3.0 - 0.1 * ((i * 7) % 6)
        writer.write_run_values(cell, {"final_eval_loss": losses[cell]})
    done = sw.cells()[:-1]  # the last run is not finished: it must not count even if its loss is lowest
    writer.write_run_values(sw.cells()[-1], {"final_eval_loss": 0.1})
    writer.write_status([(c, "done") for c in done])
    table = store.loss_table(path)
    best_cell = min(done, key=losses.get)
    assert len(table) == 1
    row = table.iloc[0]
    assert row["loss"] == pytest.approx(losses[best_cell])
    assert row["best_lr"] == pytest.approx(best_cell.lr) and row["best_seed"] == best_cell.seed
    assert row["N"] == best_cell.N + 64 * 16  # total convention by default
    assert store.loss_table(path, n_convention="nonembedding").iloc[0]["N"] == best_cell.N


def test_corrupted_store_gives_a_store_error(tmp_path):
    path, _ = make_store(tmp_path)
    (path / "zarr.json").write_text("{ not json")
    with pytest.raises(StoreError, match="corrupted"):
        store.read_status(path)
    with pytest.raises(StoreError, match="no cube"):
        store.read_status(tmp_path / "nowhere.zarr")


def test_store_from_before_a_new_setting_still_accepts_its_sweep(tmp_path):
    path, sw = make_store(tmp_path)
    training = dict(store.attrs(path)["training"])
    training.pop("mup_base_width")  # as written by a scalingkit that did not have the setting yet
    store.set_attrs(path, training=training)
    plan.prepare(path, sw)  # no error: the missing setting takes its default
    other = sweep.from_table(__import__("tomllib").loads(tiny_sweep_text(extra_training="mup_base_width = 64")))
    with pytest.raises(Exception, match="mup_base_width"):
        plan.prepare(path, other)


def test_a_sweep_stored_by_an_older_version_is_not_recorded_twice(tmp_path):
    """A sweep table stored before a setting existed, re-run now, is the same sweep: one record, and a store that
    already holds both versions reads back one sweep (status --brackets counted every cell twice)."""
    path, sw = make_store(tmp_path)
    old = __import__("copy").deepcopy(store.attrs(path)["sweeps"][0])
    old["training"].pop("mup_base_width")  # as an older scalingkit wrote it
    store.set_attrs(path, sweeps=[old])
    plan.prepare(path, sw)
    assert len(store.attrs(path)["sweeps"]) == 1 and len(plan.stored_sweeps(path)) == 1
    store.set_attrs(path, sweeps=[old, sw.source])  # what the earlier bug left behind
    assert [s.source for s in plan.stored_sweeps(path)] == [sw.source]
    edited = sweep.from_table(__import__("tomllib").loads(tiny_sweep_text(lrs=(1e-2, 3e-2))))
    store.set_attrs(path, sweeps=[sw.source, edited.source])  # an edited sweep appended by an earlier version
    assert [s.source for s in plan.stored_sweeps(path)] == [edited.source]  # the latest version counts
    store.set_attrs(path, sweeps=[sw.source])
    other = sweep.from_table(__import__("tomllib").loads(tiny_sweep_text(name="other", tokens=(25600,))))
    plan.prepare(path, other)  # a sweep of another name is recorded beside it
    assert [s.name for s in plan.stored_sweeps(path)] == ["tiny", "other"]


def test_an_edited_sweep_replaces_its_stored_version_and_keeps_every_run(tmp_path):
    path, sw = make_store(tmp_path)
    RunWriter(path).write_curve(sw.cells()[0], fake_result(0))
    edited = sweep.from_table(__import__("tomllib").loads(tiny_sweep_text(lrs=(1e-2, 3e-2))))  # same name
    info = plan.prepare(path, edited)
    assert info["replaced"] == "tiny"
    assert [s.source for s in plan.stored_sweeps(path)] == [edited.source]
    ds = store.open_cube(path)
    cell = sw.cells()[0]
    kept = ds["eval_loss"].sel(family=cell.family, param=cell.param, N=cell.N, D=cell.D, lr=cell.lr, seed=cell.seed)
    np.testing.assert_array_equal(kept.values[:5], fake_result(0).eval_loss)
