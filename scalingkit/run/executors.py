"""Executors run worker tasks and yield their outcomes as they finish.

The interface is one method, `run(tasks) -> iterator of outcomes`, where a task is (function, args). Tasks are taken
from the iterable only when a worker is free to start one, so a coordinator claims a task's cells just before it
starts (claims.py) and two coordinators on one store share the work. The local executor uses a process pool; a
SLURM (submitit) or dask executor implements the same method.

Local workers die with their coordinator: a killed coordinator's workers used to go on writing for seconds, then
sit idle holding their memory. On Linux each worker asks the kernel for SIGKILL when its parent dies
(prctl(PR_SET_PDEATHSIG)); elsewhere a watchdog thread ends it when its parent pid changes. Either way a worker
whose coordinator is gone could not write anyway: its claims are gone with the coordinator (claims.guard).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Callable, Iterable, Iterator

from scalingkit.errors import UserError

PR_SET_PDEATHSIG = 1


class WorkerDied(UserError):
    """A worker process ended without reporting (killed, out of memory)."""


class InProcessExecutor:
    """Runs tasks one after another in this process (`--workers 0`): simplest to debug, no isolation."""

    def run(self, tasks: Iterable[tuple[Callable, tuple]]) -> Iterator:
        for fn, args in tasks:
            yield fn(*args)


class LocalExecutor:
    """K worker processes on this machine (spawned, so no torch state is inherited), tied to this process."""

    def __init__(self, workers: int):
        self.workers = workers

    def run(self, tasks: Iterable[tuple[Callable, tuple]]) -> Iterator:
        todo = iter(tasks)
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn"),
                                   initializer=tie_to_parent, initargs=(os.getpid(),))
        pending: set = set()

        def top_up() -> None:  # one task per free worker, taken (and so claimed) only now
            while len(pending) < self.workers:
                task = next(todo, None)
                if task is None:
                    return
                fn, args = task
                pending.add(pool.submit(fn, *args))

        try:
            top_up()
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                results, broken = [], False
                for future in finished:
                    try:
                        results.append(future.result())
                    except BrokenProcessPool:
                        broken = True
                if not broken:
                    top_up()
                yield from results  # what finished before a worker died is still recorded
                if broken:
                    raise WorkerDied(
                        "a worker process died without reporting (killed or out of memory); its run is left "
                        "missing: run `scalingkit train --fill-missing` again to finish it"
                    )
        finally:
            _stop(pool)


def tie_to_parent(parent_pid: int) -> None:
    """Pool initializer: this worker dies when the coordinator `parent_pid` does."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent_pid:  # the parent died before the request took effect
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass  # no prctl: fall back on the watchdog
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="scalingkit-parent-watch", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.2)
    os._exit(1)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers now (after Ctrl-C or a dead worker, waiting is wrong)."""
    processes = list(getattr(pool, "_processes", {}).values())  # no public API for the worker processes
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        if p.is_alive():
            p.terminate()
    for p in processes:
        p.join(timeout=5)


def make_executor(name: str, workers: int):
    if name != "local":
        raise UserError(f"executor {name!r} is not available yet (have: local)")
    if workers < 0:
        raise UserError("--workers must be 0 (in this process) or more")
    return InProcessExecutor() if workers == 0 else LocalExecutor(workers)
