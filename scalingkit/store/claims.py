"""Which coordinator trains which cell: per-cell claims, kept beside the store and changed only under its lock.

Every cell trains exactly once, whatever is started: a coordinator registers as an owner, claims a task's cells just
before it starts them (only cells still to train that no live owner holds) and releases each claim once it has
recorded the cell's status. So two coordinators on one store share the work. A worker writes a cell only while its
claim is current (guard: checked under the lock before every write), and a coordinator records status only for
cells it holds.

An owner, and with it each of its claims, is alive while:
- a process on this host (same host name and boot): its pid runs, with the start time recorded when it registered
  (a reused pid has another), and is not a zombie. This is exact: a killed coordinator's claims are free at once;
- anything else: a process on another host sharing the file system, or (for the cluster executors to come) a
  submitted job, which outlives the coordinator that submitted it and is recorded with its job id: while its lease
  is fresh. The owner rewrites `renewed_at` every lease/3 seconds (Heartbeat); an owner not heard of for
  `lease_seconds` (default 60, SCALINGKIT_LEASE_SECONDS) is gone and its claims are free. Leases compare wall clocks
  across hosts: keep them synchronised (NTP).
A claim that was taken over can never be written by its old holder: the worker's check finds another token.

Files beside the store STORE (zarr never sees them): STORE.claims/owners/ID.json (one per owner), STORE.claims/
cells.json (cell -> claim) and STORE.claims/log.jsonl (every claim taken, taken over, expired or released, with its
owner: who trained what).
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from scalingkit.store import atomic
from scalingkit.store.cube import Cell, lock

LEASE_SECONDS = 60.0
HOST = socket.gethostname()


class ClaimLost(Exception):
    """The cell is no longer claimed by this worker's coordinator (it is gone, or its claim was taken over after its
    lease ran out): the worker must not write it."""


@dataclass(frozen=True)
class Ticket:
    """What a worker needs to check its claim: the owner's id and the claim's own token."""

    owner: str
    token: str


@dataclass
class Owner:
    """Who holds claims. kind "process": a coordinator (host, pid, start time against pid reuse). kind "job" (for the
    cluster executors to come): a submitted job, by its id, alive by its lease."""

    id: str
    host: str
    kind: str = "process"
    pid: int | None = None
    boot: str | None = None  # the host's boot id: a pid from before a reboot is another process
    started: int | None = None  # the process's start time (clock ticks since boot, /proc/PID/stat)
    job: str | None = None
    lease_seconds: float = LEASE_SECONDS
    renewed_at: float = 0.0

    def __str__(self) -> str:
        return f"job {self.job}" if self.kind == "job" else f"pid {self.pid} on {self.host}"


def folder(store) -> Path:
    return Path(str(store) + ".claims")


def this_process(lease_seconds: float | None = None) -> Owner:
    if lease_seconds is None:
        lease_seconds = float(os.environ.get("SCALINGKIT_LEASE_SECONDS", LEASE_SECONDS))
    pid = os.getpid()
    stat = _proc_stat(pid)
    return Owner(id=uuid.uuid4().hex, host=HOST, pid=pid, boot=_boot_id(), started=stat[1] if stat else None,
                 lease_seconds=lease_seconds, renewed_at=time.time())


def register(store, owner: Owner) -> Owner:
    (folder(store) / "owners").mkdir(parents=True, exist_ok=True)
    renew(store, owner)
    return owner


def renew(store, owner: Owner) -> None:
    owner.renewed_at = time.time()
    atomic.write_json(_owner_file(store, owner.id), asdict(owner))


def retire(store, owner: Owner) -> None:
    """Release every claim of `owner` and forget it (a coordinator ending, normally or on Ctrl-C)."""
    with lock(store):
        table = _load(store)
        mine = {k: c for k, c in table.items() if c["owner"] == owner.id}
        if mine:
            _save(store, {k: c for k, c in table.items() if k not in mine})
            _log(store, [("release", c, owner.id) for c in mine.values()])
        _owner_file(store, owner.id).unlink(missing_ok=True)


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
    under the lock: the status is current) allows. Claims of gone owners are dropped on the way. Returns
    {cell: Ticket} for the cells claimed."""
    cells = list(cells)
    with lock(store):
        table = _load(store)
        owners = _Owners(store)
        events = [("expire", c, c["owner"]) for c in table.values() if not owners.alive(c["owner"])]
        table = {k: c for k, c in table.items() if owners.alive(c["owner"])}
        free = [cell for cell in cells if cell_key(cell) not in table]
        allowed = claimable(free) if free else []
        got = {}
        for cell, ok in zip(free, allowed):
            if not ok:
                continue
            entry = {"cell": list(cell.labels()), "owner": owner.id, "host": owner.host, "pid": owner.pid,
                     "job": owner.job, "token": uuid.uuid4().hex, "since": _now()}
            table[cell_key(cell)] = entry
            got[cell] = Ticket(owner.id, entry["token"])
            events.append(("claim", entry, owner.id))
        if events:
            _save(store, table)
            _log(store, events)
        owners.forget_gone()
    return got


def holds(store, cell: Cell, ticket: Ticket) -> bool:
    """Whether the claim behind `ticket` is still current: the cell's claim carries its token and its owner lives.
    Call under the store's lock for the answer to stay true while you write."""
    entry = _load(store).get(cell_key(cell))
    return (entry is not None and entry["owner"] == ticket.owner and entry["token"] == ticket.token
            and _Owners(store).alive(ticket.owner))


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
    owners = _Owners(store)
    return {k: owners.get(c["owner"]) for k, c in _load(store).items()
            if c["owner"] != owner.id and owners.alive(c["owner"])}


def live(store) -> list[dict]:
    """The claims that live owners hold now (what other coordinators are training), read without the lock (the
    files are replaced whole): each {"cell": labels, "owner": Owner or None, "since": when it was claimed}."""
    owners = _Owners(store)
    return [{"cell": c["cell"], "owner": owners.get(c["owner"]), "since": c.get("since")}
            for c in _load(store).values() if owners.alive(c["owner"])]


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
    """Whether an owner (as recorded in its file) still lives: by its pid on this host, by its lease elsewhere."""
    if record is None:
        return False
    fresh = (time.time() if now is None else now) - record.get("renewed_at", 0.0) <= record.get("lease_seconds",
                                                                                                 LEASE_SECONDS)
    if record.get("kind") == "process" and record.get("host") == HOST and record.get("boot") == _boot_id():
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
    """Owner records, read once per operation."""

    def __init__(self, store):
        self.store, self.cache = store, {}

    def record(self, owner_id: str) -> dict | None:
        if owner_id not in self.cache:
            try:
                self.cache[owner_id] = json.loads(_owner_file(self.store, owner_id).read_text())
            except (OSError, ValueError):
                self.cache[owner_id] = None
        return self.cache[owner_id]

    def alive(self, owner_id: str) -> bool:
        return alive(self.record(owner_id))

    def get(self, owner_id: str) -> Owner | None:
        rec = self.record(owner_id)
        return Owner(**rec) if rec else None

    def forget_gone(self) -> None:
        """Remove the files of gone owners (under the lock, with their claims already dropped)."""
        for path in (folder(self.store) / "owners").glob("*.json"):
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
            f.write(json.dumps({"at": _now(), "event": event, "cell": entry["cell"], "owner": owner_id,
                                "host": entry.get("host"), "pid": entry.get("pid"), "job": entry.get("job"),
                                "token": entry["token"]}) + "\n")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
