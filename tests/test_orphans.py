"""Workers die with their coordinator: SIGKILL of `train` leaves no worker alive after 2 s and no write after the
kill, and the next `train` takes over the dead coordinator's claims and finishes its runs."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import zarr

from conftest import REPO, SCALINGKIT, child_pids, process_alive, run_cli
from scalingkit import store
from scalingkit.store import claims

LONG = textwrap.dedent("""\
    name = "long"
    [families.er64]
    kind = "er"
    nodes = 64
    edges = 256
    seed = 1
    [grid]
    widths = [16]
    tokens = [64_000]
    lrs = [1e-2, 3e-3]
    seeds = [0]
    [training]
    batch = 16
    context = 20
    eval_points = 60
    eval_sequences = 32
    checkpoint_seconds = 0.0
    """)  # 200 steps a run, a partial curve saved at each of 60 points: a live worker writes several times a second


def _mtimes(cube: Path) -> dict:
    return {f: f.stat().st_mtime for f in cube.rglob("*") if f.is_file()}


def test_killed_coordinator_takes_its_workers_with_it_and_its_claims_are_taken_over(tmp_path):
    (tmp_path / "long.toml").write_text(LONG)
    cube = tmp_path / "cube.zarr"
    proc = subprocess.Popen([*SCALINGKIT, "train", str(tmp_path / "long.toml"), "--fill-missing", "--store", str(cube),
                             "--workers", "2", "--batch-variants", "1", "--no-progress"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline:
        try:  # both runs under way: each has saved a few partial points
            tokens = zarr.open_group(str(cube), mode="r")["tokens"][0, 0, 0, 0, :, 0, :]
            if (np.isfinite(tokens).sum(axis=1) >= 3).all():
                break
        except Exception:
            pass  # the cube is not there yet
        time.sleep(0.1)
    else:
        proc.kill()
        raise AssertionError("the runs never saved partial curves")
    workers = child_pids(proc.pid)
    assert len(workers) >= 2
    killed_at = time.time()
    proc.kill()  # SIGKILL: no handler, no cleanup
    while time.time() < killed_at + 2 and any(process_alive(w) for w in workers):
        time.sleep(0.05)
    assert not [w for w in workers if process_alive(w)], "workers outlived their coordinator"
    proc.communicate(timeout=30)
    written = _mtimes(cube)
    time.sleep(1.5)
    assert _mtimes(cube) == written, "the store changed after the coordinator died"
    late = [str(f) for f, t in written.items() if t > killed_at + 0.25]
    assert not late, late  # nothing written after the kill (a write already under way may land in its instant)
    assert (store.open_cube(cube)["status"] == "missing").all()
    # the dead coordinator's claims are free at once: the next train finishes both runs
    rerun = run_cli("train", "--fill-missing", "--store", cube, "--workers", "2", "--no-progress")
    assert rerun.returncode == 0 and "2 done" in rerun.stdout, rerun.stdout + rerun.stderr
    assert (store.open_cube(cube)["status"] == "done").all()
    assert np.isfinite(store.open_cube(cube)["eval_loss"].values).all()
    assert [e["event"] for e in claims.log(cube)].count("expire") == 2


WATCHED = textwrap.dedent("""\
    import os, sys, threading, time
    from scalingkit.run.executors import _watch_parent
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    print(os.getpid(), flush=True)
    time.sleep(60)
    """)
PARENT = textwrap.dedent("""\
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
    time.sleep(60)
    """)


def test_without_prctl_a_watchdog_ends_the_worker_of_a_dead_parent():
    """The fallback where PR_SET_PDEATHSIG does not exist (macOS, Windows): a thread watching the parent pid."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT, WATCHED], cwd=REPO, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert process_alive(child)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(timeout=30)
    deadline = time.time() + 2
    while time.time() < deadline and process_alive(child):
        time.sleep(0.05)
    assert not process_alive(child)
