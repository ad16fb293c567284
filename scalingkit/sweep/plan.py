"""The coordinator's bookkeeping: bring the cube up to a sweep's grid, and list the cells still to run.

Everything here runs in the coordinator under the store's lock. A store remembers every sweep applied to it (in
its `sweeps` attribute), so `train --fill-missing` without a sweep file re-plans from those.
"""
from __future__ import annotations

import itertools
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
    for cadence in ("checkpoint_seconds", "checkpoint_minutes"):  # how often a run saves: never its results
        a.pop(cadence, None)
        b.pop(cadence, None)
    if a != b:
        key = next(k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
        raise UserError(f"sweep {sweep.name!r} trains with {key} = {b.get(key)!r} but the store at {path} was filled "
                        f"with {key} = {a.get(key)!r}; use another --store for different training settings")
    for label, spec in families.items():
        have = old.get("families", {}).get(label)
        if have is not None and have.get("sweep_spec") != spec["sweep_spec"]:
            raise UserError(f"family {label!r} in sweep {sweep.name!r} differs from the family of that name in the "
                            f"store at {path}; give it another name")


def block_labels(coords: dict, sw: Sweep) -> dict | None:
    """The sweep's labels along each run dimension, in the order of Sweep.cells(); for a sweep that searches learning
    rates, the lr labels go on past the grid with the learning rates past its ends that the cube holds so far (the
    coordinator adds them as the search wants them: grow_for_searches). None if the cube lacks a label of the sweep's
    grid (not prepared yet)."""
    labels = {"family": list(sw.families), "param": sw.grid["params"], "N": sorted(sw.shapes),
              "D": sw.grid["tokens"], "lr": list(sw.grid["lrs"]), "seed": sw.grid["seeds"]}
    if sw.lr_search is not None:
        held = {_key("lr", x) for x in coords["lr"]}
        labels["lr"] += [lr for lr in _past(sw) if _key("lr", lr) in held]
    lookup = {d: {_key(d, x) for x in coords[d]} for d in RUN_DIMS}
    if any(_key(d, x) not in lookup[d] for d in RUN_DIMS for x in labels[d]):
        return None
    return labels


def sweep_index(coords: dict, sw: Sweep) -> list[list[int]] | None:
    """Positions of the sweep's labels (block_labels) along each run dimension, so a block of the cube taken with
    np.ix_ ravels to the product of those labels (sw.cells() for a sweep without a search); None if the cube does
    not hold them all (not prepared yet)."""
    labels = block_labels(coords, sw)
    if labels is None:
        return None
    lookup = {d: {_key(d, x): i for i, x in enumerate(coords[d])} for d in RUN_DIMS}
    return [[lookup[d][_key(d, x)] for x in labels[d]] for d in RUN_DIMS]


def _past(sw: Sweep) -> list[float]:
    from scalingkit.sweep import lrsearch

    return lrsearch.past_grid(sw.grid["lrs"], sw.lr_search) if sw.lr_search is not None else []


def planned_mask(coords: dict, sweeps: list[Sweep], codes: np.ndarray | None = None, path=None,
                 awaiting: list | None = None) -> np.ndarray:
    """Boolean mask over the cube's run dimensions: the cells some stored sweep asks for. A sweep with an
    [lr_search] asks only for the learning rates its search wants so far, which needs the status codes and the
    store (for the final losses). `awaiting`, a list, receives the runs a search wants at learning rates past its
    grid that the cube does not hold yet (as Cells): the next `train --fill-missing` adds those labels and trains
    them."""
    shape = tuple(len(coords[d]) for d in RUN_DIMS)
    mask = np.zeros(shape, dtype=bool)
    for sw in sweeps:
        labels = block_labels(coords, sw)
        if labels is None:
            continue  # a sweep whose labels are not all in the cube yet: it has not been prepared
        idx = sweep_index(coords, sw)
        if sw.lr_search is None:
            mask[np.ix_(*idx)] = True
            continue
        wanted, searches = lr_searches(path, codes, sw, idx, labels["lr"])
        mask[np.ix_(*idx)] |= wanted
        if awaiting is not None:
            awaiting.extend(_unheld(sw, labels, searches))
    return mask


def _unheld(sw: Sweep, labels: dict, searches: np.ndarray) -> list[Cell]:
    """Runs the searches want at learning rates the cube does not hold yet, one per seed."""
    held = {_key("lr", x) for x in labels["lr"]}
    out = []
    for pos in np.ndindex(*searches.shape):
        f, p, n, d = (labels[dim][pos[a]] for a, dim in enumerate(RUN_DIMS[:4]))
        out += [Cell(f, p, n, d, lr, s) for lr in searches[pos].wanted if _key("lr", lr) not in held
                for s in labels["seed"]]
    return out


def lr_searches(path, codes: np.ndarray, sw: Sweep, idx: list[list[int]], lrs: list[float]):
    """(wanted mask, Search per (family, param, N, D)) of a sweep with an [lr_search], from the cube's results;
    lrs: the block's learning rates (block_labels)."""
    from scalingkit.sweep import lrsearch

    if codes is None or path is None:
        raise ValueError(f"sweep {sw.name!r} searches learning rates: planning it needs the status codes and store")
    block = codes[np.ix_(*idx)]
    losses = final_losses(path, idx, block)
    return lrsearch.search_block(sw.grid["lrs"], lrs, sw.lr_search, block, losses, STATUS_CODE["done"],
                                 STATUS_CODE["diverged"])


def grow_for_searches(path, sweeps: list[Sweep]) -> list[float]:
    """The coordinator, before each round: add to the cube's lr dimension every learning rate past a sweep's grid
    that its search now wants and the cube does not hold, under the store's lock, through the same growth as a
    sweep's new labels (store.grow: every stored run keeps its chunks). Returns the learning rates added."""
    searching = [sw for sw in sweeps if sw.lr_search is not None and sw.lr_search.get("beyond")]
    if not searching:
        return []
    with store.lock(path):
        coords, codes = store.read_status(path)
        awaiting: list[Cell] = []
        planned_mask(coords, searching, codes, path, awaiting)
        new = sorted({c.lr for c in awaiting})
        if not new:
            return []
        group = store.open_group(path)
        shapes = {int(n): (int(l), int(w)) for n, l, w in
                  zip(group["N"][:], group["n_layer"][:], group["d_model"][:])}
        counts = np.asarray(group["n_params"][:])
        n_params = {(str(f), int(n)): int(counts[i, j]) for i, f in enumerate(coords["family"])
                    for j, n in enumerate(coords["N"])}
        store.grow(path, {**{d: list(coords[d]) for d in RUN_DIMS}, "lr": list(coords["lr"]) + new}, shapes,
                   n_params, {})
        return new


def final_losses(path, idx: list[list[int]], block: np.ndarray) -> np.ndarray:
    """final_eval_loss over a block, read only where a run is done (one chunk per run: reading the rest would cost
    ~0.2 ms a cell for nothing); NaN elsewhere, and where a chunk does not decode (planning goes on as if that run
    had diverged; `status --verify` names it and `train --redo-damaged` trains it again)."""
    from scalingkit.store.chunks import RunArray

    out = np.full(block.shape, np.nan)
    where = np.nonzero(block == STATUS_CODE["done"])
    if where[0].size:
        runs = np.stack([np.asarray(idx[a])[where[a]] for a in range(len(idx))], axis=-1)
        out[where] = RunArray(path, "final_eval_loss").read(runs)[0]
    return out


def lr_optima(path, sweeps: list[Sweep], coords: dict | None = None, codes: np.ndarray | None = None,
              grids: bool = False) -> list[dict]:
    """Where the best learning rate of every (family, param, N, D) stands: for sweeps with an [lr_search], the
    search's state; with grids=True also for sweeps training the whole grid ('open' while a neighbour of the best is
    unfinished). Rows: sweep, family, param, N, D, state, best_lr, tried (learning rates finished or wanted), beyond
    (those of them past the grid's ends), limit (for a bound: what ends the search there, lrsearch._limit)."""
    from scalingkit.sweep import lrsearch

    if coords is None or codes is None:
        coords, codes = store.read_status(path)
    done, diverged = STATUS_CODE["done"], STATUS_CODE["diverged"]
    rows = []
    for sw in sweeps:
        labels = block_labels(coords, sw) if (sw.lr_search is not None or grids) else None
        if labels is None:
            continue
        idx = sweep_index(coords, sw)
        if sw.lr_search is not None:
            _, searches = lr_searches(path, codes, sw, idx, labels["lr"])
        else:
            block = codes[np.ix_(*idx)]
            losses = final_losses(path, idx, block)
        for pos in np.ndindex(*(len(i) for i in idx[:4])):
            if sw.lr_search is not None:
                found = searches[pos]
                state, best, tried = found.state, found.best_lr, len(found.wanted)
                beyond, limit = list(found.beyond), found.limit
            else:
                per_lr = lrsearch.lr_losses(block[pos], losses[pos], done, diverged)
                state, best = lrsearch.bracket(sw.grid["lrs"], per_lr)
                tried = sum(v is not None for v in per_lr)
                beyond, limit = [], "grid" if state.endswith("bound") else None
            rows.append({"sweep": sw.name, **{d: labels[d][pos[a]] for a, d in enumerate(RUN_DIMS[:4])},
                         "state": state, "best_lr": best, "tried": tried, "beyond": beyond, "limit": limit})
    return rows


def _key(dim, x):
    return store.RunWriter._key(dim, x)


def missing_cells(path, sweeps: list[Sweep], retry_failed: bool = False) -> list[tuple[Cell, Sweep]]:
    """Cells that some sweep plans and that are not finished (done or diverged), each with the sweep that plans it.
    For a sweep with an [lr_search], the cells its search wants now (later rounds appear as results arrive) among
    those the cube holds: grow_for_searches first adds the learning rates past the grid that it wants."""
    coords, status = store.read_status(path)
    todo_codes = [STATUS_CODE["missing"]] + ([STATUS_CODE["failed"]] if retry_failed else [])
    out, seen = [], set()
    for sw in sweeps:
        labels = block_labels(coords, sw)
        if labels is None:
            raise StoreError(f"sweep {sw.name!r} is not in the cube at {path}: give its file to `train` to add it")
        idx = sweep_index(coords, sw)
        if sw.lr_search is None:
            wanted = np.ones(tuple(len(i) for i in idx), dtype=bool)
        else:
            wanted = lr_searches(path, status, sw, idx, labels["lr"])[0]
        todo = np.isin(status[np.ix_(*idx)], todo_codes)
        cells = itertools.product(*(labels[d] for d in RUN_DIMS))  # the block's ravel order
        for labels_of_cell, want, left in zip(cells, wanted.ravel(), todo.ravel()):
            cell = Cell(*labels_of_cell)
            if want and left and cell not in seen:
                out.append((cell, sw))
                seen.add(cell)
    return out


# ---------------------------------------------------------------- naming runs (train --redo)

SELECT_KEYS = ("family", "param", "N", "D", "lr", "seed", "width")


def select(coords: dict, widths: dict, text: str) -> np.ndarray:
    """Boolean mask over the cube's run dimensions of the runs `text` names: a run as Cell prints it
    (`er256/sp/N=7248/D=640000/lr=0.03/seed=0`) or any part of one (`D=640000`, `er256/sp/lr=0.1`,
    `width=16/seed=0`): parts joined by "/", each KEY=VALUE (keys family, param, N, D, lr, seed, width; N is the
    cube's label, the non-embedding count; several values joined by ",": `D=3200,6400`) or a bare family then param,
    in Cell's order ("*" for any). widths: N label -> d_model."""
    mask = np.ones(tuple(len(coords[d]) for d in RUN_DIMS), dtype=bool)
    bare = ["family", "param"]
    parts = [p.strip() for p in str(text).strip().split("/") if p.strip()]
    if not parts:
        raise UserError("--redo needs runs to name, e.g. er256/sp/N=7248/D=640000/lr=0.03/seed=0 or D=640000")
    for part in parts:
        if "=" in part:
            key, _, value = (s.strip() for s in part.partition("="))
        elif bare:
            key, value = bare[0], part
        else:
            raise UserError(f"--redo {text!r}: {part!r} is neither a family, a param nor KEY=VALUE "
                            f"(keys: {', '.join(SELECT_KEYS)})")
        if key not in SELECT_KEYS:
            raise UserError(f"--redo {text!r}: unknown key {key!r} (use {', '.join(SELECT_KEYS)})")
        if key in bare:
            bare = bare[bare.index(key) + 1:]
        if value == "*":
            continue
        dim = "N" if key == "width" else key
        have = [widths.get(int(n)) for n in coords["N"]] if key == "width" else list(coords[dim])
        keep = np.zeros(len(have), dtype=bool)
        for wanted in (v.strip() for v in value.split(",")):
            hit = _label_matches(have, wanted, key)
            if not hit.any():
                shown = ", ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in have)
                raise UserError(f"--redo {text!r}: no {key} {wanted} in the cube (have: {shown})")
            keep |= hit
        shape = [1] * len(RUN_DIMS)
        shape[RUN_DIMS.index(dim)] = len(keep)
        mask &= keep.reshape(shape)
    return mask


def _label_matches(labels: list, wanted: str, key: str) -> np.ndarray:
    if key in ("family", "param"):
        return np.array([str(x) == wanted for x in labels])
    try:
        value = float(wanted)
    except ValueError:
        raise UserError(f"--redo: {key}={wanted!r} is not a number") from None
    if key == "lr":
        return np.array([np.isclose(float(x), value, rtol=1e-9, atol=0) for x in labels])
    return np.array([x is not None and int(x) == value for x in labels])


def sweep_of(path, sweeps: list[Sweep], coords: dict, codes: np.ndarray) -> np.ndarray:
    """Per run of the cube, the index in `sweeps` of the first sweep that plans it, -1 where none does."""
    owner = np.full(codes.shape, -1, dtype=np.int64)
    for i, sw in enumerate(sweeps):
        planned = planned_mask(coords, [sw], codes, path)
        owner[(owner < 0) & planned] = i
    return owner
