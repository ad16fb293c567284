"""What one worker does for one cell or one batch of cells, in a local process, a dask task or a SLURM job: build the
family, train (resuming from the task's checkpoint if a killed, preempted or requeued attempt left one), write each
cell's own region of the cube, its checksum last (read back first: a write that did not land fails the run).

A worker never writes `status`: it returns the outcome and the coordinator records it under the store lock, so a
worker killed at any moment leaves its cell `missing` (at worst with a partial curve that the re-run overwrites).
It writes a cell only while its claim on it is current (claims.guard, checked under the lock before every write,
partial curves included): a worker whose coordinator died, or whose claim was taken over, never writes again, and
reports the cell `lost`. Each start enters the claims with a fresh attempt (claims.enter), so that an earlier
attempt of the same task (a dask task run again elsewhere, a requeued job) cannot write either. A cell already
finished (its checksum verifies: an earlier attempt wrote everything and nobody recorded it) is not trained again.

Checkpoints: every `checkpoint_minutes` of training the task saves store/checkpoints/<first cell>.pt (model,
optimiser, data streams, partial curves: train/checkpoint.py); a new attempt resumes from it and ends with the
uninterrupted run's curve (bit for bit on the CPU). The coordinator removes it once the task's runs are recorded.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import dataclass

from scalingkit.store import Cell


@dataclass
class Outcome:
    cell: Cell
    status: str  # done | diverged | failed | lost (the claim was gone: nothing written) | cancelled (its SLURM job)
    message: str
    tokens_trained: int
    wall_seconds: float
    resumed_at: tuple = ()  # steps at which training went on from a checkpoint (none: trained in one go)
    already: bool = False  # finished by an earlier attempt (its checksum verifies): recorded, not trained again


def set_threads(threads: int) -> None:
    import torch

    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def run_cell(store_path: str, cell: Cell, config, family_spec: dict, threads: int, tickets: dict,
             stacked: bool = False) -> Outcome:
    """Train `config` (an engine.RunConfig) and write its curve and per-run values. Never raises: a failure is an
    Outcome with status 'failed' and the error in one line."""
    return run_batch(store_path, (cell,), (config,), family_spec, threads, tickets, stacked)[0]


def run_batch(store_path: str, cells, configs, family_spec: dict, threads: int, tickets: dict,
              stacked: bool | None = None, on_checkpoint=None) -> list[Outcome]:
    """Train cells of one shape (differing only in lr and seed) and write each into its own region, exactly as
    run_cell writes a single run. tickets: cell -> claims.Ticket, the claims this task was given. stacked: train with
    the batched engine (batched.train_batch), even a single cell, so that a shape batched once keeps the batched
    engine's numbers (they differ from engine.train's in the last digits and do not depend on the stack's size);
    default: stacked when there are several cells. on_checkpoint(spec): called with the task's CheckpointSpec before
    training (a SLURM job keeps it to request a save when it is preempted). Never raises: if the batch fails, every
    cell's Outcome is 'failed'."""
    from scalingkit.store import RunWriter, adopt, claims

    stacked = len(cells) > 1 if stacked is None else stacked
    start = time.perf_counter()
    try:
        mine = claims.enter(store_path, {cell: tickets[cell] for cell in cells if cell in tickets})
        writer = RunWriter(store_path, guard=claims.guard(store_path, mine))
        done = adopt.finished(store_path, [cell for cell in cells if cell in mine],
                              positions={cell: writer.index(cell) for cell in cells if cell in mine})
    except Exception as exc:  # noqa: BLE001 - the store could not be read: every cell fails, with the reason
        return _failed(cells, exc, start)
    out: dict = {}
    for cell in cells:
        if cell not in mine:
            out[cell] = Outcome(cell, "lost", "its claim was gone: not trained", 0, 0.0)
        elif cell in done:
            out[cell] = Outcome(cell, done[cell], "already finished (its checksum verifies): not trained again", 0,
                                0.0, already=True)
    todo = [i for i, cell in enumerate(cells) if cell not in out]
    if todo:
        trained = _train(store_path, writer, tuple(cells[i] for i in todo), tuple(configs[i] for i in todo),
                         family_spec, threads, stacked, on_checkpoint, start)
        out.update((o.cell, o) for o in trained)
    return [out[cell] for cell in cells]


