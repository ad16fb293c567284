"""The SLURM executor, through submitit: a round's tasks (one cell, or one batch of learning-rate/seed variants, each)
go out at once as one job array, one task per array element.

Claims (store/claims.py): each array element is an owner of kind "job" that holds its task's cells itself, so a job
outlives the coordinator that submitted it. The coordinator registers one job owner per task and claims the task's
cells for it, under the store's lock, before sbatch; then records each owner's job id (`4711_3`). A second `train`
or `status` sees those cells held while SLURM lists the job as queued or running, so nothing is submitted twice.
Once a job has ended, its cells are recorded by the coordinator that waits for it, or, if none does (`--detach`, a
coordinator killed, a login node rebooted), adopted by the next `train` or `status`: a run whose values verify
against its checksum is recorded as finished; a failure the job reported is recorded failed (store/adopt.py).

In the job (SlurmTask, a submitit Checkpointable): training runs in a thread so that the main thread stays free for
SLURM's signals. The task checkpoints every `checkpoint_minutes` (store/checkpoints/), and on a signal saves after
the step in progress:
- SIGUSR2, which SLURM sends `SIGNAL_SECONDS` before the time limit (`--signal=B:USR2@90`, to the job's Python
  itself: the batch script execs it) and a preempting scheduler may send: submitit's handler calls checkpoint(),
  which saves, and submitit requeues the job (`scontrol requeue`) and exits;
- SIGTERM (scancel, `scontrol requeue`, preemption by requeue, a node going down): a save is requested; SLURM
  kills the job KillWait seconds later and, unless it was cancelled, runs it again.
A job that runs again resumes from the checkpoint (train/checkpoint.py: the uninterrupted curve, bit for bit on the
CPU). A cancelled job's runs are left missing with their checkpoints: the next `train --fill-missing` resubmits and
resumes them. A job that ends without a result (out of memory, a node failure, the time limit with no requeue left)
has its runs recorded failed, naming SLURM's state and the job's log; stdout and stderr of every job are kept in
logs/ beside the store.
"""
from __future__ import annotations

import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from scalingkit.errors import UserError

SIGNAL_SECONDS = 90  # SIGUSR2 this long before the time limit: the save and the requeue fit in it
SAVE_SECONDS = 60.0  # how long a job's SIGUSR2 handler waits for the requested save
MAX_REQUEUES = 10  # requeues after the time limit before a run is given up (preemptions do not count)
POLL_SECONDS = (0.5, 5.0)  # looking for finished jobs: first and longest pause
RESULT_GRACE_SECONDS = 10.0  # a job gone from the queue may show its result file a little later (shared file systems)


def parse_time(text) -> int:
    """SLURM's time formats (minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S) as whole minutes, rounded up."""
    value = str(text).strip()
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", value)
    if not match:
        raise UserError(f"--time {value!r} is not a SLURM time (minutes, H:MM:SS or D-HH:MM:SS)")
    days, a, b, c = (int(x) if x is not None else None for x in match.groups())
    if days is not None:  # D-H, D-H:M, D-H:M:S
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # H:M:S
        seconds = a * 3600 + b * 60 + c
    elif b is not None:  # M:S
        seconds = a * 60 + b
    else:  # minutes
        seconds = a * 60
    if seconds <= 0:
        raise UserError(f"--time {value!r} must be positive")
    return math.ceil(seconds / 60)


def format_minutes(minutes: int) -> str:
    d, rest = divmod(minutes, 1440)
    return (f"{d}-" if d else "") + f"{rest // 60}:{rest % 60:02d}:00"


