"""The coordinator's bookkeeping: bring the cube up to a sweep's grid, and list the cells still to run.

Everything here runs in the coordinator under the store's lock. A store remembers every sweep applied to it (in
its `sweeps` attribute), so `train --fill-missing` without a sweep file re-plans from those.
"""
from __future__ import annotations

import json

import numpy as np

from scalingkit import store
from scalingkit.errors import StoreError, UserError
from scalingkit.model.counts import total_params
from scalingkit.store import RUN_DIMS, STATUS_CODE, Cell
from scalingkit.sweep.spec import Sweep, from_table


def stored_sweeps(path) -> list[Sweep]:
    """The sweeps a store was filled from, one per name (a sweep is known by its name: the latest version recorded
    counts; stores written before edited sweeps replaced their old versions can hold several). Tables stored by an
    older scalingkit are re-validated, so settings added since take their defaults."""
    try:
        tables = store.attrs(path).get("sweeps", [])
        sweeps = [from_table(t, check_families=False) for t in tables]
    except UserError as exc:
        raise StoreError(f"store {path} holds a sweep that no longer validates: {exc}") from None
    latest = {sw.name: sw for sw in sweeps}  # later versions win; dict order: where each name first appeared
    return list(latest.values())


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
        group = store.open_group(path)
        all_shapes = {int(n): (int(l), int(w)) for n, l, w in
                      zip(group["N"][:], group["n_layer"][:], group["d_model"][:])}
        all_shapes.update(shapes)
        for label, spec in old.get("families", {}).items():
            vocab.setdefault(label, int(spec["vocab_size"]))
        n_params = {(f, n): total_params(*all_shapes[n], vocab[f]) for f in vocab for n in all_shapes}
        added = store.grow(path, coords, all_shapes, n_params, families)
        # compared as re-validated now: a table an older version stored lacks the settings added since
        known = [sw.source for sw in stored_sweeps(path)]
        replaced = None
        if sweep.source not in known:
            # a sweep is what its file says now: an edited sweep (same name) replaces its stored version, whose
            # runs all stay in the cube; a sweep of another name is recorded beside the others
            names = [t["name"] for t in known]  # one per name (stored_sweeps)
            if sweep.name in names:
                replaced = sweep.name
                known[names.index(sweep.name)] = sweep.source
            else:
                known.append(sweep.source)
            store.set_attrs(path, sweeps=known)
        elif len(known) != len(old.get("sweeps", [])):  # tidy what an earlier version left: one record per sweep
            store.set_attrs(path, sweeps=known)
        return {"created": False, "added": added, "replaced": replaced}


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


def sweep_index(coords: dict, sw: Sweep) -> list[list[int]] | None:
    """Positions of the sweep's labels along each run dimension, in the order of Sweep.cells() (so a block of the
    cube taken with np.ix_ ravels to sw.cells()); None if the cube does not hold them all (not prepared yet)."""
    lookup = {d: {_key(d, x): i for i, x in enumerate(coords[d])} for d in RUN_DIMS}
    labels = {"family": list(sw.families), "param": sw.grid["params"], "N": sorted(sw.shapes),
              "D": sw.grid["tokens"], "lr": sw.grid["lrs"], "seed": sw.grid["seeds"]}
    try:
        return [[lookup[d][_key(d, x)] for x in labels[d]] for d in RUN_DIMS]
    except KeyError:
        return None


def planned_mask(coords: dict, sweeps: list[Sweep], codes: np.ndarray | None = None, path=None) -> np.ndarray:
    """Boolean mask over the cube's run dimensions: the cells some stored sweep asks for. A sweep with an
    [lr_search] asks only for the learning rates its search wants so far, which needs the status codes and the
    store (for the final losses)."""
    shape = tuple(len(coords[d]) for d in RUN_DIMS)
    mask = np.zeros(shape, dtype=bool)
    for sw in sweeps:
        idx = sweep_index(coords, sw)
        if idx is None:
            continue  # a sweep whose labels are not all in the cube yet: it has not been prepared
        mask[np.ix_(*idx)] |= wanted_block(path, codes, sw, idx)
    return mask


