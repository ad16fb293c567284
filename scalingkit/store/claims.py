"""Which coordinator or cluster job trains which cell: per-cell claims, kept beside the store and changed only under
its lock.

Every cell trains exactly once, whatever is started: a coordinator registers as an owner, claims a task's cells just
before it starts them (only cells still to train that no live owner holds) and releases each claim once it has
recorded the cell's status. So two coordinators on one store share the work. A worker writes a cell only while its
claim is current (guard: checked under the lock before every write), and a coordinator records status only for
cells it holds.

An owner, and with it each of its claims, is alive while:
- a process on this host (same host name and boot): its pid runs, with the start time recorded when it registered
  (a reused pid has another), and is not a zombie. This is exact: a killed coordinator's claims are free at once;
- a process on another host sharing the file system: while its lease is fresh. The owner rewrites `renewed_at`
  every lease/3 seconds (Heartbeat); an owner not heard of for `lease_seconds` (default 60,
  SCALINGKIT_LEASE_SECONDS) is gone and its claims are free. Leases compare wall clocks across hosts: keep them
  synchronised (NTP);
- a submitted cluster job (kind "job"; one owner per SLURM job-array element), which outlives the coordinator that
  submitted it: while the scheduler lists it as queued or running (squeue, asked once for all the jobs a check
  needs and remembered for JOB_STATE_SECONDS). Until its job id is recorded (the moment between claiming its cells
  and sbatch answering) it lives as the submitting process does. Where the scheduler cannot be asked (no squeue on
  this host, the controller down) a job counts as alive: a cell is never trained twice, at worst waited for.
A claim that was taken over can never be written by its old holder: the worker's check finds another token. Each
start of a task (a requeued SLURM job, a dask task run again after its worker died) enters its claims with a fresh
attempt id (enter), so an earlier attempt that is somehow still running cannot write either.

When a claim's owner is gone, the claim is dropped the next time anyone claims, records or asks for `status`
(expire), and its cell adopted where its worker had finished it (adopt.py): a run whose curve, values and checksum
are all written is recorded as its checksum says, not trained again; a failure a job reported in its outcomes file
is recorded as failed.

Files beside the store STORE (zarr never sees them): STORE.claims/owners/ID.json (one per owner), STORE.claims/
cells.json (cell -> claim) and STORE.claims/log.jsonl (every claim taken, taken over, expired, released or adopted,
and every job submitted, with its owner: who trained what).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from scalingkit.store import atomic
from scalingkit.store.cube import Cell, lock

LEASE_SECONDS = 60.0
HOST = socket.gethostname()
JOB_STATE_SECONDS = 2.0  # how long a scheduler's answer about a job is used before asking again
# squeue states of a job that is still queued or running (anything else, or absent from squeue: it has ended)
LIVE_JOB_STATES = frozenset({"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_FED",
                             "REQUEUE_HOLD", "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "SPECIAL_EXIT"})


class ClaimLost(Exception):
    """The cell is no longer claimed by this worker's coordinator (it is gone, or its claim was taken over after its
    lease ran out): the worker must not write it."""


@dataclass(frozen=True)
class Ticket:
    """What a worker needs to check its claim: the owner's id and the claim's own token."""

    owner: str
    token: str
    attempt: str | None = None  # a worker's attempt (enter): an earlier attempt of the same task cannot write


@dataclass
class Owner:
    """Who holds claims. kind "process": a coordinator (host, pid, start time against pid reuse). kind "job": a
    submitted cluster job (scheduler "slurm", its id `job`, e.g. "4711_3" for an array element), alive while the
    scheduler lists it; host, pid and start time are the submitting coordinator's, which it lives as until `job` is
    set. log: the job's stderr file; outcomes: the file where the job leaves what no coordinator may be there to
    collect (its failures)."""

    id: str
    host: str
    kind: str = "process"
    pid: int | None = None
    boot: str | None = None  # the host's boot id: a pid from before a reboot is another process
    started: int | None = None  # the process's start time (clock ticks since boot, /proc/PID/stat)
    job: str | None = None
    lease_seconds: float = LEASE_SECONDS
    renewed_at: float = 0.0
    scheduler: str | None = None
    log: str | None = None
    outcomes: str | None = None

    def __str__(self) -> str:
        if self.kind == "job":
            what = "SLURM job" if self.scheduler == "slurm" else "job"
            return f"{what} {self.job}" if self.job else f"a {what} being submitted by pid {self.pid} on {self.host}"
        return f"pid {self.pid} on {self.host}"

    @classmethod
    def from_record(cls, record: dict) -> "Owner":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})


def folder(store) -> Path:
    return Path(str(store) + ".claims")


def this_process(lease_seconds: float | None = None) -> Owner:
    if lease_seconds is None:
        lease_seconds = float(os.environ.get("SCALINGKIT_LEASE_SECONDS", LEASE_SECONDS))
    pid = os.getpid()
    stat = _proc_stat(pid)
    return Owner(id=uuid.uuid4().hex, host=HOST, pid=pid, boot=_boot_id(), started=stat[1] if stat else None,
                 lease_seconds=lease_seconds, renewed_at=time.time())


def job_owner(scheduler: str = "slurm", lease_seconds: float | None = None) -> Owner:
    """A cluster job's owner, before its job id is known: alive as this (submitting) process until set_jobs."""
    owner = this_process(lease_seconds)
    owner.kind, owner.scheduler = "job", scheduler
    return owner


