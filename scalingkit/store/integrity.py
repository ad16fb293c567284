"""Checksums: damage on disk is found and named, never read as data.

A 1-bit flip in a chunk once turned a final loss of 5.08 into 2.54 without a word, and a deleted chunk reads back as
the fill value (NaN), which silently dropped its run. So every finished run (done or diverged) carries a checksum,
the per-run string variable `checksum`, written by its worker last, after its curve and per-run values, with the
claim guard like every write (the coordinator records the run `done` only after that):

    1;status=done;step=<16 hex>;tokens=<16 hex>;...;message=<16 hex>

one 64-bit BLAKE2b digest per variable (every curve and per-run value: the run's whole data) of the value as stored
(float64 rows with one NaN, strings as UTF-8), each bound to the run's labels (family, param, N, D, lr, seed), so a
chunk copied from another run fails too, and the status the worker reported. Why a digest the reader recomputes
rather than zarr's crc32c codec: a deleted chunk reads back as a valid fill value that no codec checks, the codec
cannot be added to the arrays of existing stores (their chunks were encoded without it), and a digest per variable
lets a reader check exactly the variables it reads.

Who checks what:
- `verify.verify(path)` (`scalingkit status --verify`): every variable of every finished run.
- `open_cube` (every command reading the cube: table, fit, optimal, plot, report): its run variables are wrapped
  (checked.py), so whatever a command loads, whole arrays or a few runs, is checked as it is read, and only that:
  the finished runs among the rows read, the variables read. A damaged run stops the command with one line naming it
  and the fix (`scalingkit train --redo-damaged`), instead of a different number. The wrapper reads the chunks itself
  (chunks.py: faster than zarr's reader for many small chunks, and a damaged chunk names its run).
- A store of schema 4 made by scalingkit is "sealed" (attribute `checksums`): every finished run has a checksum, and
  one without is damaged (its checksum chunk was deleted). A store upgraded from schema 3 has its finished runs
  sealed as they are stored then (`verify.seal`, by the coordinator, under the lock); until that finishes, runs
  without a checksum are not checked. A store of schema 1-3 (not upgraded yet) has no checksums to check.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from scalingkit.errors import StoreError
from scalingkit.store import chunks
from scalingkit.store.schema import (CHECKSUM, CURVE_VARS, RUN_DIMS, RUN_FLOAT_VARS, RUN_STR_VARS, STATUS, STATUS_CODE,
                                     Cell)

FORMAT = "1"
VARIABLE = CHECKSUM
ATTRIBUTE = "checksums"  # {"format": 1, "sealed": bool}: see the module's docstring
COVERED = (*CURVE_VARS, *RUN_FLOAT_VARS, *RUN_STR_VARS)  # a run's whole data
CHECKED = ("done", "diverged")  # the statuses whose runs carry a checksum
CHECKED_CODES = [STATUS_CODE[s] for s in CHECKED]
FIX = "retrain with `scalingkit train --redo-damaged"


# ---------------------------------------------------------------- digests

def run_key(labels) -> bytes:
    """The run's labels as digested: family, param, N, D, lr (12 significant digits, as the cube keys it), seed."""
    family, param, n, d, lr, seed = labels
    return json.dumps([str(family), str(param), int(n), int(d), float(f"{float(lr):.12g}"), int(seed)]).encode()


def canonical(value) -> bytes:
    """A value as stored: a string as UTF-8; numbers as little-endian float64 with every NaN the same NaN (a chunk
    reads back NaN of one bit pattern whatever NaN was written)."""
    if isinstance(value, str):
        return b"s" + value.encode("utf-8")
    array = np.asarray(value, dtype="<f8")
    if np.isnan(array).any():
        array = np.where(np.isnan(array), np.nan, array)
    return b"f" + array.tobytes()


def digest(key: bytes, name: str, value) -> str:
    h = hashlib.blake2b(digest_size=8)
    h.update(key)
    h.update(b"\0" + name.encode() + b"\0")
    h.update(canonical(value))
    return h.hexdigest()


def make(labels, values: dict, status: str) -> str:
    """The checksum of a run: its status and a digest of each covered variable in `values` (name -> value)."""
    key = run_key(labels)
    return ";".join([FORMAT, f"status={status}"] +
                    [f"{name}={digest(key, name, values[name])}" for name in COVERED if name in values])


@dataclass
class Checksum:
    status: str
    digests: dict


def parse(text) -> Checksum | None:
    """A stored checksum, or None where there is none (""); raises ValueError where it is not one."""
    if not text:
        return None
    fields = str(text).split(";")
    if fields[0] != FORMAT or len(fields) < 2 or not fields[1].startswith("status="):
        raise ValueError("not a checksum")
    pairs = [f.split("=", 1) for f in fields[2:]]
    if any(len(p) != 2 or len(p[1]) != 16 for p in pairs):
        raise ValueError("not a checksum")
    return Checksum(fields[1][len("status="):], dict(pairs))