def wanted_block(path, codes, sw: Sweep, idx: list[list[int]]) -> np.ndarray:
    """The sweep's block (axes in sweep order): True where the sweep wants a run."""
    if sw.lr_search is None:
        return np.ones(tuple(len(i) for i in idx), dtype=bool)
    return lr_searches(path, codes, sw, idx)[0]


def lr_searches(path, codes: np.ndarray, sw: Sweep, idx: list[list[int]]):
    """(wanted mask, Search per (family, param, N, D)) of a sweep with an [lr_search], from the cube's results."""
    from scalingkit.sweep import lrsearch

    if codes is None or path is None:
        raise ValueError(f"sweep {sw.name!r} searches learning rates: planning it needs the status codes and store")
    block = codes[np.ix_(*idx)]
    losses = final_losses(path, idx, block)
    return lrsearch.search_block(sw.grid["lrs"], sw.lr_search, block, losses, STATUS_CODE["done"],
                                 STATUS_CODE["diverged"])


def final_losses(path, idx: list[list[int]], block: np.ndarray) -> np.ndarray:
    """final_eval_loss over a block, read only where a run is done (one chunk per run: reading the rest would cost
    ~0.2 ms a cell for nothing); NaN elsewhere."""
    out = np.full(block.shape, np.nan)
    where = np.nonzero(block == STATUS_CODE["done"])
    if where[0].size:
        selection = tuple(np.asarray(idx[a])[where[a]] for a in range(len(idx)))
        out[where] = store.open_group(path)["final_eval_loss"].get_coordinate_selection(selection)
    return out


def lr_optima(path, sweeps: list[Sweep], coords: dict | None = None, codes: np.ndarray | None = None,
              grids: bool = False) -> list[dict]:
    """Where the best learning rate of every (family, param, N, D) stands: for sweeps with an [lr_search], the
    search's state; with grids=True also for sweeps training the whole grid ('open' while a neighbour of the best is
    unfinished). Rows: sweep, family, param, N, D, state, best_lr, tried (learning rates finished or wanted)."""
    from scalingkit.sweep import lrsearch

    if coords is None or codes is None:
        coords, codes = store.read_status(path)
    done, diverged = STATUS_CODE["done"], STATUS_CODE["diverged"]
    rows = []
    for sw in sweeps:
        idx = sweep_index(coords, sw) if (sw.lr_search is not None or grids) else None
        if idx is None:
            continue
        if sw.lr_search is not None:
            _, searches = lr_searches(path, codes, sw, idx)
        else:
            block = codes[np.ix_(*idx)]
            losses = final_losses(path, idx, block)
        labels = (list(sw.families), sw.grid["params"], sorted(sw.shapes), sw.grid["tokens"])
        for pos in np.ndindex(*(len(i) for i in idx[:4])):
            if sw.lr_search is not None:
                found = searches[pos]
                state, best, tried = found.state, found.best_lr, len(found.wanted)
            else:
                per_lr = lrsearch.lr_losses(block[pos], losses[pos], done, diverged)
                state, best = lrsearch.bracket(sw.grid["lrs"], per_lr)
                tried = sum(v is not None for v in per_lr)
            rows.append({"sweep": sw.name, **{d: labels[a][pos[a]] for a, d in enumerate(RUN_DIMS[:4])},
                         "state": state, "best_lr": best, "tried": tried})
    return rows


def _key(dim, x):
    return store.RunWriter._key(dim, x)


def missing_cells(path, sweeps: list[Sweep], retry_failed: bool = False) -> list[tuple[Cell, Sweep]]:
    """Cells that some sweep plans and that are not finished (done or diverged), each with the sweep that plans it.
    For a sweep with an [lr_search], the cells its search wants now (later rounds appear as results arrive)."""
    coords, status = store.read_status(path)
    todo_codes = [STATUS_CODE["missing"]] + ([STATUS_CODE["failed"]] if retry_failed else [])
    out, seen = [], set()
    for sw in sweeps:
        idx = sweep_index(coords, sw)
        if idx is None:
            raise StoreError(f"sweep {sw.name!r} is not in the cube at {path}: give its file to `train` to add it")
        wanted = wanted_block(path, status, sw, idx).ravel()
        todo = np.isin(status[np.ix_(*idx)], todo_codes).ravel()
        for cell, want, left in zip(sw.cells(), wanted, todo):
            if want and left and cell not in seen:
                out.append((cell, sw))
                seen.add(cell)
    return out
