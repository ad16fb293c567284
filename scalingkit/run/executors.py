"""Executors run worker tasks and yield their outcomes as they finish.

The interface is one method, `run(tasks) -> iterator of outcomes`, where a task is (function, args). The local
executor uses a process pool; a SLURM (submitit) or dask executor implements the same method.
"""
from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Callable, Iterable, Iterator

from scalingkit.errors import UserError


class WorkerDied(UserError):
    """A worker process ended without reporting (killed, out of memory)."""


class InProcessExecutor:
    """Runs tasks one after another in this process (`--workers 0`): simplest to debug, no isolation."""

    def run(self, tasks: Iterable[tuple[Callable, tuple]]) -> Iterator:
        for fn, args in tasks:
            yield fn(*args)


class LocalExecutor:
    """K worker processes on this machine (spawned, so no torch state is inherited)."""

    def __init__(self, workers: int):
        self.workers = workers

    def run(self, tasks: Iterable[tuple[Callable, tuple]]) -> Iterator:
        tasks = list(tasks)
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn"))
        try:
            pending = {pool.submit(fn, *args) for fn, args in tasks}
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    try:
                        yield future.result()
                    except BrokenProcessPool:
                        raise WorkerDied(
                            "a worker process died without reporting (killed or out of memory); its run is left "
                            "missing: run `scalingkit train --fill-missing` again to finish it"
                        ) from None
        finally:
            _stop(pool)


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
