"""Per-cell claims: two coordinators on one store train every cell exactly once; a claim lives as long as its owner
(pid and start time on this host, a lease elsewhere); a worker never writes, and a coordinator never records, a
cell whose claim it no longer holds."""
import json
import os
import re
import subprocess
import time
import tomllib
from collections import Counter

import numpy as np
import pytest

from conftest import REPO, SCALINGKIT, tiny_sweep_text
from scalingkit import store
from scalingkit.run import runner, worker
from scalingkit.store import claims
from scalingkit.sweep import plan
from scalingkit.sweep import spec as sweep


def _done_counts(stdout: str) -> int:
    if "nothing trained here" in stdout or "nothing to train" in stdout:
        return 0
    return int(re.search(r"trained \d+/\d+ runs: (\d+) done", stdout).group(1))


@pytest.mark.parametrize("trial", range(2))  # the race twice: each start order tried
def test_two_coordinators_started_together_train_each_cell_exactly_once(tmp_path, write_sweep, trial):
    sweep_file = write_sweep(tiny_sweep_text(widths=(16, 32), tokens=(3200, 6400), lrs=(1e-2, 3e-3)))
    cube = tmp_path / "cube.zarr"
    command = [*SCALINGKIT, "train", str(sweep_file), "--fill-missing", "--store", str(cube), "--workers", "1",
               "--batch-variants", "1", "--no-progress"]
    procs = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, (out, err)
    ds = store.open_cube(cube)
    n_cells = ds["status"].size
    assert n_cells == 8 and (ds["status"].values == "done").all()
    assert np.isfinite(ds["eval_loss"].values).all()  # every curve whole: no run cut short by a second writer
    # each coordinator counts the runs its own workers trained: together exactly one per cell (both trained every
    # cell before claims existed: 16)
    assert sum(_done_counts(out) for out, _ in outs) == n_cells, [out for out, _ in outs]
    events = claims.log(cube)
    claimed = Counter(json.dumps(e["cell"]) for e in events if e["event"] == "claim")
    assert len(claimed) == n_cells and set(claimed.values()) == {1}
    assert sum(e["event"] == "release" for e in events) == n_cells
    assert len({e["owner"] for e in events}) == 2  # they shared the work
    assert json.loads((claims.folder(cube) / "cells.json").read_text())["claims"] == {}  # all released
    assert not list((claims.folder(cube) / "owners").iterdir())


# ---- claims, owners and liveness (the store's own functions, in this process) ----

def _store(tmp_path, text=None):
    path = tmp_path / "cube.zarr"
    sw = sweep.from_table(tomllib.loads(text or tiny_sweep_text()))
    plan.prepare(path, sw)
    return path, sw


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _everything(cells):
    return [True] * len(cells)


def test_a_claim_lives_as_long_as_its_owner(tmp_path):
    path, sw = _store(tmp_path)
    cell = sw.cells()[0]
    me = claims.register(path, claims.this_process())
    # a live owner in this process (another coordinator, as far as claims go): its claim stands
    other = claims.register(path, claims.this_process())
    assert claims.claim(path, other, [cell], _everything)
    assert claims.claim(path, me, [cell], _everything) == {}
    assert list(claims.held_by_others(path, me)) == [claims.cell_key(cell)]
    claims.retire(path, other)
    # a coordinator killed on this host: its pid is gone, so its claims are free at once, whatever its lease says
    dead = claims.register(path, claims.Owner(id="dead", host=claims.HOST, pid=_dead_pid(), boot=claims._boot_id(),
                                              started=1, renewed_at=time.time()))
    assert claims.claim(path, dead, [cell], _everything)
    assert claims.held_by_others(path, me) == {}
    assert cell in claims.claim(path, me, [cell], _everything)
    assert [e["event"] for e in claims.log(path)][-2:] == ["expire", "claim"]


def test_a_reused_pid_does_not_keep_a_dead_coordinators_claims(tmp_path):
    path, sw = _store(tmp_path)
    me = claims.register(path, claims.this_process())
    impostor = claims.this_process()
    impostor.started += 1  # this very pid, but a process started at another time
    claims.register(path, impostor)
    assert claims.claim(path, impostor, sw.cells()[:1], _everything)
    assert sw.cells()[0] in claims.claim(path, me, sw.cells()[:1], _everything)


