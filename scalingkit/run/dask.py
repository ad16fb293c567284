"""The dask executor: each task (one cell, or one batch of learning-rate/seed variants) is one `client.submit` on any
dask.distributed scheduler (`--scheduler tcp://host:8786`), or on a LocalCluster of `--workers` processes started
here when none is given.

A pull executor (executors.py): a task is taken, and its cells claimed, only when a worker thread is free for it
(the cluster's threads, asked again at each top-up, so a cluster that scales is followed). Tasks hold the
coordinator's claims: they end with it (a LocalCluster's worker processes are tied to this process as local workers
are; on a remote cluster a task that goes on running finds its claims gone and writes nothing more).

A worker lost mid-task: the scheduler runs the task again on another worker by itself. That attempt enters the
claims afresh (claims.enter), so the lost attempt, if it were somehow still running, could not write, and resumes
from the task's checkpoint. After `distributed.scheduler.allowed-failures` deaths (default 3) the task errs with
KilledWorker: its cells are recorded failed with that message (`--retry-failed` trains them again).

Workers must see the store at the same path (a shared file system) and run the same scalingkit.
"""
from __future__ import annotations

import logging
import os
from contextlib import ExitStack
from typing import Callable, Iterable, Iterator

from scalingkit.errors import UserError

CONNECT_SECONDS = 30


class DaskExecutor:
    jobs = False

    def __init__(self, scheduler: str | None = None, workers: int = 1):
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise UserError("--executor dask needs dask.distributed (pip install 'dask[distributed]')") from None
        if scheduler is None and workers < 1:
            raise UserError("--executor dask without --scheduler starts a LocalCluster of --workers processes: "
                            "give --workers 1 or more")
        self.scheduler, self.workers = scheduler, workers

    def describe(self) -> str:
        return (f"dask scheduler {self.scheduler}" if self.scheduler else
                f"a dask LocalCluster of {self.workers} worker process{'es' if self.workers != 1 else ''}")

    def run(self, tasks: Iterable[tuple[Callable, tuple]]) -> Iterator:
        import distributed

        with ExitStack() as stack:
            client = stack.enter_context(self._client(distributed))
            todo = iter(tasks)
            pending: dict = {}  # future -> the task's cells (for a KilledWorker)

            def top_up() -> None:
                free = max(1, sum(client.nthreads().values())) - len(pending)
                for _ in range(free):
                    task = next(todo, None)
                    if task is None:
                        return
                    fn, args = task
                    pending[client.submit(fn, *args, pure=False)] = _cells_of(fn, args)

            top_up()
            while pending:
                done, _ = distributed.wait(list(pending), return_when="FIRST_COMPLETED")
                results = []
                for future in done:
                    cells = pending.pop(future)
                    results.append(_result(future, cells))
                    future.release()
                top_up()
                yield from results

    def _client(self, distributed):
        if self.scheduler is not None:
            try:
                return distributed.Client(self.scheduler, timeout=CONNECT_SECONDS)
            except (OSError, TimeoutError) as exc:
                raise UserError(f"cannot reach the dask scheduler at {self.scheduler}: {exc}") from None
        return _LocalClient(distributed, self.workers)


class _LocalClient:
    """A LocalCluster of worker processes tied to this process (they die with it), and a client on it; the
    cluster's chatter about lost and restarted workers kept off the terminal."""

    def __init__(self, distributed, workers: int):
        self.distributed, self.workers = distributed, workers

    def __enter__(self):
        self.quiet = [(log, log.level) for log in map(logging.getLogger, ("distributed", "tornado"))]
        for log, _ in self.quiet:
            log.setLevel(logging.CRITICAL)
        self.cluster = self.distributed.LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                                     dashboard_address=None)
        self.client = self.distributed.Client(self.cluster)
        self.client.register_plugin(TieToCoordinator(os.getpid()), name="scalingkit-tie")
        return self.client

    def __exit__(self, *exc):
        try:
            self.client.close()
            self.cluster.close()
        finally:
            for log, level in self.quiet:
                log.setLevel(level)


try:
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:  # dask is optional until used
    _WorkerPlugin = object


class TieToCoordinator(_WorkerPlugin):
    """A LocalCluster's worker process dies with the coordinator that started it (as local workers do)."""

    def __init__(self, coordinator: int):
        self.coordinator = coordinator

    def setup(self, worker) -> None:
        if os.getppid() == self.coordinator:  # a worker process spawned by the coordinator's nanny
            from scalingkit.run.lifeline import tie_to_parent

            tie_to_parent(self.coordinator)


def _cells_of(fn, args) -> tuple:
    """The cells of a task (fn, args) as the runner builds them: run_cell(store, cell, ...) or run_batch(store,
    cells, ...)."""
    return (args[1],) if fn.__name__ == "run_cell" else tuple(args[1])


def _result(future, cells):
    """The task's outcome(s); a task that errs (KilledWorker: its workers kept dying) becomes failed outcomes."""
    from scalingkit.run.worker import Outcome

    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - one task's end, not the sweep's
        name = type(exc).__name__
        if name == "KilledWorker":
            message = ("KilledWorker: the dask workers running it died too many times (out of memory? killed?); "
                       "`train --retry-failed` trains it again")
        else:
            message = f"{name}: {str(exc).splitlines()[0] if str(exc) else 'no detail'} (dask)"
        outcomes = [Outcome(cell, "failed", message, 0, 0.0) for cell in cells]
        return outcomes if len(cells) > 1 else outcomes[0]
