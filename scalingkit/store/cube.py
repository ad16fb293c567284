"""The cube: every run's whole loss curve in one labelled xarray Dataset, stored as zarr v3.

Dimensions: family, param, N, D, lr, seed (the run dimensions) and point (the logged points of a curve).
`N` labels a model shape by its non-embedding parameter count (independent of the vocabulary), with `n_layer` and
`d_model` as coordinates on it; the total count, embeddings included, is `n_params(family, N)`.

Who writes what, so that concurrent writers never lose data:
- a coordinator (one `scalingkit train`; several may share a store) creates the cube, grows dimensions and writes
  `status`, always holding the store's file lock, and records status only for cells it claimed (claims.py);
- a worker writes only the chunks of a run it holds a claim for (one run = one chunk along every run dimension),
  checking the claim under the lock before every write, and never touches `status`, metadata or attributes.
A run is `done` only once its curve, its per-run values and, last, its checksum are written and the coordinator has
recorded it: a worker killed half-way leaves `status` at `missing` (possibly with a partial curve, which the next run
overwrites). The checksum (integrity.py) lets every read find damage on disk instead of using it.
Growth and the schema upgrade go through a journal (journal.py) and every metadata write is atomic (atomic.py), so
an interruption leaves the old cube or the new one, never a mix. Every metadata change also rewrites the
consolidated metadata in the group's zarr.json (in the same journalled step), so a notebook's plain
`xr.open_zarr(path)` is quiet and reads one file; scalingkit itself reads the arrays' own metadata.

`status` is an int8 code with CF `flag_values`/`flag_meanings` attributes in one chunk per store rather than one per
run: `scalingkit status` must read 10,000 runs in well under two seconds, and zarr costs ~0.2 ms per chunk read;
the lock makes the single chunk safe. `open_cube` decodes it to strings.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import threading
import time
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import numpy as np

from scalingkit.errors import StoreError
from scalingkit.store import journal

from scalingkit.store.schema import (ADDED_IN, CHECKSUM, CURVE_VARS, LABEL_DTYPES, RUN_DIMS,  # noqa: F401
                                     RUN_FLOAT_VARS, RUN_STR_VARS, SCHEMA_VERSION, STATUS, STATUS_CODE, Cell)


def package_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("scalingkit", "torch", "numpy", "xarray", "zarr", "scipy", "networkx"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


_LOCKS: dict = {}
_LOCKS_GUARD = threading.Lock()


def lock(path: str | os.PathLike):
    """The store's lock (a file beside the store, so zarr never sees it). One object per store and process, so that
    code already holding it may take it again (a fresh FileLock on the same file would wait for itself forever);
    threads and processes still exclude each other."""
    from filelock import FileLock

    key = os.path.abspath(str(path)) + ".lock"
    with _LOCKS_GUARD:
        if key not in _LOCKS:
            _check_lockable(path, key)
            _LOCKS[key] = FileLock(key)
        return _LOCKS[key]


def _check_lockable(path, key: str) -> None:
    """A StoreError, at once, where the lock file cannot be made (its folder is a file, not writable, on a read-only
    file system): waiting for a lock that can never be taken would wait forever."""
    if Path(path).exists() and not Path(path).is_dir():
        raise StoreError(f"store {path}: is a file, not a cube (a zarr folder)")
    folder = Path(key).parent
    base = folder
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise StoreError(f"store {path}: {base} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.close(os.open(key, os.O_RDWR | os.O_CREAT, 0o644))
    except OSError as exc:
        raise StoreError(f"store {path}: cannot create its lock file {key} ({exc.strerror or exc}); training and "
                         "every change to a store need write access to the folder it is in") from None


def finish_interrupted(path) -> str | None:
    """Finish (or undo) a growth or upgrade that a kill, Ctrl-C or full disk interrupted: before anything reads the
    store. Returns None, "finished" or "undone"."""
    if not journal.pending(path):
        return None
    try:
        with lock(path):
            done = journal.recover(path)
            if done is not None:  # a journal from before consolidated metadata left it stale: make it current
                journal.write_file(Path(path), "zarr.json", _root_step(Path(path))["new"])
            return done
    except OSError as exc:
        raise StoreError(f"store {path} has an interrupted growth or upgrade to finish, which needs write access to "
                         f"its folder: {exc}") from None


# ---------------------------------------------------------------- opening and checking

REQUIRED = (*RUN_DIMS, "point", "status", "n_params", "n_layer", "d_model", *CURVE_VARS, *RUN_FLOAT_VARS,
            *RUN_STR_VARS, CHECKSUM)


def required(version: int) -> tuple:
    """The arrays a store of schema `version` has."""
    later = {v for since, names in ADDED_IN.items() if since > version for v in names}
    return tuple(v for v in REQUIRED if v not in later)


@contextmanager
def _reading(path):
    """Any failure to decode the store (bad JSON, a truncated chunk, a wrong codec) becomes one clear StoreError."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:  # zarr and numcodecs raise many types for a damaged store
        raise StoreError(f"store {path} is corrupted: {type(exc).__name__}: {exc}") from None


