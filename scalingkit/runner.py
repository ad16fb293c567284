"""`train --fill-missing`: prepare the cube, plan the missing cells, run them, record each outcome as it arrives."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from scalingkit import plan, store
from scalingkit.executors import make_executor, threads_per_worker
from scalingkit.worker import Outcome, run_cell


@dataclass
class FillReport:
    planned: int = 0
    counts: dict = field(default_factory=lambda: {"done": 0, "diverged": 0, "failed": 0})
    failures: list = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        if self.planned == 0:
            return "nothing to train: every planned cell is finished"
        c = self.counts
        rate = self.tokens / self.seconds if self.seconds else 0.0
        return (f"trained {sum(c.values())}/{self.planned} runs: {c['done']} done, {c['diverged']} diverged, "
                f"{c['failed']} failed; {self.tokens:,} tokens in {self.seconds:.1f} s ({rate:,.0f} tokens/s)")


def fill_missing(store_path, sweep=None, workers: int = 1, executor: str = "local", retry_failed: bool = False,
                 device: str | None = None, progress: bool = True, echo=print) -> FillReport:
    """Train every planned cell that is not finished. With `sweep`, its cells are added to the cube and only they are
    trained (so two coordinators with different sweeps can share a store); without, every sweep stored in the cube
    is re-planned."""
    store_path = str(store_path)
    if sweep is not None:
        info = plan.prepare(store_path, sweep)
        if info["created"]:
            echo(f"created {store_path}")
        elif info["added"]:
            echo("grew the cube: " + ", ".join(f"{d} +{len(v)}" for d, v in info["added"].items()))
    elif not Path(store_path, "zarr.json").exists():
        from scalingkit.errors import UserError

        raise UserError(f"no cube at {store_path}: give a sweep file (scalingkit train SWEEP.toml --fill-missing)")
    sweeps = [sweep] if sweep is not None else plan.stored_sweeps(store_path)
    todo = plan.missing_cells(store_path, sweeps, retry_failed=retry_failed)
    report = FillReport(planned=len(todo))
    if not todo:
        return report
    threads = threads_per_worker(workers)
    tasks = []
    for cell, sw in todo:
        config = sw.run_config(cell)
        if device is not None:
            from dataclasses import replace

            config = replace(config, settings=replace(config.settings, device=device))
        tasks.append((run_cell, (store_path, cell, config, sw.families[cell.family], threads)))
    total_tokens = sum(t[1][2].steps * t[1][2].settings.batch * t[1][2].settings.context for t in tasks)
    bar = _progress(total_tokens, len(tasks), progress)
    start = time.perf_counter()
    try:
        for outcome in make_executor(executor, workers).run(tasks):
            _record(store_path, outcome)
            report.counts[outcome.status] = report.counts.get(outcome.status, 0) + 1
            report.tokens += outcome.tokens_trained
            if outcome.status == "failed":
                report.failures.append(f"{outcome.cell}: {outcome.message}")
                echo(f"run failed: {outcome.cell}: {outcome.message}")
            report.seconds = time.perf_counter() - start
            bar.update(outcome.tokens_trained if outcome.status != "failed" else 0)
            bar.set_postfix_str(f"runs {sum(report.counts.values())}/{len(tasks)}, "
                                f"{report.tokens / max(report.seconds, 1e-9):,.0f} tok/s", refresh=True)
    finally:
        bar.close()
        report.seconds = time.perf_counter() - start
    return report


def _record(store_path: str, outcome: Outcome) -> None:
    """The coordinator's only write per run: the status code, under the lock."""
    with store.lock(store_path):
        writer = store.RunWriter(store_path)
        writer.write_status([(outcome.cell, outcome.status)])
        if outcome.status == "failed":
            writer.write_run_values(outcome.cell, {"message": outcome.message})


def _progress(total_tokens: int, runs: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total_tokens, unit="tok", unit_scale=True, disable=not enabled, dynamic_ncols=True,
                desc=f"training {runs} runs", smoothing=0.1)
