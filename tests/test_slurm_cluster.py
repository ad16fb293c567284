"""The one-node SLURM cluster the cluster executors are tested on (tests/slurm_cluster.py): it comes up, runs a
submitit job array, and cancelling a running job is observable. (A requeued training job's resume from its checkpoint
is tested through the whole stack in tests/test_executors.py.)"""
import logging
import time

import pytest

from slurm_cluster import require_accounting, slurm_cluster  # noqa: F401 - the session fixture

submitit = pytest.importorskip("submitit")


@pytest.fixture
def executor(slurm_cluster, tmp_path):  # noqa: F811 - the fixture imported above
    ex = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="slurm")
    ex.update_parameters(timeout_min=10, slurm_partition="debug", cpus_per_task=1, mem_gb=1)
    return ex


def test_the_cluster_is_up(slurm_cluster):  # noqa: F811
    node = slurm_cluster.cli("sinfo", "-h", "-N", "-o", "%N %T %c").split()
    assert node == [slurm_cluster.host, "idle", str(slurm_cluster.cpus)]
    if slurm_cluster.accounting:  # job accounting answers (submitit reads job states from sacct)
        assert "JobID" in slurm_cluster.cli("sacct", "-a", "-o", "JobID,State")


def test_a_job_array_returns_every_result(executor, slurm_cluster, caplog):  # noqa: F811
    def task(x):
        import os
        return x * x, os.environ["SLURM_ARRAY_TASK_ID"], os.environ["SLURM_JOB_ID"]

    with caplog.at_level(logging.WARNING, logger="submitit"):
        jobs = executor.map_array(task, [2, 3, 4])
        results = [job.result() for job in jobs]
    assert [r[:2] for r in results] == [(4, "0"), (9, "1"), (16, "2")]
    assert len({r[2] for r in results}) == 3  # three SLURM jobs
    if slurm_cluster.accounting:
        assert not [r for r in caplog.records if "sacct" in r.getMessage()]  # no "Bypassing sacct error"


def test_scancel_ends_a_running_job(executor, slurm_cluster):  # noqa: F811
    require_accounting(slurm_cluster)
    job = executor.submit(time.sleep, 600)
    slurm_cluster.wait(lambda: slurm_cluster.job_state(job.job_id) == "RUNNING", 60, "the job to run")
    slurm_cluster.cli("scancel", job.job_id)
    slurm_cluster.wait(lambda: job.done(force_check=True), 30, "submitit to see the job end")  # sacct's state
    assert job.state.startswith("CANCELLED")
    job._results_timeout_s = 0  # submitit waits 15 s for a result file a slow shared file system may show late
    with pytest.raises(submitit.core.utils.UncompletedJobError, match="CANCELLED"):
        job.result()
