"""Runs finished but not recorded, and what lives beside the store for runs in progress.

Only a coordinator records a run's status, once its worker reported. But a coordinator can die after its worker
finished (killed, the login node rebooted), or not be there at all (`train --detach` leaves SLURM jobs running): the
worker wrote the run's curve, its per-run values and, last, its checksum (RunWriter.write_checksum), and nobody
recorded it. Such a run is *adopted*: once its claim's owner is gone (claims.expire), a run still `missing` whose
stored values verify against its checksum is recorded as the checksum says (done or diverged), not trained again.
A half-written run never verifies (its checksum is written last and digests every value as stored; a redo clears
the old checksum before training again: clear_checksums), so it stays missing and is trained again. A failure that
a cluster job reported in its outcomes file (no coordinator may be there to collect it) is recorded as failed, with
its message.

Beside the store STORE (its folder's parent, like fits/ and figures/): checkpoints/CELL.pt, a running run's (or a
batch's, under its first cell) checkpoint to resume from after a kill, preemption or requeue, removed once its runs
are recorded; logs/, the cluster jobs' stdout, stderr and submitit's files.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from scalingkit.store import chunks, integrity
from scalingkit.store.cube import RunWriter, lock, open_group, read_status
from scalingkit.store.schema import CHECKSUM, RUN_DIMS, SCHEMA_VERSION, STATUS_CODE, Cell


def checkpoints_folder(store) -> Path:
    return Path(str(store)).parent / "checkpoints"


def logs_folder(store) -> Path:
    return Path(str(store)).parent / "logs"


def checkpoint_path(store, cell: Cell) -> Path:
    """store/checkpoints/<cell>.pt: the checkpoint of a run, or of a batch under its first cell."""
    name = re.sub(r"[^A-Za-z0-9=.+-]+", "_", str(cell).replace("/", "_"))
    return checkpoints_folder(store) / f"{name}.pt"


def remove_checkpoints(store, cells) -> int:
    """Remove the checkpoints kept under these cells (their runs are recorded, or to be trained from the start)."""
    n = 0
    for cell in cells:
        path = checkpoint_path(store, cell)
        if path.exists():
            path.unlink(missing_ok=True)
            n += 1
    return n


def _index(coords: dict, cells) -> tuple[list, list]:
    where = {d: {RunWriter._key(d, x): i for i, x in enumerate(coords[d])} for d in RUN_DIMS}
    kept, runs = [], []
    for cell in cells:
        idx = tuple(where[d].get(RunWriter._key(d, x)) for d, x in zip(RUN_DIMS, cell.labels()))
        if None not in idx:
            kept.append(cell)
            runs.append(idx)
    return kept, runs


def finished(store, cells, coords=None, codes=None, positions: dict | None = None) -> dict:
    """Of `cells`, those whose stored values carry a checksum and verify against it: {Cell: the status it records
    (done or diverged)}. A cell without a checksum, or whose values do not match it, is not finished. positions:
    {Cell: its index in the stored order} where the caller knows them (a worker's RunWriter.index); else the labels
    are read. Costs one chunk read per cell, and the run's other chunks only where a checksum is there."""
    cells = list(cells)
    if not cells:
        return {}
    if positions is None:
        if coords is None:
            coords, codes = read_status(store)
        kept, runs = _index(coords, cells)
    else:
        kept = [c for c in cells if c in positions]
        runs = [tuple(positions[c]) for c in kept]
    if not runs:
        return {}
    texts, state = chunks.RunArray(store, CHECKSUM).read(np.array(runs))
    sums = {}
    for i, (text, st) in enumerate(zip(texts, state)):
        try:
            parsed = integrity.parse(text) if st == chunks.OK else None
        except ValueError:
            parsed = None
        if parsed is not None and parsed.status in integrity.CHECKED:
            sums[i] = parsed
    if not sums:
        return {}
    order = list(sums)
    picked = np.array([runs[i] for i in order])
    keys = {i: integrity.run_key(kept[i].labels()) for i in order}
    bad: set = set()
    for name in integrity.COVERED:
        if not (Path(store) / name / "zarr.json").exists():
            continue
        values, st = chunks.RunArray(store, name).read(picked)
        for row, i in enumerate(order):
            expected = sums[i].digests.get(name)
            if st[row] == chunks.UNREADABLE or (expected is not None and
                                                 integrity.digest(keys[i], name, values[row]) != expected):
                bad.add(i)
    return {kept[i]: sums[i].status for i in order if i not in bad}


def adopt(store, gone: list) -> dict:
    """Under the store's lock: of the claims of gone owners (gone: [(claim entry, owner record or None)]), record
    the cells still missing that a worker finished (`finished`) as their checksum says, and those whose job reported
    a failure in its outcomes file as failed, with the message. Returns {Cell: status recorded}. Their checkpoints
    are removed with them (a failed run's are kept, to resume from on --retry-failed)."""
    if not gone:
        return {}
    with lock(store):
        group = open_group(store)
        if group.attrs.get("schema_version") != SCHEMA_VERSION:
            return {}  # no checksums to trust before schema 4; `train` upgrades the store first
        coords, codes = read_status(store)
        cells = [Cell(*entry["cell"]) for entry, _ in gone]
        kept, runs = _index(coords, cells)
        missing = [c for c, r in zip(kept, runs) if codes[r] == STATUS_CODE["missing"]]
        done = finished(store, missing, coords, codes)
        failed = {}
        for entry, owner in gone:
            cell = Cell(*entry["cell"])
            if cell in missing and cell not in done and owner and owner.get("outcomes"):
                reported = _reported(owner["outcomes"]).get((_key(cell), entry["token"]))
                if reported and reported.get("status") == "failed":
                    failed[cell] = str(reported.get("message", ""))
        if not done and not failed:
            return {}
        writer = RunWriter(store)
        writer.write_status([*done.items(), *((c, "failed") for c in failed)])
        for cell, message in failed.items():
            writer.write_run_values(cell, {"message": message})
        remove_checkpoints(store, done)
    return {**done, **dict.fromkeys(failed, "failed")}


def _key(cell: Cell) -> str:
    family, param, n, d, lr, seed = cell.labels()
    return json.dumps([family, param, n, d, float(f"{lr:.12g}"), seed])


def _reported(path) -> dict:
    """{(cell key, claim token): outcome} from a job's outcomes file ({} if absent or unreadable)."""
    try:
        rows = json.loads(Path(path).read_text())["outcomes"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    out = {}
    for row in rows:
        try:
            out[(_key(Cell(*row["cell"])), row["token"])] = row
        except (KeyError, TypeError):
            continue
    return out


def write_outcomes(path, outcomes: list, tickets: dict) -> None:
    """A job's failures, for adopt to record if no coordinator collects them: [{cell, token, status, message}]."""
    from scalingkit.store import atomic

    rows = [{"cell": list(o.cell.labels()), "token": tickets[o.cell].token, "status": o.status, "message": o.message}
            for o in outcomes if o.status == "failed" and o.cell in tickets]
    if rows:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(Path(path), {"outcomes": rows})


def clear_checksums(store, cells) -> None:
    """Empty the checksums of runs about to be trained again (train --redo), under the lock with their claims held:
    until the new run writes its own, its old values no longer count as finished (nothing would adopt them)."""
    with lock(store):
        coords, _ = read_status(store)
        _, runs = _index(coords, cells)
        if runs:
            group = open_group(store, mode="r+")
            selection = tuple(np.array(axis) for axis in zip(*runs))
            group[CHECKSUM].set_coordinate_selection(selection, np.array([""] * len(runs), dtype=object))
