"""The one-node SLURM cluster the cluster executors are tested on (tests/slurm_cluster.py): it comes up, runs a
submitit job array and a real training run, and cancelling or requeueing a running job is observable. A requeued
training job resumes from its checkpoint and ends with the uninterrupted curve."""
import logging
import time

import numpy as np
import pytest

from slurm_cluster import require_accounting, slurm_cluster  # noqa: F401 - the session fixture

submitit = pytest.importorskip("submitit")

ER = {"kind": "er", "nodes": 64, "edges": 256, "seed": 1}


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


def test_a_requeued_training_job_comes_back_and_resumes_from_its_checkpoint(executor, slurm_cluster, tmp_path):  # noqa: F811, E501
    """engine.train runs in a SLURM job, saving a checkpoint after every step; `scontrol requeue` kills it and
    puts it back in the queue; the job runs again (Restarts=1), resumes from the checkpoint, and returns the curve
    of the same run trained here without interruption, bit for bit."""
    import torch

    from scalingkit.config import RunConfig, TrainSettings
    from scalingkit.families import build_family
    from scalingkit.train.checkpoint import CheckpointSpec
    from scalingkit.train.engine import train

    cfg = RunConfig("er64", "sp", 2, 16, tokens=16 * 20 * 200, lr=1e-2, seed=0,
                    settings=TrainSettings(batch=16, context=20, eval_points=8, eval_sequences=32, device="cpu"))
    path = tmp_path / "checkpoint.pt"

    def job():
        import os
        import time as clock

        torch.set_num_threads(1)
        restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
        slow = (lambda step: clock.sleep(0.05)) if restarts == "0" else None  # the first run is caught mid-way
        return restarts, train(cfg, build_family("er64", ER), checkpoint=CheckpointSpec(path, 0, after_save=slow))

    # Without srun the job's Python is the batch step itself: a requeue kills it KillWait (2 s) after SIGTERM,
    # where an srun step also waits ~5 s on its dead srun (measured: 7.5 s from requeue to PENDING).
    executor.update_parameters(slurm_use_srun=False)
    submitted = executor.submit(job)
    slurm_cluster.wait(path.exists, 120, "the job's first checkpoint")  # ~5 s: the job starts, imports torch
    slurm_cluster.cli("scontrol", "requeue", submitted.job_id)
    slurm_cluster.wait(lambda: slurm_cluster.job_state(submitted.job_id) == "PENDING", 60, "the job to be requeued")
    # eligible again cred_expire + 1 = 6 s after the requeue (slurm_cluster.py), then it runs from the start
    slurm_cluster.wait(lambda: slurm_cluster.job_state(submitted.job_id) != "PENDING", 60, "the job to run again")
    restarts, result = submitted.result()
    assert restarts == "1" and slurm_cluster.job(submitted.job_id)["Restarts"] == "1"
    assert result.status == "done" and len(result.resumed_at) == 1 and 0 < result.resumed_at[0] < cfg.steps
    full = train(cfg, build_family("er64", ER))
    for name in ("steps", "train_loss", "eval_loss", "lr_now", "exact_loss"):
        assert np.array_equal(getattr(result, name), getattr(full, name)), name
