"""Adoption, attempts and checkpoints, in this process on the real trainer: a run whose worker wrote everything (its
checksum last) but whose coordinator died is adopted by the next `status` or `train`, not trained again, while a
half-written one is trained again; a later attempt of a task fences off an earlier one; `--redo` trains from the
start, not from an old checkpoint; a cluster job counts as alive while the scheduler cannot be asked. And the
executor settings: flags over the sweep's [executor] table, each setting only for its executor."""
import json
import subprocess
import tomllib

import numpy as np
import pytest
import zarr

from conftest import one_line_error, run_cli, tiny_sweep_text
from scalingkit import store
from scalingkit.cli import train as train_cli
from scalingkit.cli import tables
from scalingkit.errors import UserError
from scalingkit.run import runner, worker
from scalingkit.run.executors import ExecutorSettings
from scalingkit.run.slurm import parse_time
from scalingkit.store import adopt, claims
from scalingkit.sweep import plan
from scalingkit.sweep import spec as sweep


def _store(tmp_path, text):
    path = tmp_path / "store" / "cube.zarr"
    sw = sweep.from_table(tomllib.loads(text))
    plan.prepare(path, sw)
    return path, sw


def _dead(path, owner):
    """What the store sees of a coordinator killed on this host: its pid runs no more."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    record = json.loads((claims.folder(path) / "owners" / f"{owner.id}.json").read_text())
    record["pid"] = proc.pid
    (claims.folder(path) / "owners" / f"{owner.id}.json").write_text(json.dumps(record))


def _quiet(*_):
    pass


def test_a_run_finished_under_a_dead_coordinator_is_adopted_and_a_half_written_one_is_trained_again(tmp_path):
    path, sw = _store(tmp_path, tiny_sweep_text(widths=(16,), tokens=(3200, 6400)))
    whole, half = sw.cells()
    other = claims.register(path, claims.this_process())  # a coordinator (in this process, as far as claims go)
    tickets = claims.claim(path, other, [whole, half], lambda cells: [True] * len(cells))
    for cell in (whole, half):  # its workers write both runs, checksums last
        outcome = worker.run_cell(str(path), cell, sw.run_config(cell), sw.families["er64"], 1, tickets)
        assert outcome.status == "done"
    index = store.RunWriter(path).index(half)
    zarr.open_group(str(path), mode="r+")["final_eval_loss"][index] = 1.0  # a value unlike what was checksummed
    _dead(path, other)  # killed before it recorded either
    assert adopt.finished(path, [whole, half]) == {whole: "done"}
    summary = tables.status_summary(path)
    assert summary["adopted"] == {"runs": 1, "by_status": {"done": 1}}
    assert summary["by_status"]["done"] == 1 and summary["by_status"]["missing"] == 1
    assert "adopted 1 run that finished while no coordinator watched" in tables.format_status(summary)
    assert [e["event"] for e in claims.log(path)][-3:] == ["expire", "expire", "adopt"]
    report = runner.fill_missing(path, workers=0, progress=False, echo=_quiet)  # only the half-written one trains
    assert report.planned == 1 and report.counts["done"] == 1 and report.adopted == 0
    assert (store.open_cube(path)["status"].values == "done").all()  # and it now verifies (status --verify clean)
    assert sum(e["event"] == "start" for e in claims.log(path)) == 3


def test_a_later_attempt_of_a_task_fences_off_the_earlier_one(tmp_path):
    path, sw = _store(tmp_path, tiny_sweep_text(widths=(16,), tokens=(3200,)))
    cell = sw.cells()[0]
    me = claims.register(path, claims.this_process())
    tickets = claims.claim(path, me, [cell], lambda cells: [True] * len(cells))
    first = claims.enter(path, tickets)
    second = claims.enter(path, tickets)  # the task started again (a dask worker died, a job was requeued)
    with pytest.raises(claims.ClaimLost):
        with claims.guard(path, first)(cell):
            pass
    with claims.guard(path, second)(cell):
        pass
    assert claims.holds(path, cell, tickets[cell])  # the coordinator still records it
    assert [e.get("attempts") for e in claims.log(path) if e["event"] == "start"] == [1, 2]


def test_redo_trains_from_the_start_not_from_an_old_checkpoint(tmp_path):
    from scalingkit.families import build_family
    from scalingkit.train.checkpoint import CheckpointSpec
    from scalingkit.train.engine import train

    text = tiny_sweep_text(widths=(16,), tokens=(16 * 20 * 40,), extra_training="checkpoint_minutes = 0.0")
    path, sw = _store(tmp_path, text)
    cell = sw.cells()[0]
    assert runner.fill_missing(path, sw, workers=0, progress=False, echo=_quiet).counts["done"] == 1
    assert adopt.checkpoint_path(path, cell).parent.is_dir() is False or not adopt.checkpoint_path(path, cell).exists()

    class Stop(Exception):
        pass

    def stop(step):
        raise Stop

    with pytest.raises(Stop):  # a checkpoint of this very run at step 20, as a killed attempt would leave it
        train(sw.run_config(cell), build_family("er64", sw.families["er64"]),
              checkpoint=CheckpointSpec(adopt.checkpoint_path(path, cell), 0, after_save=lambda s: s == 20 and stop(s)))
    assert adopt.checkpoint_path(path, cell).exists()
    before = store.open_cube(path)["eval_loss"].values.copy()
    report = runner.fill_missing(path, workers=0, progress=False, echo=_quiet, fill=False, redo=[str(cell)],
                                 retry_failed=False)
    assert report.counts["done"] == 1 and report.resumed == 0  # trained from step 0: the old checkpoint was removed
    assert not adopt.checkpoint_path(path, cell).exists()
    assert np.array_equal(store.open_cube(path)["eval_loss"].values, before, equal_nan=True)


def test_a_job_counts_as_alive_where_the_scheduler_cannot_be_asked(monkeypatch):
    job = claims.Owner(id="j", host="elsewhere", kind="job", scheduler="slurm", job="4711_3", renewed_at=0.0)
    monkeypatch.setenv("PATH", "/nonexistent")  # no squeue here
    claims._JOB_STATES.clear()
    assert claims.job_states(["4711_3"]) is None
    assert claims.alive(job.__dict__)  # never trained twice: at worst waited for
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4711")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert claims._job_env() == "4711_3"


def test_executor_settings_flags_over_the_sweep_table_and_each_for_its_executor(tmp_path):
    table = {"kind": "slurm", "partition": "gpu", "time": "4:00:00", "array_parallelism": 64,
             "slurm_options": {"account": "abc"}}
    s = ExecutorSettings.resolve(table, partition="debug", options={"qos": "high"}, workers=None)
    assert (s.kind, s.partition, s.time, s.array_parallelism) == ("slurm", "debug", "4:00:00", 64)
    assert s.options == {"account": "abc", "qos": "high"}
    assert runner.executor_settings({"kind": "local"}, 1, [sweep.from_table({**tomllib.loads(tiny_sweep_text()),
                                                                             "executor": table})]).kind == "local"
    with pytest.raises(UserError, match="--partition applies to --executor slurm"):
        ExecutorSettings.resolve(None, kind="dask", partition="gpu")
    with pytest.raises(UserError, match="--scheduler applies to --executor dask"):
        ExecutorSettings.resolve(None, kind="slurm", scheduler="tcp://x:1")
    assert [parse_time(t) for t in ("90", "4:00:00", "1-00:00:00", "2-12", "30:30")] == [90, 240, 1440, 3600, 31]
    with pytest.raises(UserError, match="not a SLURM time"):
        parse_time("4h")
    with pytest.raises(UserError, match="executor.partiton"):
        sweep.from_table({**tomllib.loads(tiny_sweep_text()), "executor": {"partiton": "gpu"}})
    with pytest.raises(UserError, match="executor.kind"):
        sweep.from_table({**tomllib.loads(tiny_sweep_text()), "executor": {"kind": "k8s"}})
    sweep_file = tmp_path / "s.toml"
    sweep_file.write_text(tiny_sweep_text())
    err = one_line_error(run_cli("train", sweep_file, "--fill-missing", "--store", tmp_path / "c.zarr", "--detach"))
    assert "--detach needs --executor slurm" in err
    assert not (tmp_path / "c.zarr").exists()  # refused before anything was made
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        train_cli._key_values(["=x"], "--slurm-option")
    assert train_cli._key_values(["account=abc", "exclusive"], "--slurm-option") == {"account": "abc",
                                                                                     "exclusive": True}
