"""Whole-file writes that a kill, Ctrl-C or a full disk can never leave half done: write a temporary file, flush it
to disk, rename it over the target (atomic on POSIX and Windows), flush the directory entry.

zarr 3.1 renames its own writes into place too, but without fsync (and zarr 3.0 wrote in place), so the store writes
every file that decides what the cube is (array and group metadata, claims, the growth journal) itself, here.
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path

from scalingkit.durable import sync_dir, write_through  # noqa: F401 - sync_dir: for claims.py and journal.py


def _stage(target: Path, stage) -> Path:
    return Path(stage) if stage is not None else target.parent / f".{target.name}"


def write_bytes(target, data: bytes, stage=None) -> None:
    """Replace `target` with `data` atomically. The temporary file is STAGE.<random>.tmp, by default
    .NAME.<random>.tmp beside the target; it must be on the target's file system. A store's root folder must never
    hold a stray file (zarr warns about each one on every open), so the cube stages its group metadata beside the
    store."""
    target = Path(target)
    stage = _stage(target, stage)
    write_through(target, lambda f: f.write(data), stage.with_name(f"{stage.name}.{uuid.uuid4().hex}.tmp"))


def write_json(target, doc, stage=None) -> None:
    # indent 2 and NaN allowed: what zarr itself writes, so a rewritten metadata file reads back unchanged
    write_bytes(target, json.dumps(doc, indent=2, allow_nan=True).encode(), stage)


def remove_stale(target, stage=None) -> None:
    """Delete the temporary files that a writer of `target` killed half-way left behind."""
    stage = _stage(Path(target), stage)
    for stray in stage.parent.glob(f"{stage.name}.*.tmp"):
        stray.unlink(missing_ok=True)