def open_group(path, mode="r"):
    import zarr

    path = Path(path)
    if not (path / "zarr.json").exists():
        raise StoreError(f"no cube at {path} (run `scalingkit train SWEEP.toml --fill-missing` to create one)")
    finish_interrupted(path)
    with _reading(path):
        # the arrays' own metadata, not the consolidated copy (kept for notebooks): they are what the journal changes
        group = zarr.open_group(str(path), mode=mode, zarr_format=3, use_consolidated=False)
        version = group.attrs.get("schema_version")
        if not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
            newer = isinstance(version, int) and version > SCHEMA_VERSION
            raise StoreError(f"store {path} has schema version {version!r}; this scalingkit reads 1 to "
                             f"{SCHEMA_VERSION}" + (" (upgrade scalingkit)" if newer else ""))
        # look on disk rather than through group listing: zarr lists members concurrently and one bad member
        # leaves pending tasks that print warnings at exit
        missing = [v for v in required(version) if not (path / v / "zarr.json").exists()]
        if missing:
            raise StoreError(f"store {path} is corrupted: missing arrays {', '.join(missing)}")
        for name in required(version):
            group[name]  # parses each array's metadata now, not half-way through a command
    return group


def upgrade(path) -> bool:
    """Bring an older store to the current schema by adding the arrays it lacks (empty, so its runs read NaN there)
    and the version, all at once (journal.py). Takes the store's lock. Returns True when something was added."""
    path = Path(path)
    with lock(path):
        group = open_group(path)
        version = group.attrs["schema_version"]
        if version == SCHEMA_VERSION:
            return False
        run_shape = tuple(group[d].shape[0] for d in RUN_DIMS)
        absent = [v for v in REQUIRED if not (path / v / "zarr.json").exists()]
        steps = [{"file": f"{name}/zarr.json", "old": None, "new": text}
                 for name, text in _array_metadata(run_shape, group["point"].shape[0], absent).items()]
        sealed = {"checksums": {"format": 1, "sealed": False}} if version < 4 else {}  # verify.seal finishes it
        journal.apply(path, "upgrade", steps + [_root_step(path, steps, schema_version=SCHEMA_VERSION, **sealed)])
    return True


def _array_metadata(run_shape: tuple, n_points: int, names: list) -> dict:
    """name -> the zarr.json text of a new, empty array, exactly as _create_run_arrays makes it (in memory)."""
    import zarr
    from zarr.storage import MemoryStore

    files: dict = {}
    _create_run_arrays(zarr.open_group(MemoryStore(store_dict=files), mode="w", zarr_format=3), run_shape, n_points,
                       only=names)
    return {name: files[f"{name}/zarr.json"].to_bytes().decode() for name in names}


def _root_step(path: Path, steps: list | None = None, **attributes) -> dict:
    """A journal step rewriting the group metadata with these attributes changed and its consolidated metadata as
    the arrays will be once `steps` (those before it) are applied. Every change rewrites it (even unchanged), so a
    reader can tell by its file whether the cube changed while it read (_consistent)."""
    old = (path / "zarr.json").read_text()
    doc = json.loads(old)
    doc.setdefault("attributes", {}).update(attributes)
    changes = {Path(step["file"]).parent.name: step["new"] for step in steps or ()
               if "file" in step and step["file"] != "zarr.json"}
    doc["consolidated_metadata"] = _consolidated(path, changes)
    return {"file": "zarr.json", "old": old, "new": json.dumps(doc, indent=2, allow_nan=True)}


