"""Durable whole-file replacement, shared by the training engine's checkpoints and the store: a kill, Ctrl-C or a
full disk leaves the old file or the new one, never half of one."""
from __future__ import annotations

import os
from pathlib import Path


def write_through(target, write, tmp) -> None:
    """Call write(file) on the temporary file `tmp`, flush it to disk, rename it over `target`, flush the folder;
    on any error (or a Ctrl-C) `tmp` is removed and `target` is as it was. Used by the store (store/atomic.py) and
    the checkpoints (train/checkpoint.py), each with its own temporary names."""
    target, tmp = Path(target), Path(tmp)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_dir(target.parent)


def sync_dir(folder) -> None:
    """Make a rename or unlink in `folder` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
