"""Reproducible by default: how each run was trained (alone, or in a stack of K variants) is in the cube, what
`--batch-variants auto` chose per shape is in the store's attributes, and a re-run follows that choice instead of
probing again, so a retrained run's curve is bit for bit the first one's."""
import json
import shutil
import tomllib

import numpy as np

from conftest import tiny_sweep_text
from scalingkit import store
from scalingkit.run import runner
from scalingkit.store import adopt
from scalingkit.sweep import spec as sweep
from scalingkit.train.probe import Probe

# 160 steps a run, 3 runs of one shape: enough work for "auto" to time the shape (train/probe.py)
TEXT = tiny_sweep_text(widths=(16,), tokens=(16 * 20 * 160,), lrs=(1e-2, 3e-3, 3e-2))
SHAPE = "er64/sp/2x16"


class Decide:
    """A stand-in for the timing probe, whose verdict on a busy machine is noise: says batching pays (or not), and
    counts its calls."""

    def __init__(self, pays: bool):
        self.speedup, self.calls = (2.0 if pays else 0.5), 0

    def __call__(self, items, k):
        self.calls += 1
        return Probe(k, self.speedup / k, 1.0, 0.0)


def _fill(path, decide, lines=None, batch_variants="auto"):
    sw = sweep.from_table(tomllib.loads(TEXT))
    return runner.fill_missing(path, sw, workers=0, progress=False, echo=(lines if lines is not None else []).append,
                               batch_variants=batch_variants, decide=decide)


def _runs(path):
    ds = store.open_cube(path).squeeze()
    return {float(lr): (ds["eval_loss"].sel(lr=lr).values.copy(), ds["train_loss"].sel(lr=lr).values.copy(),
                        float(ds["stack_variants"].sel(lr=lr))) for lr in ds["lr"].values}


def _forget(path, lrs):
    """As if these runs had never been written whole (killed before their checksum, the last write: a run whose
    checksum verifies would be adopted, not trained again)."""
    cells = [c for c in sweep.from_table(tomllib.loads(TEXT)).cells() if c.lr in lrs]
    with store.lock(path):
        adopt.clear_checksums(path, cells)
        store.RunWriter(path).write_status([(c, "missing") for c in cells])


def test_the_batching_choice_is_recorded_and_a_rerun_follows_it(tmp_path):
    path = tmp_path / "cube.zarr"
    first = Decide(pays=True)
    assert _fill(path, first).counts["done"] == 3 and first.calls == 1
    recorded = store.attrs(path)["batching"]["cpu"][SHAPE]
    assert recorded["stacked"] and recorded["k"] == 3 and "probe" in recorded["reason"]
    runs = _runs(path)
    assert {v[2] for v in runs.values()} == {3.0}  # each run: trained in a stack of 3
    # a re-run of two of the runs, on a machine where the probe would now say "do not batch": not asked
    for lrs in ((1e-2, 3e-2), (3e-3,)):
        again, lines = Decide(pays=False), []
        _forget(path, lrs)
        assert _fill(path, again, lines).counts["done"] == len(lrs)
        assert again.calls == 0
        assert any(line.startswith(SHAPE) and "as recorded in the store" in line and "not probed again" in line
                   for line in lines), lines
        rerun = _runs(path)
        for lr in lrs:  # the batched engine again, in a stack of 2 or of 1: the very same numbers
            assert rerun[lr][2] == len(lrs)
            np.testing.assert_array_equal(rerun[lr][0], runs[lr][0])
            np.testing.assert_array_equal(rerun[lr][1], runs[lr][1])
    assert store.attrs(path)["batching"]["cpu"][SHAPE] == recorded


def test_a_run_trained_alone_records_it_and_an_explicit_choice_leaves_the_record_alone(tmp_path):
    path = tmp_path / "cube.zarr"
    assert _fill(path, Decide(pays=False)).counts["done"] == 3
    assert store.attrs(path)["batching"]["cpu"][SHAPE]["stacked"] is False
    alone = _runs(path)
    assert {v[2] for v in alone.values()} == {0.0}  # 0: trained alone, by engine.train
    explicit = tmp_path / "explicit.zarr"
    shutil.copytree(path, explicit)
    _forget(explicit, (1e-2, 3e-3, 3e-2))
    _fill(explicit, Decide(pays=False), batch_variants=3)  # the user's own choice: followed, not recorded
    assert {v[2] for v in _runs(explicit).values()} == {3.0}
    assert store.attrs(explicit)["batching"] == store.attrs(path)["batching"]
    # the batched engine differs from a lone run in the last digits only: what the recorded choice keeps stable
    diff = max(np.nanmax(np.abs(_runs(explicit)[lr][0] - alone[lr][0])) for lr in alone)
    assert 0 < diff < 1e-4


def test_a_store_of_schema_2_reads_stack_variants_as_unknown_and_is_upgraded_without_retraining(tmp_path):
    path = tmp_path / "cube.zarr"
    _fill(path, Decide(pays=True))
    before = _runs(path)
    for name in ("stack_variants", store.CHECKSUM):  # what a store written before schema 3 looks like
        shutil.rmtree(path / name)
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["schema_version"] = 2
    (path / "zarr.json").write_text(json.dumps(meta))
    assert store.open_cube(path)["stack_variants"].isnull().all()
    report = runner.fill_missing(path, None, workers=0, progress=False, echo=lambda *a: None)
    assert report.planned == 0  # nothing retrained for the new variable
    assert store.attrs(path)["schema_version"] == store.SCHEMA_VERSION
    after = _runs(path)
    assert all(np.isnan(after[lr][2]) and np.array_equal(after[lr][0], before[lr][0]) for lr in before)


def test_many_shapes_are_told_in_one_line_per_way_of_training_them():
    from scalingkit.sweep.batching import Choice

    def probed(width, speed, memory):
        return Choice(f"er128/sp/2x{width}", 3, memory, f"probe: batch of 3 {speed}x one by one", stacked=True)

    few = runner._choice_lines([probed(24, 1.58, 599), probed(32, 1.44, 450)])
    assert few == ["er128/sp/2x24: batches of up to 3 (probe: batch of 3 1.58x one by one; memory allows 599)",
                   "er128/sp/2x32: batches of up to 3 (probe: batch of 3 1.44x one by one; memory allows 450)"]
    alone = Choice("er128/sp/2x64", 1, 222, "probe: batch of 3 0.9x one by one")
    many = runner._choice_lines([probed(24, 1.58, 599), probed(32, 1.44, 450), probed(40, 1.38, 360), alone])
    assert many == ["er128/sp/2x24, 2x32, 2x40: batches of up to 3 (probe: 1.38x-1.58x as fast as one by one; "
                    "memory allows 360-599)",
                    "er128/sp/2x64: one by one (probe: batch of 3 0.9x one by one; memory allows 222)"]
