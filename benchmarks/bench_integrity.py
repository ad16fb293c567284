"""What checksums cost on a cube of 10,000 finished runs (16 points a curve): checked reads against the unchecked
zarr reads every command made before, the full check of `status --verify`, checksumming the runs of an older store
once, and a worker's checksum write (with its read-back) per run.

Builds the bench_status.py grid (10 N x 10 D x 10 lr x 10 seed) with every run's curve and per-run values filled
through zarr (minutes; --keep DIR reuses it), then:
- loss_table: store.best_table(open_cube(path)) on the exact loss (reads final_exact_loss, its standard error and
  the checksums of 10,000 runs), checked (the default) against open_cube(path, verify=False) (xarray over zarr: how
  every command read before checksums);
- the optimal inputs: every finished run's exact-loss curve and tokens, checked against unchecked;
- `scalingkit status --verify` (whole command) and `status` (whole command);
- sealing: the 10,000 runs of a store upgraded from schema 3 checksummed as stored (once per store).

    .venv/bin/python benchmarks/bench_integrity.py [--keep DIR]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np
import zarr

sys.path.insert(0, str(Path(__file__).parent))
from bench_status import SWEEP  # noqa: E402

from scalingkit import store  # noqa: E402
from scalingkit.store import verify  # noqa: E402
from scalingkit.sweep import plan  # noqa: E402
from scalingkit.sweep import spec as sweep  # noqa: E402


def build(path: Path) -> None:
    """Every run done, with values in every run array, and no checksums yet (as a store of schema 3)."""
    sw = sweep.from_table(tomllib.loads(SWEEP))
    plan.prepare(path, sw)
    group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    rng = np.random.default_rng(0)
    for name in (*store.CURVE_VARS, *store.RUN_FLOAT_VARS):
        array = group[name]
        array[:] = rng.random(array.shape) + 2
    for name in store.RUN_STR_VARS:
        array = group[name]
        array[:] = np.full(array.shape, "0123456789abcdef", dtype=object)
    store.RunWriter(path).write_status([(c, "done") for c in sw.cells()])
    store.set_attrs(path, checksums={"format": 1, "sealed": False})


def timed(fn, repeat=1):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def cli(*args):
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "scalingkit.cli.main", *args], capture_output=True, text=True)
    return time.perf_counter() - t, proc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", default=None)
    args = ap.parse_args()
    root = Path(args.keep or tempfile.mkdtemp())
    unsealed = root / "unsealed10k.zarr"
    if not unsealed.exists():
        t = time.perf_counter()
        build(unsealed)
        print(f"built a cube of 10,000 filled runs in {time.perf_counter() - t:.0f} s at {unsealed}")
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    path = root / "sealed10k.zarr"
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(unsealed, path)
    seal, count = timed(lambda: verify.seal(path))
    assert count == 10_000
    print(f"sealing 10,000 runs of an upgraded store (once)       : {seal:.1f} s")

    checked, table = timed(lambda: store.best_table(store.open_cube(path), loss="exact"), 3)
    plain, same = timed(lambda: store.best_table(store.open_cube(path, verify=False), loss="exact"), 3)
    assert table.equals(same) and len(table) == 100
    print(f"loss table (final values of 10,000 runs), checked      : {checked:.2f} s")
    print(f"loss table, unchecked zarr reads (as before checksums) : {plain:.2f} s  (checked/unchecked "
          f"{checked / plain:.2f})")

    def curves(verify):
        ds = store.open_cube(path, verify=verify)
        return ds["tokens"].values, ds["exact_loss"].values

    checked_c, a = timed(lambda: curves(True), 3)
    plain_c, b = timed(lambda: curves(False), 3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    print(f"two curve variables of 10,000 runs, checked            : {checked_c:.2f} s")
    print(f"two curve variables, unchecked zarr reads              : {plain_c:.2f} s  (checked/unchecked "
          f"{checked_c / plain_c:.2f})")

    full, proc = cli("status", "--verify", "--store", str(path))
    assert proc.returncode == 0 and "10,000 ok, 0 damaged" in proc.stdout, proc.stdout + proc.stderr
    print(f"`scalingkit status --verify`, whole command          : {full:.1f} s (every variable of every run)")
    status = min(cli("status", "--store", str(path))[0] for _ in range(3))
    print(f"`scalingkit status`, whole command                   : {status:.2f} s (best of 3; target < 2 s)")

    writer = store.RunWriter(path)
    cells = sweep.from_table(tomllib.loads(SWEEP)).cells()[:50]
    t = time.perf_counter()
    for cell in cells:
        writer.write_checksum(cell, "done")
    per_run = (time.perf_counter() - t) / len(cells)
    print(f"a worker's checksum write with its read-back, per run  : {per_run * 1e3:.1f} ms")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