class SlurmExecutor:
    """Submits tasks as one job array (submitit's SlurmExecutor), with the settings of ExecutorSettings."""

    jobs = True

    def __init__(self, settings, store_path):
        if shutil.which("sbatch") is None:
            raise UserError("--executor slurm needs SLURM's sbatch and squeue on this host (a login node)")
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise UserError("--executor slurm needs submitit (pip install submitit)") from None
        from scalingkit.store import adopt

        for name in ("SCALINGKIT_SLURM_ARRAY_SIZE", "SCALINGKIT_SLURM_MAX_QUEUED"):
            _env_int(name)  # a bad value is refused before anything is claimed or submitted
        self.settings = settings
        self.minutes = parse_time(settings.time) if settings.time is not None else None
        self.folder = adopt.logs_folder(store_path)
        self.options = {}
        for key, value in settings.options.items():
            key = str(key).strip().lstrip("-").replace("_", "-")
            if not key or key in ("array", "signal", "output", "error", "open-mode"):
                raise UserError(f"--slurm-option {key or value!r}: scalingkit sets it itself (or it is empty)")
            self.options[key] = value

    def describe(self) -> str:
        s = self.settings
        parts = [f"partition {s.partition}" if s.partition else "the default partition",
                 f"time limit {format_minutes(self.time_limit())}"]
        parts += [f"{v} {k.replace('_', ' ')}" for k, v in (("gpus_per_task", s.gpus_per_task),
                                                              ("cpus_per_task", s.cpus_per_task)) if v]
        if s.mem:
            parts.append(f"memory {s.mem}")
        return ", ".join(parts)

    def time_limit(self) -> int:
        """Minutes: --time, else the partition's default time (or its limit), else 60."""
        if self.minutes is None:
            self.minutes = _partition_minutes(self.settings.partition) or 60
        return self.minutes

    def submit(self, tasks: list) -> list:
        """One job array for `tasks` (SlurmTask); returns submitit's jobs, in order."""
        import submitit

        s = self.settings
        self.folder.mkdir(parents=True, exist_ok=True)
        ex = submitit.SlurmExecutor(folder=self.folder, max_num_timeout=MAX_REQUEUES,
                                    python=f"exec {shlex.quote(sys.executable)}")
        params = {"job_name": "scalingkit", "time": self.time_limit(), "use_srun": False,
                  "signal_delay_s": SIGNAL_SECONDS,
                  "additional_parameters": {"signal": f"B:USR2@{SIGNAL_SECONDS}", **self.options}}
        for key in ("partition", "cpus_per_task", "gpus_per_task", "mem", "array_parallelism"):
            if getattr(s, key) is not None:
                params[key] = getattr(s, key)
        size = max_array_size()
        jobs = []
        try:
            ex.update_parameters(**params)
            for start in range(0, len(tasks), size):  # SLURM's MaxArraySize bounds an array: several if needed
                with ex.batch():
                    jobs += [ex.submit(task) for task in tasks[start:start + size]]
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or exc.output or b"")
            detail = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
            raise UserError(f"sbatch refused the job array: {_first_line(detail) or exc}") from None
        except (OSError, ValueError, submitit.core.utils.FailedSubmissionError) as exc:
            raise UserError(f"could not submit the job array: {_first_line(str(exc))}") from None
        return jobs


_MAX_ARRAY: list = []


def max_array_size() -> int:
    """How many elements one job array may have here: SLURM's MaxArraySize (indices 0 to MaxArraySize - 1; its
    default, 1001, allows 1,001), or SCALINGKIT_SLURM_ARRAY_SIZE where a site wants smaller arrays."""
    if not _MAX_ARRAY:
        size = _env_int("SCALINGKIT_SLURM_ARRAY_SIZE")
        if size is None:
            size = 1000
            try:
                out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                                     timeout=30).stdout
                match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE)
                if match:
                    size = max(1, int(match.group(1)))
            except (OSError, subprocess.SubprocessError):
                pass
        _MAX_ARRAY.append(size)
    return _MAX_ARRAY[0]


def max_queued() -> int:
    """How many of one round's jobs may wait in the queue at once: MAX_QUEUED, or SCALINGKIT_SLURM_MAX_QUEUED (a
    site's per-user job limit, MaxSubmitJobs, may be lower)."""
    value = _env_int("SCALINGKIT_SLURM_MAX_QUEUED")
    return MAX_QUEUED if value is None else value


def _env_int(name: str) -> int | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"{name}={text!r}: must be a whole number of at least 1")
    return value


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _partition_minutes(partition: str | None) -> int | None:
    """The partition's default time, else its time limit (sinfo), in minutes; None if unknown or unlimited."""
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%L|%l|%P"] + (["-p", partition] if partition else []),
                             capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        default, limit, name = (line.split("|") + ["", "", ""])[:3]
        if partition is None and not name.endswith("*"):
            continue  # the default partition is marked with *
        for value in (default, limit):
            try:
                return parse_time(value)
            except UserError:
                continue
    return None