def register(store, owner: Owner) -> Owner:
    (folder(store) / "owners").mkdir(parents=True, exist_ok=True)
    renew(store, owner)
    return owner


def register_many(store, owners: list) -> list:
    """register() for many owners (a job array's), each file written whole, flushed to disk once at the end."""
    (folder(store) / "owners").mkdir(parents=True, exist_ok=True)
    now = time.time()
    for owner in owners:  # new files nobody reads yet: renamed into place whole, the folder flushed once
        owner.renewed_at = now
        path = _owner_file(store, owner.id)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(asdict(owner), indent=2))
        os.replace(tmp, path)
    atomic.sync_dir(folder(store) / "owners")
    return owners


def set_jobs(store, jobs: list) -> None:
    """Record the job ids of submitted job owners: [(Owner, job id, log file, outcomes file)]. Under the lock; each
    submission is logged ("submit", one line per claimed cell, with the job id)."""
    with lock(store):
        table = _load(store)
        events = []
        for owner, job, log, outcomes in jobs:
            owner.job, owner.log, owner.outcomes = str(job), log, outcomes
            renew(store, owner)
            for c in table.values():
                if c["owner"] == owner.id:
                    c["job"] = owner.job
                    events.append(("submit", c, owner.id))
        if events:
            _save(store, table)
            _log(store, events)


def renew(store, owner: Owner) -> None:
    owner.renewed_at = time.time()
    atomic.write_json(_owner_file(store, owner.id), asdict(owner))


def retire(store, owner: Owner | list) -> None:
    """Release every claim of `owner` (or of each owner of a list) and forget it (a coordinator ending, normally or
    on Ctrl-C; a job whose cells are recorded)."""
    owners = owner if isinstance(owner, list) else [owner]
    ids = {o.id for o in owners}
    with lock(store):
        table = _load(store)
        mine = {k: c for k, c in table.items() if c["owner"] in ids}
        if mine:
            _save(store, {k: c for k, c in table.items() if k not in mine})
            _log(store, [("release", c, c["owner"]) for c in mine.values()])
        for owner_id in ids:
            _owner_file(store, owner_id).unlink(missing_ok=True)


class Heartbeat:
    """Renews an owner's lease every lease/3 seconds in a daemon thread, until stopped."""

    def __init__(self, store, owner: Owner):
        self.store, self.owner = store, owner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="scalingkit-lease", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.owner.lease_seconds / 3):
            try:
                renew(self.store, self.owner)
            except OSError:
                pass  # a full disk or a network hiccup: the next beat tries again, well within the lease

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def claim(store, owner: Owner, cells: Iterable[Cell], claimable: Callable[[list[Cell]], list[bool]]) -> dict:
    """Claim, under the store's lock, every cell of `cells` that no live owner holds and that claimable(cells) (called
    under the lock: the status is current) allows. Claims of gone owners are dropped on the way (and their finished
    cells adopted: expire). Returns {cell: Ticket} for the cells claimed."""
    return claim_for(store, [(owner, cells)], claimable)[0]