def _consolidated(path: Path, changes: dict) -> dict:
    """The group's consolidated metadata (zarr v3, inline: what zarr.consolidate_metadata writes, without its
    warning) for the arrays on disk, with `changes` (array name -> its new zarr.json text, None: removed) applied."""
    metadata = {meta.parent.name: json.loads(meta.read_text()) for meta in path.glob("*/zarr.json")}
    for name, text in changes.items():
        if text is None:
            metadata.pop(name, None)
        else:
            metadata[name] = json.loads(text)
    return {"kind": "inline", "must_understand": False,
            "metadata": dict(sorted(metadata.items(), key=lambda item: item[0].lower()))}


def open_cube(path, decode_status: bool = True, verify: bool = True):
    """The cube as a lazily loaded xarray Dataset, numeric labels sorted, `status` decoded to strings.

    Equivalent to `xr.open_zarr(path, chunks=None, consolidated=False)` plus those two conveniences, and, with verify
    (the default), checked reads: whatever is loaded of a finished run's variables is checked against the run's
    checksum as it is read, and a damaged run raises a StoreError naming it (integrity.py). verify=False reads what
    is stored, unchecked."""
    import xarray as xr

    def read():
        group = open_group(path)  # clear errors before xarray's
        version = group.attrs["schema_version"]
        with _reading(path):
            labels = {d: group[d][:] for d in RUN_DIMS}
            codes = np.asarray(group["status"][:])
            ds = xr.open_zarr(str(path), chunks=None, consolidated=False)
            if verify:
                from scalingkit.store.checked import checked

                sealed = bool(group.attrs.get("checksums", {}).get("sealed"))
                ds = checked(ds, path, labels, codes, version >= 4, sealed, partial(status_codes, path))
            for name in set(REQUIRED) - set(required(version)):  # an older store: measurements it never made are NaN
                dims = RUN_DIMS + (("point",) if name in CURVE_VARS else ())
                ds[name] = (dims, np.full(tuple(ds.sizes[d] for d in dims), "" if name == CHECKSUM else np.nan,
                                          dtype=object if name == CHECKSUM else np.float64))
            ds = ds.sortby([d for d in ("N", "D", "lr", "seed") if ds.sizes[d] > 1])
            return ds, ds["status"].values

    ds, codes = _consistent(path, read)
    if decode_status:
        ds["status"] = (ds["status"].dims, np.asarray(STATUS, dtype=object)[codes], {"long_name": "run status"})
    return ds


def read_status(path) -> tuple[dict, np.ndarray]:
    """(coordinates, status codes) without xarray: the fast path behind `scalingkit status`."""
    def read():
        group = open_group(path)
        with _reading(path):
            coords = {d: group[d][:] for d in RUN_DIMS}
            return coords, np.asarray(group["status"][:])

    return _consistent(path, read)


def status_codes(path) -> np.ndarray:
    return read_status(path)[1]


def _consistent(path, read):
    """read(), again if the cube grew meanwhile (another coordinator, holding the lock): every change rewrites the
    group metadata file, so the same file before and after, and no change under way, means one consistent view."""
    meta = Path(path) / "zarr.json"
    for _ in range(100):
        before = _stamp(meta)
        out = read()
        if not journal.pending(path) and _stamp(meta) == before:
            return out
        time.sleep(0.05)
    raise StoreError(f"store {path} kept changing while it was read; try again")


def _stamp(meta: Path):
    try:
        st = meta.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def attrs(path) -> dict:
    return dict(open_group(path).attrs)


# ---------------------------------------------------------------- creating and growing (coordinator only)

