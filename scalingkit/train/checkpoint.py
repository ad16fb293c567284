"""Checkpoints: a run (engine.train) or a batch of variants (batched.train_batch) saves all it needs to go on, and a
killed or preempted one goes on from there with the curve it would have had without the interruption.

What a checkpoint holds (one torch.save of a dict of plain values and tensors, read back with weights_only=True):
- a header: format and version, `kind` ("run": engine.train; "batch": the stacked engine, a stack of one included,
  whose numbers differ from engine.train's in the last digits) and `key`, the config hash of every variant in order
  (RunConfig.config_hash: everything that determines the result, the device and the save cadences excepted), so
  a checkpoint of another run, another batch or another engine is never used;
- the step reached, the model's (or the stack's) parameters, the optimiser's state (torch AdamW's state dict; the
  stacked AdamW's step count and moments), the running training-loss accumulator and how many steps it holds, the
  next evaluation point and the partial curve (every point so far), the wall and evaluation seconds spent so far,
  the global torch RNG state (nothing should draw from it; restored anyway), the steps it was resumed at before;
- each data stream's position: the numpy Generator's state and the number of batches drawn. A family that keeps
  per-stream state of its own (natural text keeps each run's window order and cursor) can restore it directly by
  implementing `stream_state(rng) -> dict` and `restore_stream(rng, state)`; for any other family the stream is
  replayed from its seed (the batches drawn again and discarded, which only costs sampling time, not training) and
  the replayed Generator must reach exactly the saved state, or the checkpoint is not used;
- a batch also holds which variants are still live, how each finished one ended and the batch clock's shares.
The held-out set is not saved: it is regenerated from the settings, as at the start of a run.

When: after the first step that ends `every_seconds` or more after the run (re)started or last saved, never after
the last step (a finished run returns its curve instead); or after the step during which `CheckpointSpec.request()`
was called (a preemption signal's handler can call it). A save writes a temporary file beside the checkpoint,
flushes it to disk and renames it into place (os.replace), so a kill at any moment leaves the old checkpoint or the
new one. A save that fails (a full disk) warns and training goes on.

A checkpoint that cannot be read, is not a scalingkit checkpoint, or belongs to another run (another config hash,
another engine, another set of variants) is ignored with a CheckpointIgnored warning naming the file and why, and the
run starts from the beginning (its first save replaces the file). It is never used silently.

Exactness: on the CPU a resumed run's curve is the uninterrupted run's bit for bit (tests/test_checkpoint.py). On a
GPU it agrees within bf16/atomics nondeterminism, as two uninterrupted GPU runs do.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import warnings
from dataclasses import astuple, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from scalingkit.durable import write_through

FORMAT = "scalingkit checkpoint"
VERSION = 1


class CheckpointIgnored(UserWarning):
    """A checkpoint was found but not used (unreadable, or another run's): the run starts from the beginning."""


class CheckpointNotSaved(UserWarning):
    """A checkpoint could not be written (a full disk, a missing folder): the run goes on without it."""


class _Mismatch(Exception):
    """The checkpoint cannot be used for this run (the reason is the message)."""


@dataclass
class CheckpointSpec:
    """Where and how often a run saves its checkpoint.

    path: the checkpoint file (the store puts it at store/checkpoints/<cell>); if it exists and matches the run,
    the run resumes from it. every_seconds: seconds of training between saves (0: after every step; tests).
    after_save: called with the step just saved, after the file is in place (tests interrupt a run there)."""

    path: str | os.PathLike
    every_seconds: float = 600.0
    after_save: Callable[[int], None] | None = None
    _requested: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    def __post_init__(self):
        if not self.every_seconds >= 0:
            raise ValueError(f"every_seconds must be >= 0, got {self.every_seconds}")

    def request(self) -> None:
        """Save after the step in progress, whatever the time (safe to call from a signal handler or a thread)."""
        self._requested.set()


class Checkpointer:
    """One run's (or batch's) checkpointing: loads a matching checkpoint and decides and performs the saves."""

    def __init__(self, spec: CheckpointSpec, kind: str, key: list[str]):
        self.spec, self.kind, self.key = spec, kind, list(key)
        self.path = Path(spec.path)
        self.last = time.perf_counter()

    def load(self, device: torch.device) -> dict | None:
        """The checkpoint's state if the file exists and belongs to this run; None (with a warning if there was a
        file) otherwise."""
        _remove_own_leftovers(self.path)
        if not self.path.exists():
            return None
        try:
            # a damaged file can look like a pickle of another protocol: torch warns about that before it fails,
            # and the CheckpointIgnored warning below is the one that says what happened
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                state = torch.load(self.path, map_location=device, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is ignored, with the reason
            self.ignore(f"it cannot be read ({type(exc).__name__}: {_first_line(exc)})")
            return None
        try:
            self.check(state)
        except _Mismatch as exc:
            self.ignore(str(exc))
            return None
        return state

    def check(self, state) -> None:
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise _Mismatch("it is not a scalingkit checkpoint")
        if state.get("version") != VERSION:
            raise _Mismatch(f"its format version is {state.get('version')!r}, this scalingkit reads {VERSION}")
        if state.get("kind") != self.kind or state.get("key") != self.key:
            raise _Mismatch(f"it belongs to another run ({_describe(state.get('kind'), state.get('key'))}; this "
                            f"run: {_describe(self.kind, self.key)})")

    def ignore(self, reason: str) -> None:
        warnings.warn(CheckpointIgnored(f"ignoring checkpoint {self.path}: {reason}; training from the start"),
                      stacklevel=3)

    def due(self) -> bool:
        return self.spec._requested.is_set() or time.perf_counter() - self.last >= self.spec.every_seconds

    def save(self, step: int, state: dict) -> None:
        state = {"format": FORMAT, "version": VERSION, "kind": self.kind, "key": self.key, "step": step,
                 "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **state}
        self.spec._requested.clear()
        try:
            atomic_save(state, self.path)
        except OSError as exc:
            warnings.warn(CheckpointNotSaved(f"could not save checkpoint {self.path} at step {step}: {exc}; "
                                             "training goes on"), stacklevel=3)
        self.last = time.perf_counter()
        if self.spec.after_save is not None:
            self.spec.after_save(step)


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary file beside `path` (named by host and process, so that _remove_own_leftovers can
    tell a dead writer's file), flushed to disk, then renamed over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_through(path, lambda f: torch.save(obj, f),
                  path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}"))


def _remove_own_leftovers(path: Path) -> None:
    """Temporary files of saves on this host whose process is gone (killed during a write)."""
    prefix = f".{path.name}.tmp-{socket.gethostname()}-"
    if not path.parent.is_dir():
        return
    for tmp in path.parent.glob(f"{glob_escape(prefix)}*"):
        pid = tmp.name[len(prefix):]
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            tmp.unlink(missing_ok=True)


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _describe(kind, key) -> str:
    if not isinstance(key, list):
        return f"{kind}, key {key!r}"
    what = "one run" if kind == "run" else f"a batch of {len(key)}"
    return f"{what}, config hash {', '.join(map(str, key))}"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no detail"


# ------------------------------------------------------------------------------------------ pieces of a state

def pack_record(rec: dict) -> dict:
    """engine.new_record()'s lists as plain values (Scores as tuples)."""
    return {"steps": [int(s) for s in rec["steps"]], "train": [float(v) for v in rec["train"]],
            "lr": [float(v) for v in rec["lr"]], "scores": [tuple(float(x) for x in astuple(sc))
                                                            for sc in rec["scores"]]}


def unpack_record(packed: dict) -> dict:
    from scalingkit.train.evaluation import Scores

    return {"steps": list(packed["steps"]), "train": list(packed["train"]), "lr": list(packed["lr"]),
            "scores": [Scores(*sc) for sc in packed["scores"]]}


def stream_state(batches) -> dict:
    """A data stream's position: its Generator's state, the batches drawn, and the family's own state if it has
    any (see the module's docstring)."""
    own = getattr(batches.family, "stream_state", None)
    return {"drawn": batches.drawn, "rng": batches.rng.bit_generator.state,
            "family": own(batches.rng) if own is not None else None}


def restore_stream(batches, state: dict) -> None:
    """Put a fresh Batches (from the run's seed, nothing drawn yet) where `state` was. Raises _Mismatch if the
    stream cannot get there."""
    restore_own = getattr(batches.family, "restore_stream", None)
    if restore_own is not None and state.get("family") is not None:
        batches.rng.bit_generator.state = state["rng"]
        restore_own(batches.rng, state["family"])
        batches.drawn = state["drawn"]
        return
    for _ in range(int(state["drawn"])):  # replay: draw the same batches again and drop them
        batches.sample()
    if not _same_rng_state(batches.rng.bit_generator.state, state["rng"]):
        raise _Mismatch(f"its data stream does not replay to the saved position after {state['drawn']} batches "
                        "(the family samples differently from the run that saved it)")


def _same_rng_state(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_rng_state(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return a == b
