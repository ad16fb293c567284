"""What the dask executor builds on: a LocalCluster of 2 worker processes starts here and runs tasks, and a worker
killed in the middle of a task is seen from the client: the scheduler runs the task again on another worker, and
once more workers died running it than `distributed.scheduler.allowed-failures` allows, the future errs with
KilledWorker. (A task that raises errs with its own exception, after `retries` attempts.)"""
import os
import signal
import time

import pytest

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")


def record_and_wait(marker, finish_on_run):
    """Append this worker's pid to `marker`; return on run `finish_on_run`, else wait to be killed."""
    import os
    import time

    with open(marker, "a") as f:
        f.write(f"{os.getpid()}\n")
    with open(marker) as f:
        if len(f.read().split()) >= finish_on_run:
            return os.getpid()
    time.sleep(120)


def runs(marker):
    return open(marker).read().split() if os.path.exists(marker) else []


def kill_run(marker, n, timeout=60):
    """SIGKILL the worker process of run n (1-based) once it has started."""
    deadline = time.monotonic() + timeout
    while len(runs(marker)) < n:
        assert time.monotonic() < deadline, f"run {n} did not start"
        time.sleep(0.05)
    os.kill(int(runs(marker)[n - 1]), signal.SIGKILL)


@pytest.fixture(scope="module")
def client():
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster, distributed.Client(cluster) as c:
            yield c


def test_two_workers_run_tasks(client):
    assert len(client.scheduler_info()["workers"]) == 2
    assert client.gather(client.map(pow, [2, 3], [10, 2])) == [1024, 9]
    with pytest.raises(ZeroDivisionError):
        client.submit(divmod, 1, 0).result()


def test_a_killed_worker_s_task_runs_again_elsewhere(client, tmp_path):
    marker = str(tmp_path / "runs")
    future = client.submit(record_and_wait, marker, 2, pure=False)
    kill_run(marker, 1)
    pid = future.result(timeout=60)  # the second run, on a live worker, finished it
    first, second = map(int, runs(marker))
    assert pid == second != first and future.status == "finished"


def test_too_many_worker_deaths_err_with_killed_worker(client, tmp_path):
    marker = str(tmp_path / "runs")
    future = client.submit(record_and_wait, marker, 99, pure=False)
    kill_run(marker, 1)
    kill_run(marker, 2)  # allowed-failures = 1: the second death is one too many
    with pytest.raises(distributed.scheduler.KilledWorker, match="workers died while running it"):
        future.result(timeout=60)
    assert future.status == "error" and len(runs(marker)) == 2
    client.wait_for_workers(2, timeout=60)  # the nannies restart the killed workers