def _small_dataset(coords: dict, n_points: int, shapes: dict, n_params: dict, families: dict):
    """Coordinates and the per-family variables: small, so xarray writes them (and their encodings) itself."""
    import xarray as xr

    data = {
        "n_params": (("family", "N"), np.array([[n_params[(f, n)] for n in coords["N"]] for f in coords["family"]],
                                               dtype=np.int64), {"long_name": "all parameters, tied embedding once"}),
        "entropy_rate": (("family",), np.array([_nan(families[f].get("entropy_rate")) for f in coords["family"]])),
        "loss_floor": (("family",), np.array([_nan(families[f].get("loss_floor")) for f in coords["family"]])),
    }
    cds = {d: np.asarray(coords[d], dtype=LABEL_DTYPES[d]) for d in RUN_DIMS}
    cds["point"] = np.arange(n_points)
    cds["n_layer"] = ("N", np.array([shapes[n][0] for n in coords["N"]], dtype=np.int64))
    cds["d_model"] = ("N", np.array([shapes[n][1] for n in coords["N"]], dtype=np.int64))
    return xr.Dataset(data, coords=cds)


def _create_run_arrays(group, run_shape: tuple, n_points: int, only=None) -> None:
    """The per-run and per-point arrays, created empty through zarr: xarray's writer visits every chunk, which costs
    ~50 s for a 10,000-run cube, while an empty zarr array is only its metadata. The attributes are the ones xarray
    itself writes, so `xr.open_zarr` reads these arrays exactly as if xarray had made them."""
    coords_attr = {"coordinates": "d_model n_layer"}
    nan_attr = {"_FillValue": "AAAAAAAA+H8="}  # xarray's encoding of a float64 NaN fill value
    one_run = (1,) * len(RUN_DIMS)
    wanted = set(REQUIRED if only is None else only)
    for name in (v for v in CURVE_VARS if v in wanted):
        group.create_array(name, shape=run_shape + (n_points,), chunks=one_run + (n_points,), dtype="float64",
                           fill_value=np.nan, dimension_names=RUN_DIMS + ("point",),
                           attributes={**coords_attr, **nan_attr})
    for name in (v for v in RUN_FLOAT_VARS if v in wanted):
        group.create_array(name, shape=run_shape, chunks=one_run, dtype="float64", fill_value=np.nan,
                           dimension_names=RUN_DIMS, attributes={**coords_attr, **nan_attr})
    for name in (v for v in (*RUN_STR_VARS, CHECKSUM) if v in wanted):
        group.create_array(name, shape=run_shape, chunks=one_run, dtype=str, fill_value="",
                           dimension_names=RUN_DIMS, attributes=dict(coords_attr))
    if "status" not in wanted:
        return
    group.create_array("status", shape=run_shape, chunks=run_shape, dtype="int8", fill_value=0,
                       dimension_names=RUN_DIMS,
                       attributes={**coords_attr, "flag_values": list(range(len(STATUS))),
                                   "flag_meanings": " ".join(STATUS), "long_name": "run status (CF flags)"})


def _nan(x):
    return np.nan if x is None else float(x)


def create(path, coords: dict, n_points: int, shapes: dict, n_params: dict, families: dict, extra_attrs: dict):
    """Create an empty cube. coords: labels for each run dimension; shapes: N -> (n_layer, d_model);
    n_params: (family, N) -> total parameter count; families: name -> full specification."""
    path = Path(path)
    if path.exists():
        raise StoreError(f"{path} already exists")
    import zarr

    ds = _small_dataset(coords, n_points, shapes, n_params, families)
    ds.attrs.update({
        "schema_version": SCHEMA_VERSION,
        "title": "scalingkit cube: loss curves of a scaling-law sweep",
        "n_points": n_points,
        "families": families,
        "versions": package_versions(),
        "created_at": _now(),
        "checksums": {"format": 1, "sealed": True},  # every finished run will carry one (integrity.py)
        **extra_attrs,
    })
    tmp = path.with_name(path.name + ".creating")
    shutil.rmtree(tmp, ignore_errors=True)
    journal.path_of(path).unlink(missing_ok=True)  # left by a store that was deleted by hand
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_zarr(str(tmp), mode="w-", consolidated=False, zarr_format=3)
    _create_run_arrays(zarr.open_group(str(tmp), mode="r+"), tuple(len(coords[d]) for d in RUN_DIMS), n_points)
    journal.write_file(tmp, "zarr.json", _root_step(tmp)["new"])  # consolidated: a plain xr.open_zarr is quiet
    os.replace(tmp, path)  # a cube appears whole or not at all