# ------------------------------------------------------------------------------------------------ in the job

def _base():
    """submitit.helpers.Checkpointable (submitit is optional until SLURM is used)."""
    try:
        from submitit.helpers import Checkpointable

        return Checkpointable
    except ImportError:
        return object


class SlurmTask(_base()):
    """One array element's work: worker.run_batch of its task, checkpointing as the module's docstring says.
    Pickled by submitit with only its arguments; a requeued job runs the same arguments again."""

    def __init__(self, store_path, cells, configs, family_spec, threads, tickets, stacked):
        self.args = (store_path, tuple(cells), tuple(configs), family_spec, threads, dict(tickets), stacked)

    def __getstate__(self):
        return {"args": self.args}

    def __setstate__(self, state):
        self.args = state["args"]

    def __call__(self):
        from scalingkit.run.worker import run_batch

        self._spec, self._saved = None, threading.Event()
        previous = signal.getsignal(signal.SIGTERM)

        def on_term(signum, frame):  # scancel, requeue, preemption: save now, SLURM ends the job shortly
            self._request()
            if callable(previous):
                previous(signum, frame)

        signal.signal(signal.SIGTERM, on_term)
        box: dict = {}

        def work():
            try:
                box["outcomes"] = run_batch(*self.args, on_checkpoint=self._keep)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                box["error"] = exc

        thread = threading.Thread(target=work, name="scalingkit-train", daemon=True)
        thread.start()
        try:
            while thread.is_alive():  # the main thread waits here, free to run signal handlers
                thread.join(0.5)
        except SystemExit as exc:  # submitit requeued this job from its SIGUSR2 handler: leave now, mid-step
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exc.code if isinstance(exc.code, int) else 1)
        if "error" in box:
            raise box["error"]
        return self._report(box["outcomes"])

    def _keep(self, spec) -> None:
        spec.after_save = self._after_save
        self._spec = spec

    def _after_save(self, step: int) -> None:
        self._step = step
        self._saved.set()

    def _request(self) -> bool:
        spec = getattr(self, "_spec", None)
        if spec is None:
            return False
        self._saved.clear()
        spec.request()
        return True

    def checkpoint(self, *args, **kwargs):
        """submitit's SIGUSR2 handler (the time limit ahead, or preemption): save after the step in progress, then
        let submitit requeue this same task (it resumes from the save)."""
        if self._request():
            saved = self._saved.wait(SAVE_SECONDS)
            print(f"scalingkit: checkpoint saved at step {self._step} before the requeue" if saved else
                  f"scalingkit: no checkpoint saved within {SAVE_SECONDS:.0f} s; the requeued job resumes from the "
                  "last one", file=sys.stderr, flush=True)
        return super().checkpoint(*args, **kwargs)

    def _report(self, outcomes: list) -> list:
        """Failures name the job's log; and they are left in the job's outcomes file, for adoption when no
        coordinator collects this result."""
        from scalingkit.store import adopt, claims

        job = claims._job_env()
        log = _job_log(self.args[0], job)
        for outcome in outcomes:
            if outcome.status == "failed":
                outcome.message = f"{outcome.message} (SLURM job {job}; log: {log})"
        if job:
            try:
                adopt.write_outcomes(outcomes_path(self.args[0], job), outcomes, self.args[5])
            except OSError:
                pass  # the coordinator's copy (this result) still has them
        return outcomes


def outcomes_path(store_path, job: str) -> Path:
    from scalingkit.store import adopt

    return adopt.logs_folder(store_path) / f"{job}_outcomes.json"


def _job_log(store_path, job) -> str:
    from scalingkit.store import adopt

    return str(adopt.logs_folder(store_path) / f"{job}_0_log.err") if job else "?"


# ------------------------------------------------------------------------------------------------ the coordinator