def _train(store_path, writer, cells, configs, family_spec, threads, stacked, on_checkpoint, start) -> list:
    from scalingkit.families import build_family
    from scalingkit.store import adopt, claims
    from scalingkit.train import engine

    lost: set[int] = set()
    try:
        set_threads(threads)
        family = build_family(cells[0].family, family_spec)
        partial = _PartialSaver(writer, cells, configs[0].settings.checkpoint_seconds, lost)
        every = configs[0].settings.checkpoint_minutes * 60.0
        checkpoint = None
        if every > 0:
            from scalingkit.train.checkpoint import CheckpointSpec

            checkpoint = CheckpointSpec(adopt.checkpoint_path(store_path, cells[0]), every)
            if on_checkpoint is not None:
                on_checkpoint(checkpoint)
            _test_hook(checkpoint)
        if not stacked:
            results = [engine.train(configs[0], family, on_point=lambda r: partial(0, r), checkpoint=checkpoint)]
        else:
            from scalingkit.train.batched import train_batch

            results = train_batch(list(configs), family, on_point=partial, checkpoint=checkpoint)
        if results and results[0].resumed_at:
            print(f"resumed {cells[0]}{' (a batch of %d)' % len(cells) if len(cells) > 1 else ''} from its "
                  f"checkpoint at step {', '.join(map(str, results[0].resumed_at))}", file=sys.stderr, flush=True)
        outcomes = []
        for i, (cell, config, result) in enumerate(zip(cells, configs, results)):
            seconds = time.perf_counter() - start if len(cells) == 1 else result.wall_seconds  # a batch: its share
            try:
                if i in lost:
                    raise claims.ClaimLost(str(cell))
                tokens = _write(writer, cell, config, family, result, len(cells) if stacked else 0)
            except claims.ClaimLost:
                outcomes.append(Outcome(cell, "lost", "its claim was gone: not written", 0, seconds))
                continue
            outcomes.append(Outcome(cell, result.status, result.message, tokens, seconds,
                                    tuple(result.resumed_at)))
        return outcomes
    except _AllLost:
        seconds = (time.perf_counter() - start) / len(cells)
        return [Outcome(cell, "lost", "its claim was gone: training stopped", 0, seconds) for cell in cells]
    except Exception as exc:  # noqa: BLE001 - a failed run is data, not a crash of the sweep
        return _failed(cells, exc, start)


HOOK = "SCALINGKIT_WORKER_HOOK"


def _test_hook(checkpoint) -> None:
    """For tests, SCALINGKIT_WORKER_HOOK="pause-after-save:SECONDS" sleeps that long after every checkpoint save, so
    that a run of a few hundred steps lasts long enough to be interrupted mid-way (a requeue, a cancel, a killed
    worker) without burning the CPU. It changes when things happen, never what is computed."""
    value = os.environ.get(HOOK, "")
    if not value.startswith("pause-after-save:"):
        return
    seconds = float(value.split(":", 1)[1])
    previous = checkpoint.after_save

    def pause(step: int) -> None:
        if previous is not None:
            previous(step)
        time.sleep(seconds)

    checkpoint.after_save = pause


def _failed(cells, exc: Exception, start: float) -> list[Outcome]:
    last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" ({last.filename.rsplit('/', 1)[-1]}:{last.lineno})" if last else ""
    message = f"{type(exc).__name__}: {exc}{where}"
    seconds = (time.perf_counter() - start) / len(cells)
    return [Outcome(cell, "failed", message, 0, seconds) for cell in cells]


class _AllLost(Exception):
    """Every cell of the task lost its claim: training on is wasted."""


class _PartialSaver:
    """Partial curves make a long run visible in a notebook; its status stays `missing` until the end. In a batch
    every variant's partial curve is saved at the same moments. A variant whose claim is gone is not saved again
    (its index goes to `lost`); when all are gone, training stops."""

    def __init__(self, writer, cells, every_seconds: float, lost: set):
        self.writer, self.cells, self.every, self.lost = writer, cells, every_seconds, lost
        self.last = time.perf_counter()
        self.point, self.due = 0, False

    def __call__(self, i: int, partial) -> None:
        from scalingkit.store.claims import ClaimLost

        if len(partial.steps) != self.point:  # the first variant reported at a point decides for the whole point
            self.point = len(partial.steps)
            self.due = time.perf_counter() - self.last >= self.every
            if self.due:
                self.last = time.perf_counter()
        if self.due and i not in self.lost:
            try:
                self.writer.write_curve(self.cells[i], partial)
            except ClaimLost:
                self.lost.add(i)
                if len(self.lost) == len(self.cells):
                    raise _AllLost from None


def _write(writer, cell: Cell, config, family, result, stack_variants: int) -> int:
    """The run's curve, per-run values and, last, its checksum (never `status`). Returns the tokens trained."""
    from datetime import datetime, timezone

    from scalingkit.train import engine

    facts = engine.run_facts(config, family.vocab_size)
    writer.write_curve(cell, result)
    writer.write_run_values(cell, {
        "final_eval_loss": result.final_eval_loss,
        "final_eval_loss_se": result.final("eval_loss_se"),
        "final_exact_loss": result.final("exact_loss"),
        "final_exact_loss_se": result.final("exact_loss_se"),
        "final_train_loss": float(result.train_loss[-1]) if len(result.train_loss) else float("nan"),
        "tokens_trained": facts["tokens_trained"],
        "flops_6nd": facts["flops_6nd"],
        "flops_exact": facts["flops_exact"],
        "wall_seconds": result.wall_seconds,
        "stack_variants": stack_variants,
        "config_hash": config.config_hash(family.spec()),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "message": result.message,
    })
    writer.write_checksum(cell, result.status)  # last: a run with a checksum has all its values (store/integrity.py)
    return facts["tokens_trained"]