def grow(path, coords: dict, shapes: dict, n_params: dict, families: dict) -> dict:
    """Append new labels along run dimensions, keeping every stored run: only array metadata (the shapes) and the
    small arrays (labels, n_layer, d_model, n_params, floors) change; since every run dimension is chunked by 1, the
    existing chunks keep their keys. All of it is one journalled change (journal.py): a kill, Ctrl-C or full disk at
    any moment leaves the old cube or the new one. Takes the store's lock. Returns what was added."""
    path = Path(path)
    with lock(path):
        upgrade(path)
        group = open_group(path)
        labels = {d: [_plain(x) for x in group[d][:]] for d in RUN_DIMS}
        added = {}
        for dim in RUN_DIMS:
            new = [x for x in coords[dim] if not _contains(labels[dim], x)]
            if new:
                added[dim] = new
                labels[dim] = labels[dim] + [_plain(np.asarray(x, dtype=LABEL_DTYPES[dim]).item()) for x in new]
        sizes = {d: len(labels[d]) for d in RUN_DIMS}
        steps = []
        for name, arr in sorted(group.arrays()):
            dims = arr.metadata.dimension_names or ()
            shape = tuple(sizes.get(d, n) for d, n in zip(dims, arr.shape))
            if shape != tuple(arr.shape):
                steps.append(_shape_step(path, name, shape))
        # per-(family, N) and per-family values for every label, new or old (keeps them consistent)
        known = dict(group.attrs.get("families", {}))
        known.update(families)
        fam, ns = labels["family"], labels["N"]
        small = {**{d: labels[d] for d in added},
                 "n_layer": [shapes[n][0] for n in ns], "d_model": [shapes[n][1] for n in ns],
                 "n_params": [[n_params.get((f, n), -1) for n in ns] for f in fam],
                 "entropy_rate": [_nan(known[f].get("entropy_rate")) for f in fam],
                 "loss_floor": [_nan(known[f].get("loss_floor")) for f in fam]}
        for name, new in small.items():
            old = group[name][:]
            if old.shape != np.shape(new) or not np.array_equal(old, np.asarray(new, dtype=old.dtype),
                                                                 equal_nan=old.dtype.kind == "f"):
                dtype = "object" if old.dtype.kind not in "if" else str(old.dtype)
                steps.append({"values": name, "dtype": dtype, "old": [_plain(x) for x in old.tolist()],
                              "new": new})
        if steps or known != group.attrs.get("families", {}):
            journal.apply(path, "grow", steps + [_root_step(path, steps, families=known)])
    return added


def _shape_step(path: Path, name: str, shape: tuple) -> dict:
    """A journal step resizing one array: its metadata with the new shape (growing never moves or deletes a chunk)."""
    old = (path / name / "zarr.json").read_text()
    doc = json.loads(old)
    doc["shape"] = list(shape)
    return {"file": f"{name}/zarr.json", "old": old, "new": json.dumps(doc, indent=2, allow_nan=True)}


def _plain(x):
    """A label or value as plain JSON (the journal's): str, int or float, nested lists kept."""
    if isinstance(x, list):
        return [_plain(v) for v in x]
    if isinstance(x, (str, np.str_)):
        return str(x)
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    return float(x)


def _contains(labels, x) -> bool:
    if isinstance(x, float):
        return any(np.isclose(x, y, rtol=1e-12, atol=0) for y in labels)
    return x in labels


def set_attrs(path, **values) -> None:
    """Change attributes: one atomic rewrite of the group metadata, under the store's lock (read, update, write)."""
    path = Path(path)
    with lock(path):
        open_group(path)  # a clear error for a missing or damaged store; an interrupted growth finished first
        try:
            journal.write_file(path, "zarr.json", _root_step(path, **values)["new"])
        except OSError as exc:
            raise StoreError(f"could not write the attributes of the store {path} ({exc.strerror or exc}); "
                             "they are as they were") from None


# ---------------------------------------------------------------- run writes

