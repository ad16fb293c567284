"""The coordinator's bookkeeping: bring the cube up to a sweep's grid, and list the cells still to run.

Everything here runs in the coordinator under the store's lock. A store remembers every sweep applied to it (in
its `sweeps` attribute), so `train --fill-missing` without a sweep file re-plans from those.
"""
from __future__ import annotations

import json

import numpy as np

from scalingkit import store
from scalingkit.errors import StoreError, UserError
from scalingkit.counts import total_params
from scalingkit.store import RUN_DIMS, STATUS_CODE, Cell
from scalingkit.sweep import Sweep, from_table


def stored_sweeps(path) -> list[Sweep]:
    try:
        tables = store.attrs(path).get("sweeps", [])
        return [from_table(t, check_families=False) for t in tables]
    except UserError as exc:
        raise StoreError(f"store {path} holds a sweep that no longer validates: {exc}") from None


def prepare(path, sweep: Sweep) -> dict:
    """Create the cube, or grow it to hold every cell of `sweep`, keeping every stored run. Returns a summary."""
    from pathlib import Path

    from scalingkit.families import build_family

    families = {label: _full_spec(build_family(label, spec), spec, sweep.settings.context)
                for label, spec in sweep.families.items()}
    vocab = {label: build_family(label, spec).vocab_size for label, spec in sweep.families.items()}
    shapes = sweep.shapes
    coords = {"family": list(sweep.families), "param": sweep.grid["params"], "N": sorted(shapes),
              "D": sweep.grid["tokens"], "lr": sweep.grid["lrs"], "seed": sweep.grid["seeds"]}
    with store.lock(path):
        if not Path(path, "zarr.json").exists():
            n_params = {(f, n): total_params(*shapes[n], vocab[f]) for f in vocab for n in shapes}
            store.create(path, coords, sweep.settings.eval_points, shapes, n_params, families,
                         {"training": sweep.settings.to_dict(), "sweeps": [sweep.source]})
            return {"created": True, "added": coords}
        old = store.attrs(path)
        _check_compatible(path, old, sweep, families)
        group = store._open_group(path)
        all_shapes = {int(n): (int(l), int(w)) for n, l, w in
                      zip(group["N"][:], group["n_layer"][:], group["d_model"][:])}
        all_shapes.update(shapes)
        for label, spec in old.get("families", {}).items():
            vocab.setdefault(label, int(spec["vocab_size"]))
        n_params = {(f, n): total_params(*all_shapes[n], vocab[f]) for f in vocab for n in all_shapes}
        added = store.grow(path, coords, all_shapes, n_params, families)
        tables = old.get("sweeps", [])
        if sweep.source not in tables:
            store.set_attrs(path, sweeps=tables + [sweep.source])
        return {"created": False, "added": added}


def _full_spec(family, user_spec: dict, context: int) -> dict:
    spec = dict(family.spec())
    spec["sweep_spec"] = user_spec  # what the user wrote, to rebuild it exactly
    spec["vocab_size"] = int(family.vocab_size)
    spec["entropy_rate"] = family.entropy_rate()
    spec["loss_floor"] = family.loss_floor(context)
    return json.loads(json.dumps(spec, default=_jsonable))


def _jsonable(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def _check_compatible(path, old: dict, sweep: Sweep, families: dict) -> None:
    # settings added to scalingkit after the store was made take their defaults (they did not exist then)
    from scalingkit.config import TrainSettings

    a, b = {**TrainSettings().to_dict(), **old.get("training", {})}, sweep.settings.to_dict()
    if a != b:
        key = next(k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
        raise UserError(f"sweep {sweep.name!r} trains with {key} = {b.get(key)!r} but the store at {path} was filled "
                        f"with {key} = {a.get(key)!r}; use another --store for different training settings")
    for label, spec in families.items():
        have = old.get("families", {}).get(label)
        if have is not None and have.get("sweep_spec") != spec["sweep_spec"]:
            raise UserError(f"family {label!r} in sweep {sweep.name!r} differs from the family of that name in the "
                            f"store at {path}; give it another name")


def planned_mask(coords: dict, sweeps: list[Sweep]) -> np.ndarray:
    """Boolean mask over the cube's run dimensions: the cells some stored sweep asks for."""
    shape = tuple(len(coords[d]) for d in RUN_DIMS)
    mask = np.zeros(shape, dtype=bool)
    lookup = {d: {_key(d, x): i for i, x in enumerate(coords[d])} for d in RUN_DIMS}
    for sw in sweeps:
        labels = {"family": list(sw.families), "param": sw.grid["params"], "N": list(sw.shapes),
                  "D": sw.grid["tokens"], "lr": sw.grid["lrs"], "seed": sw.grid["seeds"]}
        try:
            idx = [[lookup[d][_key(d, x)] for x in labels[d]] for d in RUN_DIMS]
        except KeyError:
            continue  # a sweep whose labels are not all in the cube yet: it has not been prepared
        mask[np.ix_(*idx)] = True
    return mask


def _key(dim, x):
    return store.RunWriter._key(dim, x)


def missing_cells(path, sweeps: list[Sweep], retry_failed: bool = False) -> list[tuple[Cell, Sweep]]:
    """Cells that some sweep plans and that are not finished (done or diverged), each with the sweep that plans it."""
    coords, status = store.read_status(path)
    todo_codes = [STATUS_CODE["missing"]] + ([STATUS_CODE["failed"]] if retry_failed else [])
    out, seen = [], set()
    lookup = {d: {_key(d, x): i for i, x in enumerate(coords[d])} for d in RUN_DIMS}
    for sw in sweeps:
        for cell in sw.cells():
            if cell in seen:
                continue
            idx = tuple(lookup[d][_key(d, x)] for d, x in zip(RUN_DIMS, cell.labels()))
            if status[idx] in todo_codes:
                out.append((cell, sw))
                seen.add(cell)
    return out
