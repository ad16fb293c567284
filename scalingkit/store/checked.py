"""open_cube's checked reads: each run variable of its Dataset is an xarray backend array that reads the runs asked
for chunk by chunk (chunks.py) and checks the finished ones against their checksums as they are read
(integrity.py). xarray indexes it lazily like its own zarr arrays, so a selection reads only its runs' chunks, and a
command pays for checking exactly what it reads."""
from __future__ import annotations

import numpy as np
import xarray as xr
from xarray.core import indexing

from scalingkit.store import chunks, integrity
from scalingkit.store.schema import RUN_DIMS


class RunVariable(xr.backends.BackendArray):
    """One run variable: outer indexing over the run dimensions (and `point`), checked on every read."""

    def __init__(self, array: chunks.RunArray, dtype, runs: integrity.Runs):
        self.array, self.runs = array, runs
        self.shape, self.dtype = array.shape, dtype

    def __getitem__(self, key):
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.OUTER, self._get)

    def _get(self, key: tuple) -> np.ndarray:
        picks, ints = [], []
        for axis, (k, n) in enumerate(zip(key, self.shape)):
            if isinstance(k, (int, np.integer)):
                ints.append(axis)
            picks.append(np.atleast_1d(np.arange(n)[k]))
        run_picks = picks[:len(RUN_DIMS)]
        grid = np.stack(np.meshgrid(*run_picks, indexing="ij"), axis=-1).reshape(-1, len(RUN_DIMS))
        values, state = self.array.read(grid)
        bad = self.runs.problems(self.array.name, grid, values, state)
        if bad:
            integrity.refuse(self.runs, bad)
        out = values.reshape(tuple(len(p) for p in run_picks) + self.array.tail)
        if self.array.tail:
            out = out[..., picks[len(RUN_DIMS)]]
        return np.squeeze(out, axis=tuple(ints)) if ints else out


def checked(ds, path, labels: dict, codes: np.ndarray, has_checksums: bool, sealed: bool, reread=None):
    """`ds` (xr.open_zarr of the cube) with every run variable read through RunVariable, lazily and cached as
    xarray's own are. reread: () -> the status codes now (integrity.refuse)."""
    runs = integrity.Runs(path, labels, codes, has_checksums, sealed, reread)
    for name in integrity.COVERED:
        if name not in ds:
            continue
        var = ds[name].variable
        data = RunVariable(chunks.RunArray(path, name), var.dtype, runs)
        lazy = indexing.MemoryCachedArray(indexing.CopyOnWriteArray(indexing.LazilyIndexedArray(data)))
        ds[name] = xr.Variable(var.dims, lazy, var.attrs, var.encoding)
    return ds