def claim_for(store, wanted: list, claimable: Callable[[list[Cell]], list[bool]]) -> list[dict]:
    """claim() for several owners at once, [(Owner, cells)], in one pass under the lock (a job array's owners: one
    expiry, one look at the status, one write of the claims, however many jobs). Returns {cell: Ticket} per owner."""
    with lock(store):
        table, _ = _expire(store)
        free = []
        for owner, cells in wanted:
            free += [(owner, cell) for cell in cells if cell_key(cell) not in table]
        allowed = claimable([cell for _, cell in free]) if free else []
        got: dict = {}
        events = []
        for (owner, cell), ok in zip(free, allowed):
            if not ok or cell_key(cell) in table:  # a cell listed twice goes to the first owner
                continue
            entry = {"cell": list(cell.labels()), "owner": owner.id, "host": owner.host, "pid": owner.pid,
                     "job": owner.job, "token": uuid.uuid4().hex, "since": _now()}
            table[cell_key(cell)] = entry
            got.setdefault(owner.id, {})[cell] = Ticket(owner.id, entry["token"])
            events.append(("claim", entry, owner.id))
        if events:
            _save(store, table)
            _log(store, events)
    return [got.get(owner.id, {}) for owner, _ in wanted]


def expire(store) -> dict:
    """Drop the claims of gone owners, adopting their cells that a worker finished (adopt.py): what `train` does
    before each round and `status` before it counts. Under the store's lock. Returns {Cell: status recorded}."""
    with lock(store):
        return _expire(store)[1]


def _expire(store) -> tuple[dict, dict]:
    """Under the lock: (the claims of live owners, {Cell: status} adopted from the gone ones)."""
    from scalingkit.store import adopt

    table = _load(store)
    owners = _Owners(store)
    owners.prefetch({c["owner"] for c in table.values()})
    gone = {k: c for k, c in table.items() if not owners.alive(c["owner"])}
    adopted: dict = {}
    if gone:
        # first record what the gone owners finished, then drop their claims: a kill in between leaves claims that
        # the next expiry finds again, with their cells recorded already (adoption skips them)
        adopted = adopt.adopt(store, [(c, owners.record(c["owner"])) for c in gone.values()])
        table = {k: c for k, c in table.items() if k not in gone}
        _save(store, table)
        events = [("expire", c, c["owner"]) for c in gone.values()]
        events += [("adopt", {**c, "status": adopted[Cell(*c["cell"])]}, c["owner"]) for c in gone.values()
                   if Cell(*c["cell"]) in adopted]
        _log(store, events)
    owners.forget_gone()
    return table, adopted


def enter(store, tickets: dict) -> dict:
    """A worker starting a task (first run, a requeued job, a dask task run again): give each claim still current a
    fresh attempt id, so that an earlier attempt of the same task can no longer write it. Returns {cell: Ticket with
    the attempt} for the claims still current (the others are lost: not to be trained)."""
    if not tickets:
        return {}
    with lock(store):
        table = _load(store)
        owners = _Owners(store)
        out, events = {}, []
        for cell, ticket in tickets.items():
            entry = table.get(cell_key(cell))
            if (entry is None or entry["owner"] != ticket.owner or entry["token"] != ticket.token
                    or not owners.alive(ticket.owner)):
                continue
            entry["attempt"] = uuid.uuid4().hex
            entry["attempts"] = int(entry.get("attempts", 0)) + 1
            out[cell] = Ticket(ticket.owner, ticket.token, entry["attempt"])
            events.append(("start", {**entry, "host": HOST, "pid": os.getpid(), "job": _job_env()}, ticket.owner))
        if out:
            _save(store, table)
            _log(store, events)
    return out


def holds(store, cell: Cell, ticket: Ticket, alive: bool = True) -> bool:
    """Whether the claim behind `ticket` is still current: the cell's claim carries its token (and attempt, for a
    worker's ticket) and, with alive, its owner lives. Call under the store's lock for the answer to stay true while
    you write. alive=False: a coordinator recording what its finished job reported (the job has ended; nobody took
    its claim over)."""
    entry = _load(store).get(cell_key(cell))
    if entry is None or entry["owner"] != ticket.owner or entry["token"] != ticket.token:
        return False
    if ticket.attempt is not None and entry.get("attempt") != ticket.attempt:
        return False
    return not alive or _Owners(store).alive(ticket.owner)


