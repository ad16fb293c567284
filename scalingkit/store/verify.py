"""Whole stores: `verify` checks every variable of every finished run against its checksum (`scalingkit status
--verify`, `train --redo-damaged`); `seal` checksums the finished runs of a store upgraded from a schema without
checksums, over their values as stored (the coordinator, once, under the lock); `upgrade_and_seal` does both steps
of bringing a store to the current schema. The checking itself is integrity.py's."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scalingkit.store import chunks
from scalingkit.store.cube import attrs, lock, open_group, read_status, set_attrs, upgrade
from scalingkit.store.integrity import ATTRIBUTE, COVERED, VARIABLE, Damage, Runs, make
from scalingkit.store.schema import RUN_DIMS, STATUS

@dataclass
class Report:
    store: str
    checked: int = 0  # finished runs whose checksum was checked
    damaged: list = field(default_factory=list)  # Damage, one per damaged run
    unsealed: int = 0  # finished runs without a checksum in a store not sealed yet (or of schema 1-3)
    note: str = ""

    def to_dict(self) -> dict:
        return {"checked": self.checked, "ok": self.checked - len(self.damaged), "unsealed": self.unsealed,
                "damaged": [{"run": str(d.cell), "cell": list(d.cell.labels()), "problems": d.problems}
                            for d in self.damaged], "note": self.note}


def verify(path) -> Report:
    """Check every variable of every finished run against its checksum (reads the whole cube's runs: ~25 small
    chunks a run)."""
    coords, codes = read_status(path)
    meta = attrs(path)
    has = meta.get("schema_version", 0) >= 4
    runs = Runs(path, coords, codes, has, has and bool(meta.get(ATTRIBUTE, {}).get("sealed")))
    report = Report(str(path))
    finished = np.argwhere(runs.finished)
    if not len(finished):
        return report
    picked = [tuple(int(x) for x in r) for r in finished]
    sums = runs.checksums(picked)
    unsealed = [s is None for s in sums]
    report.checked = len(picked) - (0 if runs.sealed else sum(unsealed))
    report.unsealed = 0 if runs.sealed else sum(unsealed)
    if not has:
        report.note = ("schema {}: no checksums yet; `scalingkit train` upgrades the store and checksums its "
                       "finished runs as they are stored now").format(meta.get("schema_version"))
    elif report.unsealed:
        report.note = (f"{report.unsealed} finished runs from before checksums have none yet; the next "
                       "`scalingkit train` on this store checksums them as they are stored now")
    found: dict = {}
    for name in COVERED:
        if not (Path(path) / name / "zarr.json").exists():  # an older schema's store: not measured
            continue
        values, state = chunks.RunArray(path, name).read(finished)
        for run, problem in runs.problems(name, finished, values, state).items():
            found.setdefault(run, []).append(problem)
    report.damaged = [Damage(runs.cell(r), sorted(set(p), key=p.index)) for r, p in sorted(found.items())]
    return report


def seal(path, echo=None) -> int:
    """Checksum every finished run that has none, over its values as stored now (a store upgraded from schema 3;
    damage from before cannot be told, damage from now on can), then mark the store sealed. The coordinator, holding
    the store's lock: no worker writes a finished run. Returns how many runs were sealed."""
    with lock(path):
        meta = attrs(path)
        if meta.get("schema_version", 0) < 4 or meta.get(ATTRIBUTE, {}).get("sealed"):
            return 0
        coords, codes = read_status(path)
        runs = Runs(path, coords, codes, True, False)
        finished = [tuple(int(x) for x in r) for r in np.argwhere(runs.finished)]
        todo = [r for r, s in zip(finished, runs.checksums(finished)) if s is None]
        if todo and echo:
            echo(f"checksumming {len(todo):,} finished runs stored before checksums existed (once)")
        group = open_group(path, mode="r+")
        names = [name for name in COVERED if (Path(path) / name / "zarr.json").exists()]
        for start in range(0, len(todo), 1000):
            batch = todo[start:start + 1000]
            columns = {name: chunks.RunArray(path, name).read(np.array(batch))[0] for name in names}
            texts = [make([coords[d][i] for d, i in zip(RUN_DIMS, run)], {n: v[j] for n, v in columns.items()},
                          STATUS[int(codes[run])]) for j, run in enumerate(batch)]
            selection = tuple(np.array(axis) for axis in zip(*batch))
            group[VARIABLE].set_coordinate_selection(selection, np.array(texts, dtype=object))
        set_attrs(path, **{ATTRIBUTE: {**meta.get(ATTRIBUTE, {}), "sealed": True}})
    return len(todo)


def upgrade_and_seal(path, echo=None) -> None:
    """cube.upgrade, then checksum the finished runs an older schema stored without one (seal: once, continued by the
    next call if interrupted). The coordinator, before it trains."""
    with lock(path):
        upgrade(path)
        seal(path, echo)
