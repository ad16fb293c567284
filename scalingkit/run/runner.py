"""`train --fill-missing`: prepare the cube, plan the missing cells, group them into batches where batching pays,
run them, record each outcome as it arrives; repeat while a learning-rate search asks for more."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from scalingkit import store
from scalingkit.device import threads_per_worker
from scalingkit.run.executors import make_executor
from scalingkit.run.worker import Outcome, run_batch, run_cell
from scalingkit.sweep import batching, plan


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
                 device: str | None = None, progress: bool = True, echo=print, batch_variants="auto") -> FillReport:
    """Train every planned cell that is not finished. With `sweep`, its cells are added to the cube and only they are
    trained (so two coordinators with different sweeps can share a store); without, every sweep stored in the cube
    is re-planned. batch_variants: "auto", or at most this many cells of one shape per batch (1: no batching).
    Sweeps that search learning rates train in rounds: each round plans what the results so far ask for."""
    store_path = str(store_path)
    if sweep is not None:
        info = plan.prepare(store_path, sweep)
        if info["created"]:
            echo(f"created {store_path}")
        elif info["added"]:
            echo("grew the cube: " + ", ".join(f"{d} +{len(v)}" for d, v in info["added"].items()))
        if info.get("replaced"):
            echo(f"sweep {info['replaced']!r} changed since the store recorded it: its new version replaces the old "
                 "(every stored run stays in the cube)")
    elif not Path(store_path, "zarr.json").exists():
        from scalingkit.errors import UserError

        raise UserError(f"no cube at {store_path}: give a sweep file (scalingkit train SWEEP.toml --fill-missing)")
    sweeps = [sweep] if sweep is not None else plan.stored_sweeps(store_path)
    report = FillReport()
    tried: set = set()  # cells attempted by this call: a failing cell is not retried round after round
    decide = _Prober(threads_per_worker(workers))
    told: set = set()  # batching choices already printed
    start = time.perf_counter()
    while True:
        grown = plan.grow_for_searches(store_path, sweeps)  # lrs past a grid that a search wants now
        if grown:
            echo(f"grew the cube: lr +{len(grown)} past the grid for the learning-rate search "
                 f"({', '.join(f'{lr:g}' for lr in grown)})")
        todo = [(cell, sw) for cell, sw in plan.missing_cells(store_path, sweeps, retry_failed=retry_failed)
                if cell not in tried]
        if not todo:
            break
        tried.update(cell for cell, _ in todo)
        report.planned += len(todo)
        tasks = _tasks(store_path, todo, workers, device, batch_variants, decide, echo, told)
        _run_round(store_path, tasks, workers, executor, report, progress, echo, start)
    report.seconds = time.perf_counter() - start
    if any(sw.lr_search is not None for sw in sweeps):
        rows = plan.lr_optima(store_path, sweeps)
        states = {}
        for row in rows:
            states[row["state"]] = states.get(row["state"], 0) + 1
        echo("learning-rate search: " + ", ".join(f"{n} {state}" for state, n in states.items()) +
             " (per family, param, N, D; `scalingkit status` shows which)")
    return report


def _tasks(store_path, todo, workers, device, batch_variants, decide, echo, told: set) -> list[tuple]:
    """(function, args) for the executor: one per cell, or one per batch of cells of one shape."""
    items = []
    for cell, sw in todo:
        config = sw.run_config(cell)
        if device is not None:
            config = replace(config, settings=replace(config.settings, device=device))
        items.append((cell, config, sw.families[cell.family]))
    threads = threads_per_worker(workers)
    vocab = {f: int(spec["vocab_size"]) for f, spec in store.attrs(store_path).get("families", {}).items()}
    planned, choices = batching.plan_tasks(items, batch_variants, workers, _device_kind(items, batch_variants),
                                            vocab, decide)
    for choice in choices:
        how = "one by one" if choice.k == 1 else f"batches of up to {choice.k}"
        line = f"{choice.shape}: {how} ({choice.reason}; memory allows {choice.memory_k:,})"
        if line not in told:
            echo(line)
            told.add(line)
    return [(run_cell, (store_path, t.cells[0], t.configs[0], t.family_spec, threads)) if len(t.cells) == 1 else
            (run_batch, (store_path, t.cells, t.configs, t.family_spec, threads)) for t in planned]


def _device_kind(items, batch_variants) -> str:
    """cpu or cuda, as the workers will resolve the configs' device (torch only when batching is considered)."""
    if batch_variants == 1:
        return "cpu"  # unused: nothing is batched
    names = {config.settings.device for _, config, _ in items}
    if names <= {"cpu"}:
        return "cpu"
    if names == {"cuda"}:
        return "cuda"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class _Prober:
    """batching's `decide`: a timing probe per shape, run in this process with the workers' thread count, kept for
    the rest of this call (later rounds of a learning-rate search reuse the verdict, whatever their batch size)."""

    def __init__(self, threads: int):
        self.threads, self.cache = threads, {}

    def __call__(self, items: list[tuple], k: int):
        key = batching.shape_key(items[0][1])
        if key not in self.cache:
            import torch

            from scalingkit.families import build_family
            from scalingkit.train.probe import probe

            before = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                family = build_family(items[0][0].family, items[0][2])
                self.cache[key] = probe([config for _, config, _ in items[:k]], family)
            finally:
                torch.set_num_threads(before)
        return self.cache[key]


def _run_round(store_path, tasks, workers, executor, report: FillReport, progress, echo, start) -> None:
    total_tokens = sum(_task_tokens(args) for _, args in tasks)
    runs = sum(len(args[1]) if fn is run_batch else 1 for fn, args in tasks)
    bar = _progress(total_tokens, runs, progress)
    try:
        for result in make_executor(executor, workers).run(tasks):
            outcomes = result if isinstance(result, list) else [result]
            _record(store_path, outcomes)
            for outcome in outcomes:
                report.counts[outcome.status] = report.counts.get(outcome.status, 0) + 1
                report.tokens += outcome.tokens_trained
                if outcome.status == "failed":
                    report.failures.append(f"{outcome.cell}: {outcome.message}")
                    echo(f"run failed: {outcome.cell}: {outcome.message}")
                bar.update(outcome.tokens_trained if outcome.status != "failed" else 0)
            report.seconds = time.perf_counter() - start
            bar.set_postfix_str(f"runs {sum(report.counts.values())}/{report.planned}, "
                                f"{report.tokens / max(report.seconds, 1e-9):,.0f} tok/s", refresh=True)
    finally:
        bar.close()


def _task_tokens(args: tuple) -> int:
    configs = args[2] if isinstance(args[2], tuple) else (args[2],)
    return sum(c.steps * c.settings.batch * c.settings.context for c in configs)


def _record(store_path: str, outcomes: list[Outcome]) -> None:
    """The coordinator's only write per task: the status codes of its runs, under the lock."""
    with store.lock(store_path):
        writer = store.RunWriter(store_path)
        writer.write_status([(outcome.cell, outcome.status) for outcome in outcomes])
        for outcome in outcomes:
            if outcome.status == "failed":
                writer.write_run_values(outcome.cell, {"message": outcome.message})


def _progress(total_tokens: int, runs: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total_tokens, unit="tok", unit_scale=True, disable=not enabled, dynamic_ncols=True,
                desc=f"training {runs} runs", smoothing=0.1)
