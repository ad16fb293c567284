"""`scalingkit train` on SLURM (the private cluster of slurm_cluster.py, through submitit) and on dask (a real
LocalCluster), against the real trainer: every executor fills the cube with exactly the runs the local executor
trains (bit for bit), each cell claimed, started and recorded once; jobs outlive a killed coordinator and what they
finish is adopted, not trained again; a job requeued, cancelled or signalled before its time limit, and a dask
worker killed mid-task, resume from their checkpoints and end with the uninterrupted curves.

The load test here is small (8 tiny cells per executor); benchmarks/bench_executors.py runs 1,000."""
import json
import os
import re
import signal
import subprocess
import textwrap
import time
import tomllib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SCALINGKIT, child_pids, one_line_error, process_alive, run_cli
from scalingkit import store
from scalingkit.cli import tables
from scalingkit.run import runner
from scalingkit.store import adopt, claims
from scalingkit.sweep import spec
from slurm_cluster import require_accounting, slurm_cluster  # noqa: F401 - the session fixture

distributed = pytest.importorskip("distributed")

FAMILY = """\
[families.er64]
kind = "er"
nodes = 64
edges = 256
seed = 1
"""
# 8 cells of one step each: what a run costs beyond its training, many times over
LOAD = f'name = "load"\n{FAMILY}' + textwrap.dedent("""\
    [grid]
    widths = [16]
    tokens = [320]
    lrs = [1e-3, 3e-3, 1e-2, 3e-2]
    seeds = [0, 1]
    [training]
    batch = 16
    context = 20
    eval_points = 2
    eval_sequences = 8
    """)
# 3 runs of 120 steps (a second or two each), a checkpoint every 0.06 s of training: interrupted mid-run, they resume
LONG = f'name = "long"\n{FAMILY}' + textwrap.dedent("""\
    [grid]
    widths = [16]
    tokens = [38_400]
    lrs = [1e-3, 3e-3, 1e-2]
    seeds = [0]
    [training]
    batch = 16
    context = 20
    eval_points = 8
    eval_sequences = 32
    checkpoint_minutes = 0.001
    """)
CURVES = ("step", "tokens", "train_loss", "eval_loss", "exact_loss", "lr_now")
SLURM = ("--executor", "slurm", "--partition", "debug", "--time", "10", "--batch-variants", "1", "--no-progress")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Both sweeps trained by the local executor in this process: the cubes every executor must reproduce."""
    root = tmp_path_factory.mktemp("reference")
    for name, text in (("load", LOAD), ("long", LONG)):
        runner.fill_missing(root / f"{name}.zarr", spec.from_table(tomllib.loads(text)), workers=0, progress=False,
                            echo=lambda *_: None, batch_variants=1)
    return root


def assert_same_runs(cube, ref):
    a, b = store.open_cube(cube), store.open_cube(ref)
    b = b.sel(lr=a["lr"].values, seed=a["seed"].values)  # a cube of some of the reference's runs
    assert (a["status"].values == "done").all(), a["status"].values
    for name in (*CURVES, "final_eval_loss", "final_exact_loss", "config_hash"):
        assert np.array_equal(a[name].values, b[name].values, equal_nan=a[name].dtype.kind == "f"), name


def events(cube, kind) -> Counter:
    """How many `kind` events (claim, start, submit, adopt, ...) the claims log has per cell."""
    return Counter(json.dumps(e["cell"]) for e in claims.log(cube) if e["event"] == kind)


def statuses(cube) -> dict:
    _, codes = store.read_status(cube)
    return dict(Counter(store.STATUS[int(c)] for c in codes.ravel()))


def write(tmp_path, text, name="sweep.toml"):
    (tmp_path / name).write_text(text)
    return tmp_path / name


def checkpoints(cube) -> list:
    folder = adopt.checkpoints_folder(cube)
    return sorted(folder.glob("*.pt")) if folder.is_dir() else []


def wait_for(predicate, timeout, what, poll=0.1, explain=None):
    """explain(): what to show when it times out (the job's state, the daemons' logs): a CI failure says why."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}" +
                                 (f"\n{explain()}" if explain else ""))
        time.sleep(poll)


