"""Executors run worker tasks and yield their outcomes as they finish.

Two kinds, one task each = one cell or one batch of learning-rate/seed variants:
- pull executors, `run(tasks) -> iterator of outcomes`, where a task is (function, args): tasks are taken from the
  iterable only when a worker is free to start one, so a coordinator claims a task's cells just before it starts
  (claims.py) and two coordinators on one store share the work. Local processes (LocalExecutor), this process
  (InProcessExecutor) and dask (dask.py: any dask.distributed scheduler, or a LocalCluster) are pull executors; their
  tasks hold the coordinator's claims, so they die with it;
- job executors (`jobs = True`): SLURM through submitit (slurm.py) submits a round's tasks at once as a job array,
  each array element owning its cells' claims itself, so that queued and running jobs outlive the coordinator
  (`--detach`, a login node that reboots) and whatever they finish is adopted by the next `train` or `status`.
Settings (ExecutorSettings) come from the command line over the sweep's [executor] table.

Local workers die with their coordinator: a killed coordinator's workers used to go on writing for seconds, then
sit idle holding their memory. On Linux each worker asks the kernel for SIGKILL when its parent dies
(prctl(PR_SET_PDEATHSIG)); elsewhere a watchdog thread ends it when its parent pid changes. Either way a worker
whose coordinator is gone could not write anyway: its claims are gone with the coordinator (claims.guard).
"""
from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, fields
from multiprocessing import get_context
from typing import Callable, Iterable, Iterator

from scalingkit.errors import UserError
from scalingkit.run.lifeline import _watch_parent, tie_to_parent  # noqa: F401 - _watch_parent: tests


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


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers now (after Ctrl-C or a dead worker, waiting is wrong)."""
    processes = list(getattr(pool, "_processes", {}).values())  # no public API for the worker processes
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        if p.is_alive():
            p.terminate()
    for p in processes:
        p.join(timeout=5)


KINDS = ("local", "slurm", "dask")


@dataclass
class ExecutorSettings:
    """Where runs execute, from the sweep's [executor] table with the command line's flags over it.
    local: `workers` processes (0: this process). slurm: a job array through submitit, each element one task, with
    these sbatch settings (time: SLURM's format, [D-]H:MM:SS or minutes; options: any other sbatch option,
    e.g. account, qos, constraint); job logs in logs/ beside the store. dask: tasks on the scheduler at `scheduler`
    (tcp://host:8786), or on a LocalCluster of `workers` processes when none is given."""

    kind: str = "local"
    workers: int = 1
    partition: str | None = None
    gpus_per_task: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    time: str | None = None
    array_parallelism: int | None = None
    options: dict = field(default_factory=dict)
    scheduler: str | None = None

    SLURM_ONLY = ("partition", "gpus_per_task", "cpus_per_task", "mem", "time", "array_parallelism", "options")

    @classmethod
    def resolve(cls, table: dict | None, **flags) -> "ExecutorSettings":
        """The sweep's [executor] table (spec.py validated it), then every flag given (not None) over it. Checks that
        each setting applies to the executor chosen."""
        values = {}
        for key, value in (table or {}).items():
            values["options" if key == "slurm_options" else key] = value
        options = dict(values.get("options", {}))
        options.update(flags.pop("options", None) or {})
        values.update({k: v for k, v in flags.items() if v is not None})
        values["options"] = options
        known = {f.name for f in fields(cls)}
        settings = cls(**{k: v for k, v in values.items() if k in known})
        if settings.kind not in KINDS:
            raise UserError(f"unknown executor {settings.kind!r} (have: {', '.join(KINDS)})")
        if settings.workers < 0:
            raise UserError("--workers must be 0 (in this process) or more")
        if settings.kind != "slurm":
            given = [k for k in cls.SLURM_ONLY if getattr(settings, k) not in (None, {})]
            if given:
                flag = "--slurm-option" if given[0] == "options" else "--" + given[0].replace("_", "-")
                raise UserError(f"{flag} applies to --executor slurm (the executor here is {settings.kind})")
        if settings.kind != "dask" and settings.scheduler is not None:
            raise UserError(f"--scheduler applies to --executor dask (the executor here is {settings.kind})")
        for key in ("gpus_per_task", "cpus_per_task", "array_parallelism"):
            value = getattr(settings, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise UserError(f"--{key.replace('_', '-')} must be a whole number >= 1, got {value!r}")
        return settings


def make_executor(name, workers: int = 1, store_path=None):
    """The executor for `name` (a kind, or ExecutorSettings) with `workers`."""
    settings = name if isinstance(name, ExecutorSettings) else ExecutorSettings.resolve(None, kind=name,
                                                                                        workers=workers)
    if settings.kind == "slurm":
        from scalingkit.run.slurm import SlurmExecutor

        return SlurmExecutor(settings, store_path)
    if settings.kind == "dask":
        from scalingkit.run.dask import DaskExecutor

        return DaskExecutor(settings.scheduler, settings.workers)
    return InProcessExecutor() if settings.workers == 0 else LocalExecutor(settings.workers)