def guard(store, tickets: dict) -> Callable:
    """For RunWriter(guard=...): a context manager per write that holds the store's lock and raises ClaimLost unless
    the cell's claim is still current."""

    @contextmanager
    def guarded(cell: Cell):
        with lock(store):
            ticket = tickets.get(cell)
            if ticket is None or not holds(store, cell, ticket):
                raise ClaimLost(f"{cell} is no longer claimed by this worker's coordinator")
            yield

    return guarded


def release(store, tickets: dict) -> None:
    """Release the claims behind `tickets` (cell -> Ticket) that are still current. Under the store's lock."""
    with lock(store):
        table = _load(store)
        gone = [k for k, c in ((cell_key(cell), t) for cell, t in tickets.items())
                if k in table and table[k]["token"] == c.token]
        if gone:
            _log(store, [("release", table[k], table[k]["owner"]) for k in gone])
            _save(store, {k: c for k, c in table.items() if k not in gone})


def held_by_others(store, owner: Owner) -> dict:
    """{cell key: Owner} for the cells that live owners other than `owner` hold now."""
    table = _load(store)
    owners = _Owners(store)
    owners.prefetch({c["owner"] for c in table.values()})
    return {k: owners.get(c["owner"]) for k, c in table.items()
            if c["owner"] != owner.id and owners.alive(c["owner"])}


def live(store) -> list[dict]:
    """The claims that live owners hold now (what coordinators and cluster jobs are training), read without the lock
    (the files are replaced whole): each {"cell": labels, "owner": Owner or None, "since": when it was claimed,
    "state": the scheduler's state of a job's claim (PENDING, RUNNING, ...; None: not asked or not a job)}."""
    table = _load(store)
    owners = _Owners(store)
    owners.prefetch({c["owner"] for c in table.values()})
    out = []
    for c in table.values():
        if not owners.alive(c["owner"]):
            continue
        owner = owners.get(c["owner"])
        state = None
        if owner is not None and owner.kind == "job" and owner.scheduler == "slurm" and owner.job:
            state = (job_states([owner.job]) or {}).get(owner.job)
        out.append({"cell": c["cell"], "owner": owner, "since": c.get("since"), "state": state})
    return out


def cell_key(cell: Cell) -> str:
    family, param, n, d, lr, seed = cell.labels()
    return json.dumps([family, param, n, d, float(f"{lr:.12g}"), seed])


def log(store) -> list[dict]:
    """The claims log, oldest first (a line cut short by a kill is skipped)."""
    path = folder(store) / "log.jsonl"
    out = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


# ---------------------------------------------------------------- liveness

def alive(record: dict | None, now: float | None = None) -> bool:
    """Whether an owner (as recorded in its file) still lives: a process by its pid on this host and by its lease
    elsewhere, a cluster job by what the scheduler says (see the module's docstring)."""
    if record is None:
        return False
    fresh = (time.time() if now is None else now) - record.get("renewed_at", 0.0) <= record.get("lease_seconds",
                                                                                                 LEASE_SECONDS)
    if record.get("kind") == "job" and record.get("job"):
        job = str(record["job"])
        if job in _this_jobs():
            return True  # a job asking about itself (its own writes' guard)
        if record.get("scheduler") == "slurm":
            states = job_states([job])
            return True if states is None else states.get(job) in LIVE_JOB_STATES
        return fresh
    # a process; or a job not submitted yet, which lives as the process submitting it
    if record.get("kind") in ("process", "job") and record.get("host") == HOST and record.get("boot") == _boot_id():
        pid = record.get("pid")
        stat = _proc_stat(pid)
        if stat is not None:  # Linux: exact, whatever the lease says
            state, started = stat
            return state not in ("Z", "X") and (record.get("started") is None or started == record["started"])
        if _boot_id() is not None:
            return False  # /proc exists here and has no such process
        try:  # elsewhere: the pid exists; with no start time to tell a reused pid, the lease must be fresh too
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return fresh
    return fresh


# ---------------------------------------------------------------- the scheduler's word on jobs

_JOB_STATES: dict = {}  # SLURM job id -> (squeue state, None once it left the queue; time.monotonic() when asked)


