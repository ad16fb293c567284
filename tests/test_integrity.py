"""Integrity you can check: every finished run carries a checksum; a flipped byte, a deleted chunk or an unreadable
one is found by `status --verify`, refused by every read that would use it (one line naming the run), and repaired
by `train --redo-damaged`, which retrains exactly those runs and touches nothing else. `train --redo` retrains the
runs it names. The cube opens quietly in a plain `xr.open_zarr`, and `status` and `table` label N alike."""
import json
import shutil
import tomllib
import warnings

import numpy as np
import pytest
import xarray as xr
import zarr

from conftest import run_cli, tiny_sweep_text
from scalingkit import store
from scalingkit.cli import tables
from scalingkit.errors import StoreError, UserError
from scalingkit.store import claims, verify
from scalingkit.sweep import plan
from scalingkit.sweep import spec as sweep

SWEEP = tiny_sweep_text(widths=(16, 32), tokens=(3200, 6400))  # 4 runs
TRAIN = ("--workers", "0", "--no-progress", "--batch-variants", "1")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("integrity")
    (folder / "tiny.toml").write_text(SWEEP)
    base = folder / "base.zarr"
    proc = run_cli("train", folder / "tiny.toml", "--fill-missing", "--store", base, *TRAIN)
    assert proc.returncode == 0 and "4 done" in proc.stdout, proc.stdout + proc.stderr
    return base


def _copy(base, to):
    shutil.copytree(base, to)
    return to


def _cells(path) -> list[store.Cell]:
    ds = store.open_cube(path, verify=False)
    return [store.Cell(*(x.item() if hasattr(x, "item") else x for x in cell))
            for cell in ds["status"].stack(run=store.RUN_DIMS)["run"].values]


def _chunk(path, name, cell) -> "Path":
    idx = store.RunWriter(path).index(cell)
    return path.joinpath(name, "c", *map(str, idx), *(("0",) if name in store.CURVE_VARS else ()))


def _files(path, cells) -> dict:
    """Every chunk file of these runs (all run arrays), by its path inside the store: their bytes."""
    out = {}
    for cell in cells:
        for name in (*store.CURVE_VARS, *store.RUN_FLOAT_VARS, *store.RUN_STR_VARS, store.CHECKSUM):
            f = _chunk(path, name, cell)
            out[str(f.relative_to(path))] = f.read_bytes() if f.exists() else None
    return out


def test_a_flipped_byte_and_a_deleted_chunk_are_found_refused_and_redone(trained, tmp_path):
    cube = _copy(trained, tmp_path / "cube.zarr")
    before = store.loss_table(cube)
    flipped, deleted, *others = _cells(cube)
    good = _files(cube, others)
    opened = store.open_cube(cube)
    values = {name: opened[name].values.copy() for name in ("eval_loss", "exact_loss", "final_exact_loss",
                                                            "final_exact_loss_se", "config_hash")}
    raw = zarr.open_array(str(cube / "final_exact_loss"), mode="r")
    idx = store.RunWriter(cube).index(flipped)
    was = float(raw[idx])
    chunk = _chunk(cube, "final_exact_loss", flipped)
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 0x01  # the float's top byte, stored raw inside the zstd frame: still decodes, to another number
    chunk.write_bytes(bytes(data))
    assert float(raw[idx]) != was and np.isfinite(float(raw[idx]))  # what a plain read would now use, silently
    _chunk(cube, "final_exact_loss", deleted).unlink()  # reads back NaN: the family would fall back to sampled

    status = run_cli("status", "--store", cube, "--verify")
    assert status.returncode == 1, status.stdout + status.stderr
    assert f"damaged: {flipped}: final_exact_loss differs" in status.stdout, status.stdout
    assert f"damaged: {deleted}: final_exact_loss chunk missing" in status.stdout, status.stdout
    assert "4 finished runs checked against their checksums: 2 ok, 2 damaged" in status.stdout
    report = verify.verify(cube)
    assert [d.cell for d in report.damaged] == sorted([flipped, deleted], key=lambda c: store.RunWriter(cube).index(c))

    fit = run_cli("fit", "--form", "powerlaw", "--store", cube)
    err = fit.stderr.strip()
    assert fit.returncode == 2 and "Traceback" not in fit.stderr and len(err.splitlines()) == 1, fit.stderr
    assert err.startswith("error:") and str(flipped) in err and str(deleted) in err, err
    assert "2 runs are damaged" in err and "scalingkit train --redo-damaged" in err, err
    with pytest.raises(StoreError, match="damaged"):
        store.loss_table(cube, loss="exact")

    redo = run_cli("train", "--redo-damaged", "--store", cube, *TRAIN)
    assert redo.returncode == 0, redo.stdout + redo.stderr
    assert "redo: 2 runs" in redo.stdout and "trained 2/2 runs: 2 done" in redo.stdout, redo.stdout
    assert verify.verify(cube).damaged == []
    assert _files(cube, others) == good  # every other run byte for byte as it was
    after = store.open_cube(cube)
    for name, stored in values.items():
        np.testing.assert_array_equal(after[name].values, stored)  # retrained: the same numbers
    assert float(after["final_exact_loss"].sel(dict(zip(store.RUN_DIMS, flipped.labels())))) == was
    assert store.loss_table(cube).equals(before)
    claimed = [e["cell"] for e in claims.log(cube) if e["event"] == "claim"]
    assert sorted(map(tuple, claimed)) == sorted(c.labels() for c in (flipped, deleted))  # through the claims


