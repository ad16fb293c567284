"""The executors on many tiny cells: every cell done exactly once, none lost, none duplicated, and what each
executor costs per cell beyond the local executor on the same cells.

A sweep of CELLS cells (default 1,000: 10 learning rates x 100 seeds of a width-16 model trained for one step, so
that a cell's cost is nearly all overhead: a worker or job starting, the family built, claims, region writes and
checksums), trained by `scalingkit train --batch-variants 1` (one task per cell) through each executor into its own
store:
- local: 2 worker processes (the baseline);
- dask: a LocalCluster of 2 worker processes, started by the coordinator;
- slurm: one job array on the private one-node cluster of tests/slurm_cluster.py (2 CPUs: 2 jobs at a time), the
  coordinator waiting for it.
For each: the wall time of the whole command, per cell, and the overhead per cell against local; then checks that
every cell is done, was claimed and started exactly once (the claims log) and holds the local store's values bit for
bit; and the time of `scalingkit status` (the whole command) on the store. The machine's load average is printed
with the figures (other processes share the cores).

    .venv/bin/python benchmarks/bench_executors.py [--cells 1000] [--executors local,dask,slurm] [--keep DIR]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

SWEEP = """\
name = "bench-executors"
[families.er64]
kind = "er"
nodes = 64
edges = 256
seed = 1
[grid]
widths = [16]
tokens = [320]
lrs = {lrs}
seeds = {seeds}
[training]
batch = 16
context = 20
eval_points = 2
eval_sequences = 8
"""


def sweep_text(cells: int) -> str:
    lrs = [float(f"{x:.3g}") for x in np.geomspace(1e-4, 1e-1, 10)]
    if cells % len(lrs):
        raise SystemExit("--cells must be a multiple of 10")
    return SWEEP.format(lrs=lrs, seeds=list(range(cells // len(lrs))))


def train(sweep: Path, cube: Path, executor: str, env: dict) -> float:
    extra = {"local": ["--workers", "2"], "dask": ["--workers", "2"],
             "slurm": ["--partition", "debug", "--time", "10", "--array-parallelism", "2"]}[executor]
    command = [sys.executable, "-m", "scalingkit.cli.main", "train", str(sweep), "--fill-missing", "--store",
               str(cube), "--executor", executor, "--batch-variants", "1", "--no-progress", *extra]
    t = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{executor}: train failed\n{proc.stdout}\n{proc.stderr}")
    print(f"  {executor}: {proc.stdout.strip().splitlines()[-1]}")
    return seconds


def check(cube: Path, reference: Path | None, cells: int) -> None:
    from scalingkit import store
    from scalingkit.store import claims

    ds = store.open_cube(cube)
    assert (ds["status"].values == "done").all() and ds["status"].size == cells, "not every cell is done"
    for event in ("claim", "start"):
        counts = Counter(json.dumps(e["cell"]) for e in claims.log(cube) if e["event"] == event)
        assert len(counts) == cells and set(counts.values()) == {1}, f"{event}: {Counter(counts.values())}"
    if reference is not None:
        ref = store.open_cube(reference)
        for name in ("eval_loss", "train_loss", "exact_loss", "final_eval_loss"):
            assert np.array_equal(ds[name].values, ref[name].values, equal_nan=True), name


def status_seconds(cube: Path, env: dict) -> float:
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "scalingkit.cli.main", "status", "--store", str(cube)],
                              capture_output=True, text=True, env=env, cwd=REPO)
        best = min(best, time.perf_counter() - t)
        assert proc.returncode == 0, proc.stderr
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=1000)
    ap.add_argument("--executors", default="local,dask,slurm")
    ap.add_argument("--keep", default=None, help="folder for the stores (default: a temporary one)")
    args = ap.parse_args()
    executors = args.executors.split(",")
    if "local" not in executors:
        executors.insert(0, "local")  # the baseline
    root = Path(args.keep or tempfile.mkdtemp(prefix="bench-executors-"))
    root.mkdir(parents=True, exist_ok=True)
    sweep = root / "sweep.toml"
    sweep.write_text(sweep_text(args.cells))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cluster = None
    if "slurm" in executors:
        import slurm_cluster

        reason = slurm_cluster.why_unavailable()
        if reason:
            raise SystemExit(f"slurm: {reason}")
        cluster = slurm_cluster.acquire()
        env["SLURM_CONF"] = str(cluster.conf)
        print(f"SLURM cluster up in {cluster.started_seconds:.1f} s ({cluster.cpus} CPUs)")
    try:
        print(f"{args.cells:,} cells, one step each; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        seconds, loads = {}, {}
        for executor in executors:
            cube = root / executor / "cube.zarr"
            before = os.getloadavg()[0]
            seconds[executor] = train(sweep, cube, executor, env)
            loads[executor] = (before, os.getloadavg()[0])
            check(cube, root / "local" / "cube.zarr" if executor != "local" else None, args.cells)
        print(f"\n{'executor':<8} {'wall s':>8} {'per cell ms':>12} {'overhead/cell ms':>17} {'status s':>9} "
              f"{'load before-after':>18}")
        for executor in executors:
            per = seconds[executor] / args.cells * 1e3
            over = (seconds[executor] - seconds["local"]) / args.cells * 1e3
            status = status_seconds(root / executor / "cube.zarr", env)
            print(f"{executor:<8} {seconds[executor]:>8.1f} {per:>12.1f} {over:>17.1f} {status:>9.2f} "
                  f"{loads[executor][0]:>8.2f}-{loads[executor][1]:.2f}")
        print("every cell done, claimed once, started once; values equal to the local executor's bit for bit")
    finally:
        if cluster is not None:
            slurm_cluster.release()


if __name__ == "__main__":
    main()