class RunWriter:
    """Writes one run's region. Workers use it for curves, per-run values and, last, the checksum; the coordinator
    for status.

    guard(cell): a context manager around every write of a run's region; a worker's checks, under the store's lock,
    that it still holds the cell's claim (claims.guard), and raises if not.

    A writer that wrote a run's values and records the run finished (write_status: done or diverged) checksums it
    first, if it has not: what a library writing runs itself (run/synthetic.py) does. A worker calls write_checksum
    itself and the coordinator, recording its outcome, writes no values."""

    def __init__(self, path, guard=None):
        self.path = Path(path)
        self.guard = guard or (lambda cell: nullcontext())
        self.group = open_group(self.path, mode="r+")
        if self.group.attrs["schema_version"] != SCHEMA_VERSION:
            raise StoreError(f"store {path} has schema version {self.group.attrs['schema_version']}: "
                             "`scalingkit train` upgrades it before writing runs")
        self._index = {d: {self._key(d, x): i for i, x in enumerate(self.group[d][:])} for d in RUN_DIMS}
        self.n_points = self.group["point"].shape[0]
        self._written: dict = {}  # cell -> {name: value as written}, until its checksum is written
        self._arrays: dict = {}  # name -> chunks.RunArray, to read a run back

    @staticmethod
    def _key(dim, x):
        if dim == "lr":
            return float(f"{float(x):.12g}")
        if dim in ("family", "param"):
            return str(x)
        return int(x)

    def index(self, cell: Cell) -> tuple:
        try:
            return tuple(self._index[d][self._key(d, x)] for d, x in zip(RUN_DIMS, cell.labels()))
        except KeyError:
            raise StoreError(f"run {cell} is not in the cube at {self.path}") from None

    def write_curve(self, cell: Cell, result) -> None:
        idx = self.index(cell)
        n = len(result.steps)
        if n > self.n_points:
            raise StoreError(f"run {cell} logged {n} points; the cube holds {self.n_points}")
        rows = {}
        for name, values in (("step", result.steps), ("tokens", result.tokens), ("train_loss", result.train_loss),
                             ("eval_loss", result.eval_loss), ("lr_now", result.lr_now),
                             *((v, getattr(result, v, None)) for v in ADDED_IN[2] if v in CURVE_VARS)):
            rows[name] = np.full(self.n_points, np.nan)
            if values is not None:  # a result without the exact-law measurements leaves them NaN
                rows[name][:n] = values
        with self.guard(cell):
            for name, row in rows.items():
                self.group[name][idx] = row
        self._written.setdefault(cell, {}).update(rows)

    def write_run_values(self, cell: Cell, values: dict) -> None:
        idx = self.index(cell)
        unknown = [name for name in values if name not in RUN_FLOAT_VARS and name not in RUN_STR_VARS]
        if unknown:
            raise ValueError(f"{unknown[0]} is not a per-run variable")
        values = {name: float(value) if name in RUN_FLOAT_VARS else str(value) for name, value in values.items()}
        with self.guard(cell):
            for name, value in values.items():
                self.group[name][idx] = value
        self._written.setdefault(cell, {}).update(values)

    def write_checksum(self, cell: Cell, status: str) -> str:
        """The run's checksum, written last (integrity.py): a digest of every variable of the run as stored, each
        read back and compared with what this writer wrote, so a write that did not land raises a StoreError
        instead of being checksummed. Then the checksum itself is read back. Returns it."""
        from scalingkit.store import chunks, integrity

        idx = self.index(cell)
        for name in (*integrity.COVERED, CHECKSUM):
            if name not in self._arrays:
                self._arrays[name] = chunks.RunArray(self.path, name)
        stored = {n: self._arrays[n].read(np.array([idx])) for n in integrity.COVERED}
        wrong = [n for n, value in self._written.get(cell, {}).items() if stored[n][1][0] == chunks.UNREADABLE
                 or integrity.canonical(stored[n][0][0]) != integrity.canonical(value)]
        if wrong:
            raise StoreError(f"run {cell}: {', '.join(wrong)} did not read back as written to {self.path}")
        text = integrity.make(cell.labels(), {n: value[0][0] for n, value in stored.items()}, status)
        with self.guard(cell):
            self.group[CHECKSUM][idx] = text
        back, state = self._arrays[CHECKSUM].read(np.array([idx]))
        if state[0] != chunks.OK or back[0] != text:
            raise StoreError(f"run {cell}: its checksum did not read back as written to {self.path}")
        self._written.pop(cell, None)
        return text

    def write_status(self, cells_status: list[tuple[Cell, str]]) -> None:
        """Coordinator only, holding the lock: read the status chunk, update, write it back. A finished run whose
        values this writer wrote is checksummed first (see the class)."""
        for cell, status in cells_status:
            if status in ("done", "diverged") and cell in self._written:
                self.write_checksum(cell, status)
        arr = self.group["status"]
        codes = np.asarray(arr[:])
        for cell, status in cells_status:
            codes[self.index(cell)] = STATUS_CODE[status]
        arr[:] = codes


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- reductions

