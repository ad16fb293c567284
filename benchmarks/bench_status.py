"""`scalingkit status` on a cube of 10,000 runs (target: under 2 s, the whole command, Python start-up included).

Builds a 10 N x 10 D x 10 lr x 10 seed cube, marks every run done, then times the real command, while this
process, registered as a live coordinator, holds claims on 100 runs (status lists what other coordinators train).
The baseline, measured in the same run, reads an int8 status array chunked one chunk per run (what `status` would
cost if the status array followed the one-run-one-chunk layout of the curves).

    .venv/bin/python benchmarks/bench_status.py [--keep DIR]
"""
import argparse
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np
import zarr

from scalingkit import store
from scalingkit.sweep import plan
from scalingkit.sweep import spec as sweep

SWEEP = """
name = "bench10k"
[families.er64]
kind = "er"
nodes = 64
edges = 256
seed = 1
[grid]
widths = [16, 32, 48, 64, 80, 96, 112, 128, 144, 160]
tokens = [1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000, 512000]
lrs = [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1]
seeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
[training]
batch = 10
context = 20
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", default=None)
    args = ap.parse_args()
    root = Path(args.keep or tempfile.mkdtemp())
    path = root / "cube10k.zarr"
    sw = sweep.from_table(tomllib.loads(SWEEP))
    t = time.perf_counter()
    if not path.exists():
        plan.prepare(path, sw)
        store.RunWriter(path).write_status([(c, "done") for c in sw.cells()])
    print(f"built a cube of {len(sw.cells()):,} runs in {time.perf_counter() - t:.1f} s at {path}")

    from scalingkit.store import claims

    owner = claims.register(path, claims.this_process())
    claims.claim(path, owner, sw.cells()[:100], lambda cells: [True] * len(cells))
    times = []
    try:
        for _ in range(3):
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "scalingkit.cli.main", "status", "--store", str(path)],
                                  capture_output=True, text=True)
            times.append(time.perf_counter() - t)
            assert proc.returncode == 0 and "done: 10,000" in proc.stdout, proc.stdout + proc.stderr
            assert "being trained now by" in proc.stdout and ": 100 runs:" in proc.stdout, proc.stdout
    finally:
        claims.retire(path, owner)
    t = time.perf_counter()
    summary = __import__("scalingkit.cli.tables", fromlist=["x"]).status_summary(path)
    lib = time.perf_counter() - t
    assert summary["by_status"]["done"] == 10_000

    # baseline: the same status codes chunked one run per chunk
    base = root / "per_run_chunks.zarr"
    if not base.exists():
        arr = zarr.create_array(str(base), shape=(1, 1, 10, 10, 10, 10), chunks=(1,) * 6, dtype="int8", fill_value=0)
        arr[:] = np.ones(arr.shape, dtype=np.int8)
    t = time.perf_counter()
    codes = zarr.open_array(str(base), mode="r")[:]
    per_run = time.perf_counter() - t
    assert (codes == 1).all()
    print(f"load average: {__import__('os').getloadavg()[0]:.2f} on {__import__('os').cpu_count()} CPUs")
    print(f"`scalingkit status`, whole command: best {min(times):.2f} s, all {np.round(times, 2)} (target < 2 s)")
    print(f"status_summary() in-process      : {lib:.3f} s")
    print(f"baseline, reading 10,000 one-run chunks of status: {per_run:.2f} s "
          f"(in-process ratio {per_run / lib:.1f}x)")


if __name__ == "__main__":
    main()