def run_round(store_path, tasks, ex: SlurmExecutor, threads: int, claimable, again: dict, tried: set, report, recorder,
              echo, detach: bool, begin_redo) -> None:
    """Submit the round's tasks as job arrays of at most MaxArraySize elements, keeping at most MAX_QUEUED of this
    round's jobs in the queue at once (more are submitted as these end), each task's cells claimed for a job owner of
    its own just before its array goes out; record each job's outcomes as it ends. detach: submit up to MAX_QUEUED
    and return (a later call submits the rest). begin_redo(store, cells): the runner's preparation of runs to train
    again, under the lock as they are claimed."""
    todo, pending, arrays = list(tasks), [], []
    chunk, cap = max_array_size(), max_queued()
    try:
        while todo or pending:
            while todo and len(pending) + min(chunk, len(todo)) <= max(cap, chunk):
                batch, todo = todo[:chunk], todo[chunk:]
                pending += _submit(store_path, batch, ex, threads, claimable, again, tried, report, echo, arrays,
                                   begin_redo)
            if detach:
                report.submitted += sum(len(item[2]) for _, item in pending)
                if todo:
                    left = sum(len(t.cells) for t in todo)
                    echo(f"{left} run{'s' if left != 1 else ''} not submitted yet (at most {cap:,} queued "
                         "at once): the next `train --detach` or `train --fill-missing` submits them")
                return
            pending = _poll(store_path, pending, report, recorder)
    except KeyboardInterrupt:
        if arrays:
            echo(f"interrupted: SLURM jobs {', '.join(arrays)} go on running on the cluster; `scalingkit status` "
                 f"shows them, `scalingkit train --fill-missing` records them, `scancel {' '.join(arrays)}` stops "
                 "them")
        raise


MAX_QUEUED = 2000  # one round's jobs in SLURM's queue at once (MaxJobCount, 10,000 by default, is the whole cluster's)


def _submit(store_path, tasks, ex, threads, claimable, again, tried, report, echo, arrays: list, begin_redo) -> list:
    """Claim `tasks`' cells for one job owner each, submit them as one array, record the job ids. Returns the
    submitted [(job, (owner, task, cells, configs, tickets))]."""
    from scalingkit import store
    from scalingkit.store import claims

    items = []  # (owner, task, cells, configs, tickets)
    with store.lock(store_path):
        owners = claims.register_many(store_path, [claims.job_owner("slurm") for _ in tasks])
        granted = claims.claim_for(store_path, list(zip(owners, [t.cells for t in tasks])), claimable)
        unused = []
        for owner, task, got in zip(owners, tasks, granted):
            if not got:
                unused.append(owner)
                continue
            keep = [i for i, cell in enumerate(task.cells) if cell in got]
            cells = tuple(task.cells[i] for i in keep)
            items.append((owner, task, cells, tuple(task.configs[i] for i in keep), {c: got[c] for c in cells}))
        if unused:
            claims.retire(store_path, unused)
        begin_redo(store_path, [cell for *_, tickets in items for cell in tickets if cell in again])
    if not items:
        return []
    owners = [item[0] for item in items]
    try:
        jobs = ex.submit([SlurmTask(store_path, cells, configs, task.family_spec, threads, tickets,
                                    task.stacked or len(cells) > 1)
                          for _, task, cells, configs, tickets in items])
    except BaseException:
        claims.retire(store_path, owners)  # not submitted: its cells are free again (jobs submitted before go on)
        raise
    claims.set_jobs(store_path, [(owner, job.job_id, str(job.paths.stderr), str(outcomes_path(store_path, job.job_id)))
                                 for owner, job in zip(owners, jobs)])
    n = sum(len(item[2]) for item in items)
    array = jobs[0].job_id.split("_")[0]
    arrays.append(array)
    report.planned += n
    report.jobs.append(array)
    for item in items:
        tried.update(item[2])
    at_once = min(len(jobs), ex.settings.array_parallelism or len(jobs))
    echo(f"submitted {n} run{'s' if n != 1 else ''} as SLURM {'job array' if len(jobs) > 1 else 'job'} {array} "
         f"({len(jobs)} job{'s' if len(jobs) != 1 else ''}, up to {at_once} at a time; {ex.describe()}; "
         f"logs in {ex.folder})")
    return list(zip(jobs, items))