def test_an_unreadable_chunk_names_its_run_in_every_read(trained, tmp_path):
    """A chunk that no longer decodes gave 'internal error' and dozens of lines of asyncio noise."""
    cube = _copy(trained, tmp_path / "cube.zarr")
    cell = max(_cells(cube), key=lambda c: (c.D, c.N))  # a curve `plot` draws (the largest D's)
    _chunk(cube, "exact_loss", cell).write_bytes(b"garbage, not a zstd frame")
    for command in (("optimal", "--method", "envelope", "--no-figures"), ("plot", "--no-ranks")):
        proc = run_cli(*command, "--store", cube)
        err = proc.stderr.strip()
        assert proc.returncode == 2 and len(err.splitlines()) == 1, proc.stderr
        assert err.startswith("error:") and f"{cell} (exact_loss unreadable)" in err, err
    assert store.loss_table(cube).shape[0] == 4  # the final values are intact: a table does not need the curve
    (damage,) = verify.verify(cube).damaged
    assert damage.cell == cell and damage.problems == ["exact_loss unreadable"]


def test_redo_retrains_exactly_the_runs_it_names(trained, tmp_path):
    cube = _copy(trained, tmp_path / "cube.zarr")
    cells = _cells(cube)
    target, others = cells[1], [c for c in cells if c != cells[1]]
    good, mine = _files(cube, others), _files(cube, [target])
    run = dict(zip(store.RUN_DIMS, target.labels()))
    curve = store.open_cube(cube)["eval_loss"].sel(run).values.copy()
    proc = run_cli("train", "--redo", str(target), "--store", cube, *TRAIN)
    assert proc.returncode == 0 and "trained 1/1 runs: 1 done" in proc.stdout, proc.stdout + proc.stderr
    assert _files(cube, others) == good
    claimed = [tuple(e["cell"]) for e in claims.log(cube) if e["event"] == "claim"]
    assert claimed == [target.labels()]
    changed = {k for k, v in _files(cube, [target]).items() if v != mine[k]}
    assert any("/wall_seconds/" in f"/{k}" for k in changed) and any(k.startswith("checksum/") for k in changed)
    after = store.open_cube(cube)
    np.testing.assert_array_equal(after["eval_loss"].sel(run).values, curve)  # trained again: the same curve
    assert verify.verify(cube).damaged == [] and (after["status"] == "done").all()

    bad = run_cli("train", "--redo", "D=999", "--store", cube, *TRAIN)
    err = bad.stderr.strip()
    assert bad.returncode == 2 and err.startswith("error:") and len(err.splitlines()) == 1, bad.stderr
    assert "no D 999 in the cube (have: 3200, 6400)" in err


def test_runs_are_named_one_at_a_time_or_by_slices(trained):
    coords, _ = store.read_status(trained)
    widths = {int(n): int(w) for n, w in zip(coords["N"], store.open_group(trained)["d_model"][:])}
    cells = _cells(trained)

    def named(text):
        mask = plan.select(coords, widths, text)
        return {c for c, m in zip(sorted(cells, key=lambda c: store.RunWriter(trained).index(c)), mask.ravel()) if m}

    assert named(str(cells[0])) == {cells[0]}
    assert named("D=3200") == {c for c in cells if c.D == 3200}
    assert named("er64/sp/width=16") == {c for c in cells if c.N == min(x.N for x in cells)}
    assert named("*/sp/D=3200,6400/lr=0.01") == set(cells)
    assert named("D=3.2e3/seed=0") == {c for c in cells if c.D == 3200}
    for text, message in (("size=3", "unknown key 'size'"), ("er64/sp/xx", "neither a family"),
                          ("lr=abc", "not a number"), ("er65", "no family er65")):
        with pytest.raises(UserError, match=message):
            named(text)