# ---------------------------------------------------------------- damage

@dataclass
class Damage:
    cell: Cell
    problems: list = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.cell} ({', '.join(self.problems)})"


def describe(path, damaged: list[Damage], limit: int = 4) -> str:
    """One line naming the damaged runs (the first `limit`) and the fix."""
    shown = "; ".join(str(d) for d in damaged[:limit])
    more = f"; and {len(damaged) - limit} more" if len(damaged) > limit else ""
    what = ("1 run is damaged (its stored values do not match its checksum)" if len(damaged) == 1 else
            f"{len(damaged)} runs are damaged (their stored values do not match their checksums)")
    return (f"store {path}: {what}: {shown}{more}; {FIX} --store {path}` (`scalingkit status --verify --store {path}` "
            "checks every run)")


class Runs:
    """The finished runs of a store as read at one moment: labels and status codes in stored order, their checksums
    (read on demand, kept), and what is wrong with each."""

    def __init__(self, path, labels: dict, codes: np.ndarray, has_checksums: bool, sealed: bool, reread=None):
        self.path, self.labels, self.codes = path, labels, np.asarray(codes)
        self.reread = reread  # () -> the status codes now (refuse: did the runs change while they were read?)
        self.has_checksums, self.sealed = has_checksums, sealed
        self.finished = np.isin(self.codes, CHECKED_CODES)
        self._sums: dict = {}
        self._keys: dict = {}

    def cell(self, run: tuple) -> Cell:
        return Cell(*(_plain(self.labels[d][i]) for d, i in zip(RUN_DIMS, run)))

    def key(self, run: tuple) -> bytes:
        if run not in self._keys:
            self._keys[run] = run_key([self.labels[d][i] for d, i in zip(RUN_DIMS, run)])
        return self._keys[run]

    def checksums(self, runs: list[tuple]) -> list:
        """Per run: a Checksum, None (none stored) or the string "unreadable"."""
        todo = [r for r in runs if r not in self._sums]
        if todo and self.has_checksums:
            texts, state = chunks.RunArray(self.path, VARIABLE).read(np.array(todo))
            for run, text, st in zip(todo, texts, state):
                try:
                    self._sums[run] = "unreadable" if st == chunks.UNREADABLE else parse(text)
                except ValueError:
                    self._sums[run] = "unreadable"
        elif todo:
            self._sums.update(dict.fromkeys(todo))
        return [self._sums[r] for r in runs]

    def problems(self, name: str, runs: np.ndarray, values: np.ndarray, state: np.ndarray) -> dict:
        """run -> what is wrong with variable `name` of the finished runs among `runs` (values and state as
        chunks.RunArray.read gives them)."""
        rows = np.nonzero(self.finished[tuple(runs.T)])[0] if len(runs) else []
        if not len(rows):
            return {}
        picked = [tuple(int(x) for x in runs[i]) for i in rows]
        bad = {}
        for i, run, s in zip(rows, picked, self.checksums(picked)):
            problem = self._problem(name, run, s, values[i], state[i])
            if problem:
                bad[run] = problem
        return bad

    def _problem(self, name, run, s, value, state) -> str | None:
        if state == chunks.UNREADABLE:
            return f"{name} unreadable"
        if s == "unreadable":
            return "checksum unreadable"
        if s is None:
            return "no checksum" if self.has_checksums and self.sealed else None
        status = STATUS[int(self.codes[run])]
        if s.status != status:
            return f"status {status}, checksummed as {s.status}"
        expected = s.digests.get(name)
        if expected is None or digest(self.key(run), name, value) == expected:
            return None
        return f"{name} chunk missing" if state == chunks.ABSENT else f"{name} differs"


def _plain(x):
    if isinstance(x, (str, np.str_)):
        return str(x)
    if isinstance(x, (np.floating, float)):
        return float(x)
    return int(x)


def refuse(runs: Runs, bad: dict) -> None:
    """Raise the one-line error for damaged runs (bad: run -> problem), unless they changed while they were read
    (a redo under way), which says to try again."""
    picked = list(bad)
    if runs.reread is not None:
        codes = runs.reread()
        fresh = Runs(runs.path, runs.labels, codes, runs.has_checksums, runs.sealed)
        if codes.shape != runs.codes.shape or any(codes[r] != runs.codes[r] for r in picked) or \
                fresh.checksums(picked) != [runs._sums.get(r) for r in picked]:
            raise StoreError(f"store {runs.path} changed while it was read (runs are being retrained); try again")
    raise StoreError(describe(runs.path, [Damage(runs.cell(r), [p]) for r, p in sorted(bad.items())]))