def test_an_owner_on_another_host_holds_its_claims_while_its_lease_is_fresh(tmp_path):
    path, sw = _store(tmp_path)
    cell = sw.cells()[0]
    me = claims.register(path, claims.this_process())
    remote = claims.register(path, claims.Owner(id="remote", host="elsewhere", pid=os.getpid(), lease_seconds=60))
    assert claims.claim(path, remote, [cell], _everything)
    assert claims.claim(path, me, [cell], _everything) == {}  # its heartbeat would keep it so
    record = json.loads((claims.folder(path) / "owners" / "remote.json").read_text())
    record["renewed_at"] -= 61  # no heartbeat for longer than the lease: that coordinator is gone
    (claims.folder(path) / "owners" / "remote.json").write_text(json.dumps(record))
    assert cell in claims.claim(path, me, [cell], _everything)


def test_the_heartbeat_renews_the_lease(tmp_path):
    path, _ = _store(tmp_path)
    owner = claims.register(path, claims.this_process(lease_seconds=0.3))
    first = owner.renewed_at
    with claims.Heartbeat(path, owner):
        time.sleep(0.5)
    on_disk = json.loads((claims.folder(path) / "owners" / f"{owner.id}.json").read_text())
    assert on_disk["renewed_at"] > first


def test_only_cells_still_to_train_are_claimed(tmp_path):
    path, sw = _store(tmp_path)
    done = sw.cells()[0]
    with store.lock(path):
        store.RunWriter(path).write_status([(done, "done")])
    me = claims.register(path, claims.this_process())
    got = claims.claim(path, me, sw.cells(), runner._still_to_train(str(path), [store.STATUS_CODE["missing"]]))
    assert set(got) == set(sw.cells()[1:])


def test_a_worker_without_its_claim_writes_nothing_and_its_coordinator_records_nothing(tmp_path):
    path, sw = _store(tmp_path, tiny_sweep_text(widths=(16,), tokens=(6400,), extra_training="checkpoint_seconds = 0"))
    cell = sw.cells()[0]
    config = sw.run_config(cell)
    spec = sw.families["er64"]
    stale = claims.register(path, claims.Owner(id="stale", host=claims.HOST, pid=_dead_pid(), boot=claims._boot_id(),
                                               started=1))
    tickets = claims.claim(path, stale, [cell], _everything)
    before = {f: f.stat().st_mtime_ns for f in path.rglob("*") if f.is_file()}
    # the real worker, training for real: its coordinator is gone, so not even a partial curve is written
    outcome = worker.run_cell(str(path), cell, config, spec, 1, tickets)
    assert outcome.status == "lost"
    assert {f: f.stat().st_mtime_ns for f in path.rglob("*") if f.is_file()} == before
    # the cell, taken over, trains and is recorded by its new holder; the old ticket records nothing
    me = claims.register(path, claims.this_process())
    mine = claims.claim(path, me, [cell], _everything)
    done = worker.run_cell(str(path), cell, config, spec, 1, mine)
    assert done.status == "done"
    assert runner._record(str(path), [done], tickets) == set()
    assert store.open_cube(path)["status"].values.ravel().tolist() == ["missing"]
    assert runner._record(str(path), [done], mine) == {cell}
    assert store.open_cube(path)["status"].values.ravel().tolist() == ["done"]
    assert json.loads((claims.folder(path) / "cells.json").read_text())["claims"] == {}  # released once recorded


def test_the_claimable_check_reads_new_labels_once_and_refuses_cells_not_in_the_store(tmp_path):
    """runner._still_to_train: positions are read once and kept; a label added since (the cube grew) makes it read
    them again, and a cell whose labels the store lacks even then is simply not claimable (no endless re-reading)."""
    import dataclasses
    import tomllib

    from conftest import tiny_sweep_text
    from scalingkit import store
    from scalingkit.run import runner
    from scalingkit.sweep import plan, spec

    path = tmp_path / "cube.zarr"
    small = spec.from_table(tomllib.loads(tiny_sweep_text(widths=(16,), tokens=(6400,))))
    plan.prepare(path, small)
    check = runner._still_to_train(path, {store.STATUS_CODE["missing"]})
    (cell,) = small.cells()
    assert check([cell]) == [True]
    grown = spec.from_table(tomllib.loads(tiny_sweep_text(widths=(16, 32), tokens=(6400,))))
    plan.prepare(path, grown)  # a width added after the positions were read
    new = [c for c in grown.cells() if c not in small.cells()]
    stranger = dataclasses.replace(cell, lr=0.5)
    assert check([*new, cell]) == [True] * len(new) + [True]
    assert check([stranger, cell]) == [False, True]