def _quiet_open(path):
    """A notebook's plain open, with every warning an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(path)
        ds["final_eval_loss"].values  # noqa: B018 - reads the arrays through the consolidated metadata
    return ds


def test_a_plain_open_is_quiet_after_creation_growth_upgrade_and_attribute_writes(tmp_path):
    path = tmp_path / "cube.zarr"
    plan.prepare(path, sweep.from_table(tomllib.loads(tiny_sweep_text(widths=(16,), tokens=(3200,)))))
    assert dict(_quiet_open(path).sizes) == {"family": 1, "param": 1, "N": 1, "D": 1, "lr": 1, "seed": 1, "point": 8}
    plan.prepare(path, sweep.from_table(tomllib.loads(tiny_sweep_text(name="big", widths=(16, 24), tokens=(3200, 1600),
                                                                      lrs=(1e-2, 3e-2)))))
    assert dict(_quiet_open(path).sizes)["lr"] == 2 and list(_quiet_open(path)["D"].values) == [3200, 1600]
    store.set_attrs(path, note="kept")
    assert _quiet_open(path).attrs["note"] == "kept"
    for name in store.cube.ADDED_IN[store.SCHEMA_VERSION]:  # as the previous schema stored it
        shutil.rmtree(path / name)
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["schema_version"] = store.SCHEMA_VERSION - 1
    (path / "zarr.json").write_text(json.dumps(meta))
    store.upgrade_and_seal(path)
    ds = _quiet_open(path)
    assert ds.attrs["schema_version"] == store.SCHEMA_VERSION and "checksum" in ds
    consolidated = json.loads((path / "zarr.json").read_text())["consolidated_metadata"]["metadata"]
    on_disk = {p.parent.name: json.loads(p.read_text()) for p in path.glob("*/zarr.json")}
    assert consolidated == on_disk  # the copy every plain open reads is the arrays' own metadata


def test_a_store_from_before_checksums_is_checksummed_by_its_next_train(trained, tmp_path, write_sweep):
    cube = _copy(trained, tmp_path / "cube.zarr")
    before = store.loss_table(cube)
    shutil.rmtree(cube / "checksum")
    meta = json.loads((cube / "zarr.json").read_text())
    meta["attributes"]["schema_version"] = 3
    (cube / "zarr.json").write_text(json.dumps(meta))
    old = verify.verify(cube)
    assert old.checked == 0 and old.unsealed == 4 and "no checksums yet" in old.note
    assert store.loss_table(cube).equals(before)  # nothing to check, nothing refused
    proc = run_cli("train", write_sweep(SWEEP), "--fill-missing", "--store", cube, *TRAIN)
    assert proc.returncode == 0 and "checksumming 4 finished runs" in proc.stdout, proc.stdout + proc.stderr
    assert "nothing to train" in proc.stdout
    sealed = verify.verify(cube)
    assert (sealed.checked, sealed.damaged, sealed.unsealed) == (4, [], 0)
    _chunk(cube, "final_eval_loss", _cells(cube)[0]).unlink()  # and from now on damage is found
    assert [d.problems for d in verify.verify(cube).damaged] == [["final_eval_loss chunk missing"]]


def test_table_json_and_status_label_n_alike(trained):
    table = run_cli("table", "--store", trained, "--json")
    assert table.returncode == 0, table.stderr
    doc = json.loads(table.stdout)
    assert doc["n_convention"] == "total" and doc["loss"] == "auto"
    expected = store.loss_table(trained)
    rows = doc["rows"]
    assert [(r["N"], r["D"]) for r in rows] == list(zip(expected["N"], expected["D"]))
    assert [r["loss"] for r in rows] == list(expected["loss"])
    assert [r["loss_se"] for r in rows] == list(expected["loss_se"])
    assert {r["loss_kind"] for r in rows} == {"exact"} and {r["best_lr"] for r in rows} == {0.01}
    assert {r["best_seed"] for r in rows} == {0} and [r["width"] for r in rows] == [16, 16, 32, 32]
    ne = json.loads(tables.loss_table_json(trained, n_convention="nonembedding"))["rows"]  # what --json prints
    ds = store.open_cube(trained)
    assert [r["N"] for r in ne] == [int(n) for n in ds["N"].values for _ in range(2)]  # the cube's labels
    text = tables.format_loss_table(trained)
    status = tables.format_status(tables.status_summary(trained, brackets=True))
    for row in rows[::2]:  # the same N, in the same words, in both
        assert f"{row['N']:>12,} {row['width']:>6} " in text and f"{row['N']:>12,} {row['width']:>6} " in status
    heading = "[N = total parameters, embedding included]"
    assert heading in text and heading in status
    sampled = json.loads(tables.loss_table_json(trained, loss="sampled"))["rows"]
    assert {r["loss_kind"] for r in sampled} == {"sampled"}
    assert [r["loss"] for r in sampled] != [r["loss"] for r in rows]


def test_status_names_the_runs_other_coordinators_are_training(trained, tmp_path):
    cube = _copy(trained, tmp_path / "cube.zarr")
    cell = _cells(cube)[0]
    with store.lock(cube):
        store.RunWriter(cube).write_status([(cell, "missing")])
    other = claims.register(cube, claims.this_process())  # a live coordinator (this process)
    assert claims.claim(cube, other, [cell], lambda cells: [True] * len(cells))
    summary = tables.status_summary(cube)
    (entry,) = summary["training_now"]
    assert entry["owner"] == str(other) and entry["runs"] == [str(cell)]
    assert f"being trained now by {other}" in tables.format_status(summary)
    claims.retire(cube, other)
    assert tables.status_summary(cube)["training_now"] == []
