"""What a saved fit records so that it can be reproduced: data hash, form, solver, settings, seed, versions."""
from __future__ import annotations

import datetime
import functools
import hashlib
import platform
from importlib import metadata
from pathlib import Path

import numpy as np

from scalingkit.fit.base import jsonable

_PACKAGES = ("scalingkit", "numpy", "scipy", "pandas", "lmfit", "statsmodels", "click")


def data_hash(columns: dict) -> str:
    """sha256 of the fitted table written as CSV (header, then rows; floats in repr, i.e. exactly)."""
    names = list(columns)
    arrays = [np.asarray(columns[k]).ravel() for k in names]
    h = hashlib.sha256((",".join(names) + "\n").encode())
    for row in zip(*arrays):
        h.update((",".join(repr(float(v)) if isinstance(v, (float, np.floating, int, np.integer)) else str(v)
                           for v in row) + "\n").encode())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 (12 hex digits) of every source file of the scalingkit package that is running: the version number
    stays 0.1.0 while the code changes, and a result saved by other code (another default, a fixed bug) must not be
    reused as if this code had computed it."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def package_versions() -> dict:
    out = {"python": platform.python_version(), "scalingkit_code": code_fingerprint()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance(form: str, solver: str, settings: dict, columns: dict, label: str = "") -> dict:
    return {
        "form": form,
        "solver": solver,
        "settings": jsonable(settings),
        "seed": settings.get("seed"),
        "n_points": int(len(next(iter(columns.values())))),
        "data_sha256": data_hash(columns),
        "label": label,
        "versions": package_versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