LOSSES = ("auto", "exact", "sampled")
FINAL = {"sampled": ("final_eval_loss", "final_eval_loss_se"), "exact": ("final_exact_loss", "final_exact_loss_se")}


def _done(ds):
    return ds["status"] == "done" if ds["status"].dtype == object else ds["status"] == STATUS_CODE["done"]


def best_loss(ds, n_convention: str = "total", loss: str = "sampled"):
    """L(N, D) = min over learning rate and seed of the final loss of finished runs, with the argmin kept.

    loss: "sampled" (the held-out sequences' own next tokens) or "exact" (floor + mean KL to the family's law; nan
    where the law is unknown). Returns a Dataset over (family, param, N, D) with `loss`, its standard error
    `loss_se`, `best_lr`, `best_seed`, `runs_done` and, for the N convention asked for, `n` (the parameter count
    to fit against)."""
    import xarray as xr

    if loss not in FINAL:
        from scalingkit.errors import UserError

        raise UserError(f"unknown loss {loss!r} (use exact or sampled)")
    done = _done(ds)
    value, se = FINAL[loss]
    loss_ = ds[value].where(done).load()
    stacked = loss_.stack(variant=("lr", "seed"))
    valid = stacked.notnull().any("variant")
    best = stacked.fillna(np.inf).argmin("variant")
    best_loss_ = stacked.min("variant", skipna=True)
    best_se = ds[se].where(done).load().stack(variant=("lr", "seed")).isel(variant=best)
    variants = stacked["variant"].values
    best_lr = xr.DataArray(np.array([v[0] for v in variants])[best.values], dims=best.dims, coords=best.coords)
    best_seed = xr.DataArray(np.array([v[1] for v in variants])[best.values], dims=best.dims, coords=best.coords)
    out = xr.Dataset({
        "loss": best_loss_.where(valid),
        "loss_se": best_se.drop_vars(["variant", "lr", "seed"], errors="ignore").where(valid),
        "best_lr": best_lr.where(valid),
        "best_seed": best_seed.where(valid),
        "runs_done": done.sum(("lr", "seed")),
    })
    out["n"] = _n_convention(ds, n_convention)
    out.attrs["n_convention"] = n_convention
    out.attrs["loss"] = loss
    return out


def loss_kinds(ds, loss: str = "auto") -> dict[str, str]:
    """family -> the loss to fit it on: "exact" where every finished run of the family has its exact loss, else
    "sampled" (natural text, whose law is unknown, or runs from before the exact loss was measured). loss="exact"
    asks for the exact loss everywhere and names the families that lack it; "sampled" takes the sampled one."""
    from scalingkit.errors import UserError

    if loss not in LOSSES:
        raise UserError(f"unknown loss {loss!r} (use auto, exact or sampled)")
    done = _done(ds)
    missing = (ds["final_exact_loss"].isnull() & done).any([d for d in RUN_DIMS if d != "family"]).values
    kinds = {str(f): ("sampled" if loss == "sampled" or lacks else "exact")
             for f, lacks in zip(ds["family"].values, missing)}
    if loss == "exact" and any(missing):
        lacking = [str(f) for f, m in zip(ds["family"].values, missing) if m]
        raise UserError(f"no exact loss for every run of {', '.join(lacking)}: its next-token law is unknown "
                        "(natural text) or its runs were trained before the exact loss was measured "
                        "(use --loss sampled)")
    return kinds