def job_states(jobs) -> dict | None:
    """{job id: its squeue state (PENDING, RUNNING, ...), or None once it has left the queue} for SLURM job ids
    ("4711" or an array element "4711_3"), asking squeue once for all those not asked in the last
    JOB_STATE_SECONDS; None if squeue cannot be asked here."""
    jobs = [str(j) for j in jobs]
    now = time.monotonic()
    ask = sorted({j for j in jobs if j not in _JOB_STATES or now - _JOB_STATES[j][1] > JOB_STATE_SECONDS})
    if ask:
        found = _squeue(ask)
        if found is None:
            return None
        for j in ask:
            _JOB_STATES[j] = (found.get(j), now)
    return {j: _JOB_STATES[j][0] for j in jobs}


def _squeue(jobs: list[str]) -> dict | None:
    out: dict = {}
    for start in range(0, len(jobs), 1000):  # bounded command lines
        try:
            proc = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(jobs[start:start + 1000])],
                                  capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        if proc.returncode != 0:
            if "Invalid job id" in proc.stderr:
                continue  # every one of them has left the controller's memory: ended
            return None
        for line in proc.stdout.splitlines():
            job, _, state = line.strip().partition("|")
            if job:
                out[job] = state.split()[0] if state else ""
    return out


def _this_jobs() -> set:
    """The SLURM job ids this process runs in (a job's own id and, in an array, ARRAY_INDEX)."""
    env = os.environ
    ids = {env[k] for k in ("SLURM_JOB_ID",) if env.get(k)}
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        ids.add(f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}")
    return ids


def _job_env() -> str | None:
    """This process's SLURM job as claims name it: ARRAY_INDEX for an array element, else the job id."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or None


def _proc_stat(pid) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of a process, from /proc; None if it does not exist (or no
    /proc)."""
    try:
        text = Path(f"/proc/{int(pid)}/stat").read_text()
    except (OSError, ValueError, TypeError):
        return None
    fields = text.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces and parentheses
    return fields[0], int(fields[19])


_BOOT: list = []


def _boot_id() -> str | None:
    if not _BOOT:
        try:
            _BOOT.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        except OSError:
            _BOOT.append(None)
    return _BOOT[0]


class _Owners:
    """Owner records, read once per operation; the scheduler asked once for all the jobs among them (prefetch)."""

    def __init__(self, store):
        self.store, self.cache = store, {}

    def record(self, owner_id: str) -> dict | None:
        if owner_id not in self.cache:
            try:
                self.cache[owner_id] = json.loads(_owner_file(self.store, owner_id).read_text())
            except (OSError, ValueError):
                self.cache[owner_id] = None
        return self.cache[owner_id]

    def prefetch(self, owner_ids) -> None:
        """Read these owners' records and ask the scheduler about their jobs in one call."""
        records = [self.record(i) for i in owner_ids]
        jobs = [r["job"] for r in records if r and r.get("kind") == "job" and r.get("job")
                and r.get("scheduler") == "slurm" and str(r["job"]) not in _this_jobs()]
        if jobs:
            job_states(jobs)

    def alive(self, owner_id: str) -> bool:
        return alive(self.record(owner_id))

    def get(self, owner_id: str) -> Owner | None:
        rec = self.record(owner_id)
        return Owner.from_record(rec) if rec else None

    def forget_gone(self) -> None:
        """Remove the files of gone owners (under the lock, with their claims already dropped)."""
        paths = list((folder(self.store) / "owners").glob("*.json"))
        self.prefetch(p.stem for p in paths)
        for path in paths:
            if not self.alive(path.stem):
                path.unlink(missing_ok=True)


# ---------------------------------------------------------------- files

def _owner_file(store, owner_id: str) -> Path:
    return folder(store) / "owners" / f"{owner_id}.json"


def _load(store) -> dict:
    path = folder(store) / "cells.json"
    try:
        return json.loads(path.read_text())["claims"]
    except FileNotFoundError:
        return {}


def _save(store, table: dict) -> None:
    folder(store).mkdir(parents=True, exist_ok=True)
    atomic.write_json(folder(store) / "cells.json", {"claims": table})


def _log(store, events: list) -> None:
    with open(folder(store) / "log.jsonl", "a") as f:
        for event, entry, owner_id in events:
            line = {"at": _now(), "event": event, "cell": entry["cell"], "owner": owner_id, "host": entry.get("host"),
                    "pid": entry.get("pid"), "job": entry.get("job"), "token": entry["token"]}
            line.update({k: entry[k] for k in ("attempts", "status") if k in entry})
            f.write(json.dumps(line) + "\n")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