def train_in_background(*args, env=None):
    return subprocess.Popen([*SCALINGKIT, "train", *map(str, args)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)


# each checkpoint save (after every step or so) followed by a pause: a run lasts long enough to be interrupted
# mid-way (SLURM lets a cancelled or requeued job run on for seconds), without burning the CPU (worker.py)
def slow() -> dict:
    return {**os.environ, "SCALINGKIT_WORKER_HOOK": "pause-after-save:0.08"}  # os.environ now: SLURM_CONF set


def finished_cells(cube) -> int:
    """Runs whose worker wrote everything (their checksum verifies), recorded or not."""
    coords, _ = store.read_status(cube)
    cells = [store.Cell(*labels) for labels in _labels(coords)]
    return len(adopt.finished(cube, cells))


def _labels(coords):
    import itertools

    return itertools.product(*([x.item() if hasattr(x, "item") else x for x in coords[d]] for d in store.RUN_DIMS))


# ------------------------------------------------------------------------------------------------ SLURM

def test_slurm_detach_then_status_adopts_every_run_once(slurm_cluster, reference, tmp_path):  # noqa: F811
    """8 tiny runs as one job array (2 at a time) with --detach: the coordinator exits at once; the jobs run with
    nobody watching; `status` adopts all 8 (their checksums verify), in under 2 s; the cube is the local executor's
    bit for bit; each cell was claimed, submitted, started and adopted exactly once; a second train while they are
    queued submits nothing."""
    require_accounting(slurm_cluster)
    cube = tmp_path / "store" / "cube.zarr"
    sweep = write(tmp_path, LOAD)
    first = run_cli("train", sweep, "--fill-missing", "--store", cube, *SLURM, "--array-parallelism", "2", "--detach")
    assert first.returncode == 0, first.stderr
    assert re.search(r"submitted 8 runs as SLURM job array (\d+) \(8 jobs, up to 2 at a time", first.stdout)
    assert "left running (--detach)" in first.stdout
    array = re.search(r"job array (\d+)", first.stdout).group(1)
    queued = tables.status_summary(cube)
    assert queued["cluster"]["queued"] + queued["cluster"]["running"] + queued["adopted"]["runs"] == 8
    # the same sweep again while its jobs are queued: nothing is submitted twice
    second = run_cli("train", sweep, "--fill-missing", "--store", cube, *SLURM, "--detach")
    assert second.returncode == 0 and "submitted" not in second.stdout, second.stdout
    slurm_cluster.wait(lambda: not (slurm_cluster.cli("squeue", "-h", "-j", array, check=False) or "").strip(), 240,
                       "the array to leave the queue")
    assert sum(events(cube, "submit").values()) == 8 and set(events(cube, "claim").values()) == {1}
    assert statuses(cube).get("missing", 0) + sum(events(cube, "adopt").values()) == 8
    start = time.perf_counter()
    summary = tables.status_summary(cube)
    assert time.perf_counter() - start < 2.0
    assert statuses(cube) == {"done": 8}
    assert summary["by_status"]["done"] == 8 and summary["cluster"]["jobs"] == []
    assert_same_runs(cube, reference / "load.zarr")
    assert len(events(cube, "start")) == 8 and set(events(cube, "start").values()) == {1}  # none ran twice
    assert set(events(cube, "adopt").values()) == {1}
    assert len(list(adopt.logs_folder(cube).glob(f"{array}_*_0_log.err"))) == 8  # the jobs' logs beside the store


def test_slurm_jobs_outlive_their_coordinator_and_resume_after_requeue_cancel_and_signal(slurm_cluster, reference,  # noqa: F811, E501
                                                                                        tmp_path):
    """The coordinator is SIGKILLed while its 2 jobs train; then job A is requeued (`scontrol requeue`) and job B
    cancelled (`scancel`). The next `train` waits for A and resubmits B; once A runs again it is sent SIGUSR2, as
    before its time limit (submitit's checkpoint(): save, requeue itself). A is adopted when it ends, B recorded;
    nothing else is trained; every attempt resumed from the last checkpoint and the cube is the uninterrupted one."""
    require_accounting(slurm_cluster)
    cube = tmp_path / "store" / "cube.zarr"
    pair = LONG.replace("lrs = [1e-3, 3e-3, 1e-2]", "lrs = [1e-3, 3e-3]")
    coordinator = train_in_background(write(tmp_path, pair), "--fill-missing", "--store", cube, *SLURM, env=slow())
    try:
        wait_for(lambda: len(checkpoints(cube)) == 2 or coordinator.poll() is not None, 180,
                 "each job's first checkpoint")
    finally:
        coordinator.kill()  # SIGKILL: the jobs own their claims and go on
        out, err = coordinator.communicate(timeout=30)
    assert coordinator.returncode == -signal.SIGKILL, out + err
    table = json.loads((claims.folder(cube) / "cells.json").read_text())["claims"]
    job = {entry["cell"][4]: entry["job"] for entry in table.values()}  # lr -> its SLURM job
    a, b = job[1e-3], job[3e-3]
    saved_a = adopt.checkpoint_path(cube, store.Cell("er64", "sp", 6224, 38_400, 1e-3, 0))
    slurm_cluster.cli("scontrol", "requeue", a)
    slurm_cluster.cli("scancel", b)
    requeued = time.time()
    proc = train_in_background("--fill-missing", "--store", cube, *SLURM, env=slow())
    try:
        # A back on its node and saving again (its old attempt saved until KillWait, 2 s; the restart takes 6+ s)
        wait_for(lambda: saved_a.exists() and saved_a.stat().st_mtime > requeued + 5, 180, "A to run again",
                 explain=lambda: (f"job A: {slurm_cluster.job(a)}\nqueue: {slurm_cluster.cli('squeue', check=False)}"
                                  f"\n{slurm_cluster.tails(20)}\ncheckpoint: {saved_a.exists()}"))
        slurm_cluster.cli("scancel", "--batch", "--signal=USR2", a)
        out, err = proc.communicate(timeout=400)
    finally:
        proc.kill()
    assert proc.returncode == 0, out + err
    assert "adopted 1 run that finished while no coordinator watched: 1 done" in out, out
    assert "trained 1/1 runs: 1 done" in out and "1 run resumed from a checkpoint" in out, out
    assert_same_runs(cube, reference / "long.zarr")
    log_a = (adopt.logs_folder(cube) / f"{a}_0_log.err").read_text()
    assert "checkpoint saved at step" in log_a and "resumed" in log_a  # SIGUSR2: saved, requeued, resumed
    assert slurm_cluster.job(a).get("Restarts", "2") == "2"
    (again,) = [j for j in events_jobs(cube) if j not in (a, b)]  # B, resubmitted: resumed from its checkpoint
    assert "resumed" in (adopt.logs_folder(cube) / f"{again}_0_log.err").read_text()
    assert sorted(events(cube, "claim").values()) == [1, 2]  # B claimed again to be resubmitted; A never
    assert len(events(cube, "adopt")) == 1
    assert checkpoints(cube) == []  # removed once the runs were recorded


def test_slurm_submits_in_arrays_of_max_array_size_and_keeps_at_most_the_cap_queued(slurm_cluster, reference,  # noqa: F811, E501
                                                                                       tmp_path):
    """Arrays of at most SCALINGKIT_SLURM_ARRAY_SIZE (here 1) elements, at most SCALINGKIT_SLURM_MAX_QUEUED (here 2)
    of a round's jobs queued at once: --detach submits 2 of 3 runs and says the third is left; the next train waits
    for the 2 (owned by their jobs, not submitted again), submits the third, and every run is done, claimed once."""
    require_accounting(slurm_cluster)
    cube = tmp_path / "store" / "cube.zarr"
    three = write(tmp_path, LOAD.replace("seeds = [0, 1]", "seeds = [0]").replace(", 3e-2]", "]"))
    env = {**os.environ, "SCALINGKIT_SLURM_ARRAY_SIZE": "1", "SCALINGKIT_SLURM_MAX_QUEUED": "2"}
    bad = run_cli("train", three, "--fill-missing", "--store", cube, *SLURM,
                  env={**env, "SCALINGKIT_SLURM_MAX_QUEUED": "0"})
    assert "SCALINGKIT_SLURM_MAX_QUEUED='0'" in one_line_error(bad) and not cube.exists()
    first = run_cli("train", three, "--fill-missing", "--store", cube, *SLURM, "--detach", env=env)
    assert first.returncode == 0, first.stderr
    assert len(re.findall(r"submitted 1 run as SLURM job \d+ \(1 job", first.stdout)) == 2, first.stdout
    assert "1 run not submitted yet (at most 2 queued at once)" in first.stdout, first.stdout
    second = run_cli("train", three, "--fill-missing", "--store", cube, *SLURM, env=env)
    assert second.returncode == 0, second.stderr
    assert len(re.findall(r"submitted 1 run as SLURM job", second.stdout)) == 1, second.stdout
    assert statuses(cube) == {"done": 3}
    assert len(events_jobs(cube)) == 3 and set(events(cube, "claim").values()) == {1}
    assert set(events(cube, "start").values()) == {1} and len(events(cube, "start")) == 3
    assert_same_runs(cube, reference / "load.zarr")


def events_jobs(cube) -> set:
    return {e["job"] for e in claims.log(cube) if e["event"] == "submit"}


# ------------------------------------------------------------------------------------------------ dask

def test_dask_on_a_scheduler_address_trains_every_run_once_and_a_killed_worker_costs_nothing(reference, tmp_path):
    """Any dask scheduler, by its address (a LocalCluster of 2 worker processes started by the test). The 8 tiny runs:
    each claimed and started once, the local executor's cube bit for bit. Then 3 longer runs, one worker process
    SIGKILLed while it trains: dask runs its task again, which enters the claim afresh and resumes from the
    checkpoint; every run ends done once, with the uninterrupted curves."""
    load, long = tmp_path / "load.zarr", tmp_path / "long.zarr"
    dask = ("--executor", "dask", "--batch-variants", "1", "--no-progress")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        address = cluster.scheduler_address
        proc = run_cli("train", write(tmp_path, LOAD), "--fill-missing", "--store", load, "--scheduler", address,
                       *dask)
        assert proc.returncode == 0, proc.stderr
        assert "trained 8/8 runs: 8 done" in proc.stdout
        assert_same_runs(load, reference / "load.zarr")
        assert set(events(load, "claim").values()) == {1} and set(events(load, "start").values()) == {1}
        assert len(events(load, "start")) == 8 and len(events(load, "release")) == 8
        start = time.perf_counter()
        tables.status_summary(load)
        assert time.perf_counter() - start < 2.0

        coordinator = train_in_background(write(tmp_path, LONG, "long.toml"), "--fill-missing", "--store", long,
                                          "--scheduler", address, *dask)
        try:
            wait_for(lambda: len(checkpoints(long)) == 2, 180, "two tasks under way")
            os.kill(next(iter(client.run(os.getpid).values())), signal.SIGKILL)
            out, err = coordinator.communicate(timeout=300)
        finally:
            coordinator.kill()
    assert coordinator.returncode == 0, out + err
    assert "trained 3/3 runs: 3 done" in out and "1 run resumed from a checkpoint" in out, out
    assert_same_runs(long, reference / "long.zarr")
    assert set(events(long, "claim").values()) == {1}
    assert sorted(events(long, "start").values()) == [1, 1, 2]  # the killed task's second attempt
    assert checkpoints(long) == []


def test_after_the_coordinator_is_killed_the_next_train_adopts_finished_runs_and_trains_only_the_rest(reference,
                                                                                                      tmp_path):
    """dask: the coordinator is stopped (SIGSTOP: it, and the LocalCluster's scheduler in it, record nothing more)
    while its 2 workers train; both finish writing their runs (curve, values, checksum); then it is SIGKILLed, and
    its workers die with it. The next `train` adopts those 2 runs (not trained again) and trains only the third.
    (The local executor's workers go the same way: test_orphans.py; its adoption: test_adopt.py.)"""
    cube = tmp_path / "cube.zarr"
    proc = train_in_background(write(tmp_path, LONG), "--fill-missing", "--store", cube, "--executor", "dask",
                               "--workers", "2", "--batch-variants", "1", "--no-progress")
    try:
        wait_for(lambda: len(checkpoints(cube)) == 2, 180, "two runs under way")
        workers = [p for p in child_pids(proc.pid)
                   if "resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
        os.kill(proc.pid, signal.SIGSTOP)
        wait_for(lambda: finished_cells(cube) == 2, 180, "both runs written", poll=0.5)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    wait_for(lambda: not any(process_alive(w) for w in workers), 10, "the workers to die with their coordinator")
    assert statuses(cube) == {"missing": 3}  # nobody recorded them
    again = run_cli("train", "--fill-missing", "--store", cube, "--workers", "0", "--batch-variants", "1",
                    "--no-progress")
    assert again.returncode == 0, again.stderr
    assert "adopted 2 runs that finished while no coordinator watched: 2 done" in again.stdout, again.stdout
    assert "trained 1/1 runs: 1 done" in again.stdout
    assert_same_runs(cube, reference / "long.zarr")
    assert set(events(cube, "start").values()) == {1}  # nothing trained twice
