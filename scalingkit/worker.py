"""What one worker process does for one cell: build the family, train, write its own region of the cube.

A worker never writes `status`: it returns the outcome and the coordinator records it under the store lock, so a
worker killed at any moment leaves its cell `missing` (at worst with a partial curve that the re-run overwrites).
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass

from scalingkit.store import Cell


@dataclass
class Outcome:
    cell: Cell
    status: str  # done | diverged | failed
    message: str
    tokens_trained: int
    wall_seconds: float


def set_threads(threads: int) -> None:
    import torch

    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def run_cell(store_path: str, cell: Cell, config, family_spec: dict, threads: int = 0) -> Outcome:
    """Train `config` (an engine.RunConfig) and write its curve and per-run values. Never raises: a failure is an
    Outcome with status 'failed' and the error in one line."""
    from datetime import datetime, timezone

    from scalingkit import engine
    from scalingkit.families import build_family
    from scalingkit.store import RunWriter

    start = time.perf_counter()
    try:
        set_threads(threads)
        family = build_family(cell.family, family_spec)
        writer = RunWriter(store_path)
        last_save = [time.perf_counter()]

        def save_partial(partial):
            # Partial curves make a long run visible in a notebook; its status stays `missing` until the end.
            if time.perf_counter() - last_save[0] >= config.settings.checkpoint_seconds:
                writer.write_curve(cell, partial)
                last_save[0] = time.perf_counter()

        result = engine.train(config, family, on_point=save_partial)
        facts = engine.run_facts(config, family.vocab_size)
        writer.write_curve(cell, result)
        writer.write_run_values(cell, {
            "final_eval_loss": result.final_eval_loss,
            "final_train_loss": float(result.train_loss[-1]) if len(result.train_loss) else float("nan"),
            "tokens_trained": facts["tokens_trained"],
            "flops_6nd": facts["flops_6nd"],
            "flops_exact": facts["flops_exact"],
            "wall_seconds": result.wall_seconds,
            "config_hash": config.config_hash(family.spec()),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "message": result.message,
        })
        return Outcome(cell, result.status, result.message, facts["tokens_trained"], time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - a failed run is data, not a crash of the sweep
        last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" ({last.filename.rsplit('/', 1)[-1]}:{last.lineno})" if last else ""
        return Outcome(cell, "failed", f"{type(exc).__name__}: {exc}{where}", 0, time.perf_counter() - start)