def _poll(store_path, pending: list, report, recorder) -> list:
    """Wait until at least one job of `pending` has ended (or a few seconds passed), record the outcomes of those that
    ended: from the result file, or, for a job that ended without one, from its runs as stored (adopt.finished) and
    SLURM's final state (sacct). Returns the jobs still pending."""
    from scalingkit.store import claims

    pause = POLL_SECONDS[0]
    while True:
        states = claims.job_states([job.job_id for job, _ in pending]) or {}
        still = []
        for job, item in pending:
            owner, _, cells, _, tickets = item
            if job.paths.result_pickle.exists():
                outcomes = _result(job, cells)
            elif states.get(job.job_id, "PENDING") in claims.LIVE_JOB_STATES:
                still.append((job, item))
                continue
            elif time.monotonic() - _ENDED.setdefault(job.job_id, time.monotonic()) < RESULT_GRACE_SECONDS:
                still.append((job, item))
                continue
            else:
                outcomes = _without_result(store_path, job, cells)
            recorder.record(outcomes, tickets)
            claims.retire(store_path, owner)
            for done in (job.paths.submitted_pickle, job.paths.result_pickle):  # the logs stay, not submitit's pickles
                done.unlink(missing_ok=True)
        if len(still) < len(pending) or not still:
            return still
        time.sleep(pause)
        pause = min(2 * pause, POLL_SECONDS[1])


_ENDED: dict = {}  # job id -> when it was first seen out of the queue without a result file


def _result(job, cells) -> list:
    """The job's outcomes from its result file; a job whose function raised: every cell failed, with the error."""
    from scalingkit.run.worker import Outcome

    try:
        outcome, value = _load_result(job)
    except Exception as exc:  # noqa: BLE001 - an unreadable result file
        return [Outcome(c, "failed", f"the result of SLURM job {job.job_id} could not be read ({exc}); "
                                     f"log: {job.paths.stderr}", 0, 0.0) for c in cells]
    if outcome == "success" and isinstance(value, list):
        return value
    detail = _first_line(str(value)) or "an error"
    return [Outcome(c, "failed", f"SLURM job {job.job_id} raised {detail}; log: {job.paths.stderr}", 0, 0.0)
            for c in cells]


def _load_result(job):
    from submitit.core import utils

    return utils.pickle_load(job.paths.result_pickle)


def _without_result(store_path, job, cells) -> list:
    """A job that left the queue without a result: its runs that verify as written are finished (it was killed
    after writing them); a cancelled job's other runs are left missing (their checkpoints kept); any other end is a
    failure naming SLURM's state and the log."""
    from scalingkit.run.worker import Outcome
    from scalingkit.store import adopt

    done = adopt.finished(store_path, cells)
    state, code = sacct_states([job.job_id]).get(job.job_id, ("unknown (sacct did not say)", ""))
    out = []
    for cell in cells:
        if cell in done:
            out.append(Outcome(cell, done[cell], "finished; its job ended without a result", 0, 0.0, already=True))
        elif state.startswith("CANCELLED"):
            out.append(Outcome(cell, "cancelled", f"SLURM job {job.job_id} was cancelled", 0, 0.0))
        else:
            out.append(Outcome(cell, "failed", f"SLURM job {job.job_id} ended {state}"
                                               f"{f' (exit code {code})' if code else ''} without a result; "
                                               f"log: {job.paths.stderr}", 0, 0.0))
    return out


def sacct_states(jobs: list[str]) -> dict:
    """{job id: (state, exit code)} from SLURM's accounting (sacct); {} where it cannot be asked."""
    if not jobs:
        return {}
    try:
        proc = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State,ExitCode", "-j", ",".join(jobs)],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return {}
    out = {}
    for line in proc.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 3:
            out[parts[0]] = (parts[1].split()[0] if parts[1] else "", parts[2])
    return out


def describe_jobs(live: list[dict]) -> dict:
    """From claims.live: per state (queued, running), the runs and jobs on the cluster; for status."""
    out = {"queued": 0, "running": 0, "jobs": {}}
    for claim in live:
        owner = claim["owner"]
        if owner is None or owner.kind != "job":
            continue
        state = claim.get("state") or ("SUBMITTING" if not owner.job else "UNKNOWN")
        kind = "running" if state in ("RUNNING", "COMPLETING", "CONFIGURING") else "queued"
        out[kind] += 1
        out["jobs"].setdefault(owner.job or "(being submitted)", {"state": state, "runs": 0, "log": owner.log})
        out["jobs"][owner.job or "(being submitted)"]["runs"] += 1
    return out