def _n_convention(ds, n_convention: str):
    from scalingkit.errors import UserError

    if n_convention == "total":
        return ds["n_params"].astype(np.float64)
    if n_convention == "nonembedding":
        return (ds["N"] + 0 * ds["n_params"]).astype(np.float64)
    raise UserError(f"unknown N convention {n_convention!r} (use total or nonembedding)")


def loss_table(path, family: str | None = None, param: str | None = None, n_convention: str = "total",
               loss: str = "auto"):
    """L(N, D) as a flat table for the fitting code: columns family, param, N, D, loss, loss_se, loss_kind (exact or
    sampled: `loss_kinds`), best_lr, best_seed.

    N is the parameter count in the chosen convention: 'total' (all parameters, embedding included) or
    'nonembedding'. The runs read are checked against their checksums (open_cube): a damaged one raises a StoreError
    naming it."""
    from scalingkit.errors import UserError

    ds = open_cube(path)
    for dim, value in (("family", family), ("param", param)):
        if value is not None:
            if value not in [str(x) for x in ds[dim].values]:
                raise UserError(f"{dim} {value!r} is not in the cube (have: {', '.join(map(str, ds[dim].values))})")
            ds = ds.sel({dim: [value]})
    return best_table(ds, n_convention, loss)[list(TABLE_COLUMNS)]


TABLE_COLUMNS = ("family", "param", "N", "D", "loss", "loss_se", "loss_kind", "best_lr", "best_seed")


def best_table(ds, n_convention: str = "total", loss: str = "auto"):
    """loss_table of an opened cube, with the shape behind each N besides: columns TABLE_COLUMNS, then N_label (the
    cube's label: the non-embedding count), d_model and n_layer."""
    import pandas as pd

    kinds = loss_kinds(ds, loss)
    parts = []
    for kind in sorted(set(kinds.values())):
        table = best_loss(ds.sel(family=[f for f, k in kinds.items() if k == kind]), n_convention, kind)
        df = table[["loss", "loss_se", "best_lr", "best_seed", "n"]].to_dataframe().reset_index()
        df["loss_kind"] = kind
        parts.append(df)
    columns = [*TABLE_COLUMNS, "N_label", "d_model", "n_layer"]
    if not parts:
        return pd.DataFrame(columns=columns)
    df = pd.concat(parts).dropna(subset=["loss"])
    shape = {int(n): (int(w), int(l)) for n, w, l in zip(ds["N"].values, ds["d_model"].values, ds["n_layer"].values)}
    df["N_label"] = df["N"].astype(np.int64)
    df["d_model"] = [shape[n][0] for n in df["N_label"]]
    df["n_layer"] = [shape[n][1] for n in df["N_label"]]
    df = df.drop(columns=["N"]).rename(columns={"n": "N"})
    df["N"] = df["N"].astype(np.int64)
    df["D"] = df["D"].astype(np.int64)
    df["family"] = df["family"].astype(str)
    df["param"] = df["param"].astype(str)
    return df.sort_values(["family", "param", "N", "D"])[columns].reset_index(drop=True)


def family_entropy(ds, family: str) -> tuple[float, str]:
    """(entropy in nats per token, how it is known: exact, estimate or unknown) for one family of an opened cube:
    the exact entropy rate of a walk, else a generator's estimated entropy (TnL), else nan."""
    exact = float(ds["entropy_rate"].sel(family=family)) if "entropy_rate" in ds else np.nan
    if np.isfinite(exact):
        return exact, "exact"
    estimate = ds.attrs.get("families", {}).get(family, {}).get("loss_floor_estimate")
    if estimate is not None and np.isfinite(float(estimate)):
        return float(estimate), "estimate"
    return np.nan, "unknown"


def family_floors(path) -> dict[str, tuple[float, str]]:
    """family -> (loss floor, how it is known) for every family of the cube at `path` (the floor is the entropy)."""
    ds = open_cube(path)
    return {str(f): family_entropy(ds, str(f)) for f in ds["family"].values}
