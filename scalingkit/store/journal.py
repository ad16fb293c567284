"""Changes to the cube that touch many files but must appear whole: growth (new labels along a run dimension) and
the schema upgrade (new arrays). A kill, Ctrl-C or full disk half-way used to leave arrays of different lengths, or a
coordinate resized before its labels were written (bogus N = 0 labels that every later growth kept).

Before the first change, the whole change is written to STORE.journal (atomically, flushed to disk): every metadata
file it rewrites, before and after, and every small array it rewrites whole (coordinate labels, n_layer, d_model,
n_params, the per-family floors), before and after. Then the steps are applied in order and the journal removed.
Every step is idempotent, so whoever next opens the store, holding its lock, finishes an interrupted change by
applying all its steps again (roll forward), or, if that fails too (the disk is still full), undoes them (roll back).
Either way the cube is the old one or the new one, never a mix; stored runs are never touched (growth only rewrites
metadata: every run dimension is chunked by one, so the existing chunks keep their keys).

A step is {"file": "N/zarr.json", "old": text or None, "new": text or None} (None: the file is absent) or
{"values": "N", "dtype": "int64", "old": list or None, "new": list}. The caller holds the store's lock.

For tests, SCALINGKIT_STORE_HOOK="OP:STEP:ACTION" (OP grow or upgrade) stops a change at step STEP (0: before the
journal is written; i: before step i; n + 1: after the last step, before the journal is removed) with ACTION pause
(print a line to stderr and sleep, to be signalled), kill (SIGKILL itself), interrupt (SIGINT itself, as Ctrl-C) or
enospc (fail as a full disk does).
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from scalingkit.errors import StoreError
from scalingkit.store import atomic

HOOK = "SCALINGKIT_STORE_HOOK"


def path_of(store) -> Path:
    return Path(str(store) + ".journal")


def root_stage(store) -> Path:
    """Where the store's group metadata is staged before its rename: beside the store, never in it."""
    return Path(str(store) + ".zarr-json")


def pending(store) -> bool:
    return path_of(store).exists()


def apply(store, op: str, steps: list[dict]) -> None:
    """Journal `steps`, apply them, remove the journal. On an error (a full disk) the steps are undone at once and a
    StoreError says the cube is as it was; on Ctrl-C the journal stays and the next open finishes the change."""
    store = Path(store)
    total = len(steps) + 1
    doc = {"op": op, "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "steps": steps}
    try:
        _hook(op, 0, total)
        atomic.write_json(path_of(store), doc)
    except OSError as exc:
        raise StoreError(f"could not {op} the store {store}: {exc.strerror or exc}; it is unchanged") from None
    try:
        for i, step in enumerate(steps, 1):
            _hook(op, i, total)
            _forward(store, step)
        _hook(op, total, total)
    except Exception as exc:  # noqa: BLE001 - a full disk or a permission: put the old cube back
        try:
            for step in reversed(steps):
                _backward(store, step)
            _remove(store)
        except Exception:  # noqa: BLE001
            raise StoreError(f"could not {op} the store {store} ({_reason(exc)}) nor undo it; every stored run is "
                             "intact: free space and run any scalingkit command on it to finish the change") from None
        raise StoreError(f"could not {op} the store {store} ({_reason(exc)}); it is as it was before") from None
    _remove(store)


def recover(store) -> str | None:
    """Finish a change that was interrupted (or, failing that, undo it). Returns what was done: None (nothing was
    pending), "finished" or "undone". The caller holds the lock."""
    store = Path(store)
    journal = path_of(store)
    atomic.remove_stale(journal)
    if not journal.exists():
        return None
    atomic.remove_stale(store / "zarr.json", root_stage(store))
    if not (store / "zarr.json").exists():  # the store itself was removed: its journal means nothing
        _remove(store)
        return None
    try:
        doc = json.loads(journal.read_text())
        steps = doc["steps"]
    except (OSError, ValueError, KeyError) as exc:
        raise StoreError(f"store {store} has an unreadable journal {journal}: {exc}") from None
    try:
        for step in steps:
            _forward(store, step)
        done = "finished"
    except Exception as forward_error:  # noqa: BLE001
        try:
            for step in reversed(steps):
                _backward(store, step)
            done = "undone"
        except Exception:  # noqa: BLE001
            raise StoreError(f"store {store}: an interrupted {doc.get('op', 'change')} can be neither finished nor "
                             f"undone ({_reason(forward_error)}); every stored run is intact: free space and run any "
                             "scalingkit command on it again") from None
    _remove(store)
    return done


def _forward(store: Path, step: dict) -> None:
    if "file" in step:
        write_file(store, step["file"], step["new"])
    else:
        _put_values(store, step["values"], step["dtype"], step["new"], exact=True)


def _backward(store: Path, step: dict) -> None:
    if "file" in step:
        if step["old"] is None and step["file"] != "zarr.json":  # an array this change created: remove it whole
            shutil.rmtree(store / Path(step["file"]).parent, ignore_errors=True)
        else:
            write_file(store, step["file"], step["old"])
    elif step["old"] is not None:
        _put_values(store, step["values"], step["dtype"], step["old"], exact=False)


def write_file(store: Path, name: str, text: str | None) -> None:
    """Replace (or, with None, remove) one metadata file of the store atomically; the group's is staged beside it."""
    target = store / name
    if text is None:
        target.unlink(missing_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(target, text.encode(), root_stage(store) if name == "zarr.json" else None)


def _put_values(store: Path, name: str, dtype: str, values: list, exact: bool) -> None:
    """Rewrite a small array whole: its chunks are removed first, so a chunk torn by an earlier writer is never read
    back (zarr reads a chunk it only partly overwrites). exact: the values fill the array (going forward, after its
    resize); else they may fill only its start (undoing, before the resize is undone)."""
    import zarr

    arr = zarr.open_array(str(store / name), mode="r+", zarr_format=3)
    data = np.asarray(values, dtype=object if dtype == "object" else dtype)
    fits = data.shape == arr.shape if exact else all(a <= b for a, b in zip(data.shape, arr.shape))
    if data.ndim != arr.ndim or not fits:  # zarr would clip the selection and write part of the values
        raise StoreError(f"{name}: {data.shape} values do not fit the array of shape {arr.shape}")
    shutil.rmtree(store / name / "c", ignore_errors=True)
    if data.size:
        arr[tuple(slice(0, n) for n in data.shape)] = data
    for chunk in (store / name / "c").rglob("*"):
        if chunk.is_file():
            with open(chunk, "rb+") as f:
                os.fsync(f.fileno())
    atomic.sync_dir(store / name)


def _remove(store: Path) -> None:
    path_of(store).unlink(missing_ok=True)
    atomic.sync_dir(store.parent)


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"


def _hook(op: str, step: int, total: int) -> None:
    spec = os.environ.get(HOOK)
    if not spec:
        return
    at_op, at_step, action = spec.split(":")
    if at_op != op or int(at_step) != step:
        return
    if action == "pause":
        print(f"{op} paused at step {step} of {total}", file=sys.stderr, flush=True)
        time.sleep(600)
    elif action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "interrupt":
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # Python raises KeyboardInterrupt here
    elif action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
