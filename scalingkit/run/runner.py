"""`train --fill-missing`: prepare the cube, plan the missing cells, group them into batches where batching pays,
claim each task's cells just before it starts, run them, record each outcome as it arrives; repeat while a
learning-rate search asks for more.

Several coordinators may run on one store at once (started by hand, on other hosts sharing the file system): each
cell is claimed by one of them (store/claims.py), so each trains exactly once and they share the work; a coordinator
with nothing left but cells that another one (or a cluster job) is training waits for them, and takes over the cells
of one that died. Before each round it drops the claims of gone owners and adopts the runs they finished but nobody
recorded (store/adopt.py), so a run is never trained twice. The executor (executors.py) runs the tasks: local
processes and dask pull tasks one at a time; SLURM submits a round at once as a job array whose jobs own their
claims (slurm.py). A task's checkpoint is removed once its runs are recorded done or diverged.
"""
from __future__ import annotations

import re
import time
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path


from scalingkit import store
from scalingkit.device import threads_per_worker
from scalingkit.run.executors import make_executor
from scalingkit.run.worker import Outcome, run_batch, run_cell
from scalingkit.store import claims
from scalingkit.sweep import batching, plan

POLL_SECONDS = (0.2, 2.0)  # waiting for another coordinator's cells: first and longest pause between looks


@dataclass
class FillReport:
    planned: int = 0  # cells this coordinator claimed
    counts: dict = field(default_factory=lambda: {"done": 0, "diverged": 0, "failed": 0})
    failures: list = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    elsewhere: set = field(default_factory=set)  # cells planned here that another coordinator trained
    lost: int = 0  # cells whose claim was gone when their outcome came: not recorded
    adopted: int = 0  # runs finished by workers whose coordinator was gone, recorded here (not trained again)
    already: int = 0  # of the counts: runs a worker found finished already (recorded, not trained again)
    resumed: int = 0  # runs that went on from a checkpoint
    cancelled: int = 0  # runs whose SLURM job was cancelled: left missing, checkpoint kept
    submitted: int = 0  # runs submitted to the cluster and left running (--detach)
    jobs: list = field(default_factory=list)  # SLURM job arrays submitted
    grown_lrs: list = field(default_factory=list)  # lr labels added past a grid for a learning-rate search
    lr_states: dict = field(default_factory=dict)  # the searches' outcome: state -> (family, param, N, D) count

    def summary(self) -> str:
        """One line: what was trained (or why nothing), then how the learning-rate searches stand."""
        line = self._trained()
        if self.lr_states or self.grown_lrs:
            search = ", ".join(f"{n} {state}" for state, n in self.lr_states.items())
            if self.grown_lrs:
                search += (f"{', ' if search else ''}the cube grew lr +{len(self.grown_lrs)} past the grid "
                           f"({', '.join(f'{lr:g}' for lr in self.grown_lrs)})")
            line += f"; learning-rate search: {search} (`scalingkit status` shows each N, D)"
        return line

    def _trained(self) -> str:
        others = (f"{_runs(len(self.elsewhere))} trained by another coordinator on this store"
                  if self.elsewhere else "")
        extra = []
        if self.adopted:
            extra.append(f"adopted {_runs(self.adopted)} finished while no coordinator watched (not trained again)")
        if self.submitted:
            extra.append(f"{_runs(self.submitted)} submitted as SLURM job array {', '.join(self.jobs)} and left "
                         "running (--detach): `scalingkit status` shows them, `scalingkit train --fill-missing` "
                         "records them")
        if self.planned == self.submitted:
            if not self.planned:
                head = (f"nothing trained here: {others}" if others else
                        "nothing to train: every planned cell is finished")
                return "; ".join([head] + extra) if (others or not extra) else "; ".join(extra)
            return "; ".join(extra + ([others] if others else []))
        c = self.counts
        rate = self.tokens / self.seconds if self.seconds else 0.0
        line = (f"trained {sum(c.values())}/{self.planned - self.submitted} runs: {c['done']} done, "
                f"{c['diverged']} diverged, {c['failed']} failed; {self.tokens:,} tokens in {self.seconds:.1f} s "
                f"({rate:,.0f} tokens/s)")
        if self.already:
            line += f"; {_runs(self.already)} of them found finished already (recorded, not trained again)"
        if self.resumed:
            line += f"; {_runs(self.resumed)} resumed from a checkpoint"
        if self.cancelled:
            line += (f"; {_runs(self.cancelled)} cancelled on the cluster (left missing, checkpoint kept: "
                     "`train --fill-missing` resumes them)")
        if self.lost:
            line += f"; {_runs(self.lost)} lost the claim (not recorded: left missing)"
        return "; ".join([line] + extra + ([others] if others else []))


def fill_missing(store_path, sweep=None, workers: int = 1, executor="local", retry_failed: bool = False,
                 device: str | None = None, progress: bool = True, echo=print, batch_variants="auto",
                 decide=None, fill: bool = True, redo=(), redo_damaged: bool = False,
                 detach: bool = False) -> FillReport:
    """Train every planned cell that is not finished. With `sweep`, its cells are added to the cube and only they are
    trained; without, every sweep stored in the cube is re-planned. Other coordinators may work on the same store at
    the same time: each cell is trained by exactly one. batch_variants: "auto", or at most this many cells of one
    shape per batch (1: no batching); decide: auto's timing probe (default: train/probe.py, in this process).
    Sweeps that search learning rates train in rounds: each round plans what the results so far ask for.
    executor: "local", "slurm", "dask" (with `workers`), or an ExecutorSettings. detach (SLURM): submit the first
    round and return without waiting; a later call (or `status`) records what finished.

    redo: texts naming finished runs to train again (plan.select), redo_damaged: also every run whose values do not
    match its checksum (store.verify.verify); fill=False trains only those. A run to redo is claimed like any other, and
    set `missing` under the lock as it is claimed (so a kill leaves it missing, for the next --fill-missing), its
    checksum and checkpoints cleared, then trained and recorded; nothing else is touched."""
    from scalingkit.errors import UserError
    from scalingkit.run.executors import ExecutorSettings

    store_path = str(Path(store_path).absolute())  # workers elsewhere (SLURM, dask) open it by this path
    if sweep is None and not Path(store_path, "zarr.json").exists():
        raise UserError(f"no cube at {store_path}: give a sweep file (scalingkit train SWEEP.toml --fill-missing)")
    settings = executor_settings(executor, workers, [sweep] if sweep is not None else plan.stored_sweeps(store_path))
    if detach and settings.kind != "slurm":
        raise UserError("--detach needs --executor slurm: local and dask workers end with the coordinator")
    ex = make_executor(settings, store_path=store_path)
    if Path(store_path, "zarr.json").exists():  # an older schema: new arrays, and checksums of its finished runs
        store.upgrade_and_seal(store_path, echo)
    if sweep is not None:
        info = plan.prepare(store_path, sweep)
        if info["created"]:
            echo(f"created {store_path}")
        elif info["added"]:
            echo("grew the cube: " + ", ".join(f"{d} +{len(v)}" for d, v in info["added"].items()))
        if info.get("replaced"):
            echo(f"sweep {info['replaced']!r} changed since the store recorded it: its new version replaces the old "
                 "(every stored run stays in the cube)")
    sweeps = [sweep] if sweep is not None else plan.stored_sweeps(store_path)
    report = FillReport()
    again = _redo_cells(store_path, sweeps, redo, redo_damaged, fill, echo) if redo or redo_damaged else {}
    owner = claims.register(store_path, claims.this_process())
    try:
        with claims.Heartbeat(store_path, owner):
            _fill(store_path, sweeps, owner, report, settings.workers, ex, retry_failed, device, progress, echo,
                  batch_variants, decide or _Prober(threads_per_worker(settings.workers)), fill, again, detach)
    finally:
        claims.retire(store_path, owner)  # after the workers have stopped: nothing can write these cells now
    if any(sw.lr_search is not None for sw in sweeps) and not report.submitted:
        rows = plan.lr_optima(store_path, sweeps)
        for row in rows:  # said on the summary's line (FillReport.summary)
            report.lr_states[row["state"]] = report.lr_states.get(row["state"], 0) + 1
    return report


def executor_settings(executor, workers: int, sweeps: list):
    """ExecutorSettings from `executor` (a kind, a dict of the command line's flags, or ExecutorSettings) over the
    sweeps' [executor] table: the sweep's given; else the stored sweeps' if they agree. A table whose kind is not the
    executor asked for is not used (the flags override it)."""
    from scalingkit.errors import UserError
    from scalingkit.run.executors import ExecutorSettings

    if isinstance(executor, ExecutorSettings):
        return executor
    flags = dict(executor) if isinstance(executor, dict) else {"kind": executor, "workers": workers}
    tables = []
    for sw in sweeps:
        if sw is not None and sw.executor and sw.executor not in tables:
            tables.append(sw.executor)
    if flags.get("kind") is not None:
        tables = [t for t in tables if t.get("kind", "local") == flags["kind"]]
    if len(tables) > 1:
        raise UserError("the store's sweeps name different [executor] profiles: give the sweep file, or say "
                        "--executor and its settings")
    return ExecutorSettings.resolve(tables[0] if tables else None, **flags)


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _redo_cells(store_path, sweeps, redo, redo_damaged: bool, fill: bool, echo) -> dict:
    """{cell: sweep} of the finished runs (done, diverged or failed) that `redo` names and, with redo_damaged, of
    the damaged ones, each with a sweep that plans it (for its settings)."""
    import numpy as np

    from scalingkit.errors import UserError

    coords, codes = store.read_status(store_path)
    group = store.open_group(store_path)
    widths = {int(n): int(w) for n, w in zip(group["N"][:], group["d_model"][:])}
    wanted = np.zeros(codes.shape, dtype=bool)
    for text in redo:
        wanted |= plan.select(coords, widths, text)
    if redo_damaged:
        from scalingkit.store import verify

        found = verify.verify(store_path)
        if found.damaged:
            echo(f"{_runs(len(found.damaged))} damaged of {found.checked:,} checked: " +
                 "; ".join(str(d) for d in found.damaged[:10]) + ("; ..." if len(found.damaged) > 10 else ""))
        else:
            echo(f"no damaged run: {found.checked:,} finished runs match their checksums")
        index = {d: {plan._key(d, x): i for i, x in enumerate(coords[d])} for d in store.RUN_DIMS}
        for damage in found.damaged:
            wanted[tuple(index[d][plan._key(d, x)] for d, x in zip(store.RUN_DIMS, damage.cell.labels()))] = True
    finished = wanted & (codes != store.STATUS_CODE["missing"])
    owner = plan.sweep_of(store_path, sweeps, coords, codes)
    unplanned = finished & (owner < 0)
    if (wanted & ~finished).any():
        echo(f"redo: {_runs(int((wanted & ~finished).sum()))} named never finished (missing): "
             "--fill-missing trains them")
    if unplanned.any():
        echo(f"redo: {_runs(int(unplanned.sum()))} named are planned by no sweep trained here: their settings are "
             "unknown, so they are left as they are")
    cells = {}
    for pos in np.argwhere(finished & (owner >= 0)):
        pos = tuple(pos)
        cells[store.Cell(*(_plain(coords[d][i]) for d, i in zip(store.RUN_DIMS, pos)))] = sweeps[owner[pos]]
    if redo and not cells and not fill and not redo_damaged:
        raise UserError(f"--redo {' '.join(redo)}: no finished run to train again")
    if cells:
        names = sorted(cells)
        echo(f"redo: {_runs(len(cells))}: " + "; ".join(map(str, names[:10])) + ("; ..." if len(names) > 10 else ""))
    return cells


def _plain(x):
    return str(x) if isinstance(x, str) else float(x) if isinstance(x, float) else int(x)


def _fill(store_path, sweeps, owner, report: FillReport, workers, ex, retry_failed, device, progress, echo,
          batch_variants, decide, fill: bool = True, again: dict | None = None, detach: bool = False) -> None:
    """Rounds of planning, claiming and training until nothing is left: the missing cells (fill) and the cells to
    train again (again: cell -> sweep, see _redo_cells)."""
    tried: set = set()  # cells claimed by this call: a failing cell is not retried round after round
    told: set = set()  # shapes whose batching choice was printed
    todo_codes = [store.STATUS_CODE["missing"]] + ([store.STATUS_CODE["failed"]] if retry_failed else [])
    again = dict(again or {})
    start, pause, waited_for = time.perf_counter(), POLL_SECONDS[0], None
    while True:
        adopted = claims.expire(store_path)  # gone owners' claims dropped; what their workers finished, recorded
        if adopted:
            report.adopted += len(adopted)
            report.elsewhere -= set(adopted)  # finished by a job or worker of a gone coordinator: counted as adopted
            echo(f"adopted {_runs(len(adopted))} that finished while no coordinator watched: "
                 + _statuses(adopted.values()) + " (not trained again)")
        missing = []
        if fill:
            grown = plan.grow_for_searches(store_path, sweeps)  # lrs past a grid that a search wants now
            report.grown_lrs += grown  # said on the summary's line
            missing = plan.missing_cells(store_path, sweeps, retry_failed=retry_failed)
        listed = {cell for cell, _ in missing}
        missing = [(cell, sw) for cell, sw in missing + [(c, sw) for c, sw in again.items() if c not in listed]
                   if cell not in tried]
        report.elsewhere.update(cell for cell, _ in missing)  # less what this call trains, at the end
        others = claims.held_by_others(store_path, owner)
        for cell in [c for c in again if c not in tried and claims.cell_key(c) in others]:
            del again[cell]  # another coordinator is training it again already
        busy = [cell for cell, _ in missing if claims.cell_key(cell) in others]
        todo = [(cell, sw) for cell, sw in missing if claims.cell_key(cell) not in others]
        if not todo:
            if not busy:
                break
            holders = sorted({str(o) for k, o in others.items() if o is not None and k in
                              {claims.cell_key(c) for c in busy}})
            if detach:
                echo(f"{_runs(len(busy))} queued or running elsewhere ({_holders(holders)}): not waited for "
                     "(--detach)")
                report.elsewhere -= set(busy)
                break
            # another coordinator or cluster job trains these: wait for its results (a search's next round may need
            # them), and take them over if it dies
            if waited_for != len(busy):
                echo(f"waiting for {_runs(len(busy))} that another coordinator or cluster job is training "
                     f"({_holders(holders)})")
                waited_for = len(busy)
            time.sleep(pause)
            pause = min(2 * pause, POLL_SECONDS[1])
            continue
        waited_for = None
        tasks = _tasks(store_path, todo, workers, device, batch_variants, decide, echo, told)
        claimed_before = report.planned
        _run_round(store_path, owner, tasks, workers, ex, report, progress, start, todo_codes, tried, echo, again,
                   detach)
        if detach and report.planned > claimed_before:
            break  # submitted: the jobs run on without this process (a search's next round waits for their results)
        if report.planned == claimed_before:  # another coordinator took every cell first: look again shortly
            time.sleep(pause)
            pause = min(2 * pause, POLL_SECONDS[1])
        else:
            pause = POLL_SECONDS[0]
    report.elsewhere -= tried
    report.seconds = time.perf_counter() - start


def _holders(holders: list) -> str:
    return ", ".join(holders[:4]) + (f", and {len(holders) - 4} more" if len(holders) > 4 else "")


def _statuses(values) -> str:
    counts: dict = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def _tasks(store_path, todo, workers, device, batch_variants, decide, echo, told: set) -> list[batching.Task]:
    """The round's tasks: one per cell, or one per batch of cells of one shape. "auto" follows the choices the store
    recorded per shape and records the ones it makes."""
    items = []
    for cell, sw in todo:
        config = sw.run_config(cell)
        if device is not None:
            config = replace(config, settings=replace(config.settings, device=device))
        items.append((cell, config, sw.families[cell.family]))
    attrs = store.attrs(store_path)
    vocab = {f: int(spec["vocab_size"]) for f, spec in attrs.get("families", {}).items()}
    kind = _device_kind(items, batch_variants)
    recorded = attrs.get("batching", {}).get(kind, {})
    planned, choices = batching.plan_tasks(items, batch_variants, workers, kind, vocab, decide, recorded=recorded)
    fresh = [c for c in choices if c.shape not in told]  # once per shape: later rounds follow the same choice
    told.update(c.shape for c in fresh)
    for line in _choice_lines(fresh):
        echo(line)
    _record_choices(store_path, kind, [c for c in choices if c.new])
    return planned


def _how(choice) -> str:
    return ("one by one" if not choice.stacked else f"batches of up to {choice.k}" if choice.k > 1
            else "batched, one variant a batch")


def _choice_lines(choices: list) -> list[str]:
    """One line per shape; beyond 3 shapes, one line per way of training them (a sweep of ten widths would
    otherwise open with ten lines), the probe's speed-ups and the memory limits as ranges."""
    if len(choices) <= 3:
        return [f"{c.shape}: {_how(c)} ({c.reason}; memory allows {c.memory_k:,})" for c in choices]
    groups: dict = {}
    for c in choices:
        groups.setdefault((_how(c), c.recorded), []).append(c)
    lines = []
    for (how, _), group in groups.items():
        names = [group[0].shape] + [c.shape.rsplit("/", 1)[-1] if c.shape.rsplit("/", 1)[0] ==
                                    group[0].shape.rsplit("/", 1)[0] else c.shape for c in group[1:]]
        speeds = [float(x) for c in group for x in re.findall(r"(\d+(?:\.\d+)?)x one by one", c.reason)]
        if len(speeds) == len(group) and len(group) > 1:
            why = f"probe: {min(speeds):.2f}x-{max(speeds):.2f}x as fast as one by one"
        else:
            why = group[0].reason + (f"; {len(group) - 1} more alike" if len(group) > 1 else "")
        memory = sorted({c.memory_k for c in group})
        allows = f"{memory[0]:,}" if len(memory) == 1 else f"{memory[0]:,}-{memory[-1]:,}"
        lines.append(f"{', '.join(names)}: {how} ({why}; memory allows {allows})")
    return lines


def _record_choices(store_path, kind: str, choices: list) -> None:
    """Keep what "auto" decided per shape in the store's `batching` attribute (per device kind), so that the next
    run trains those shapes the same way instead of probing again. The first choice recorded for a shape stands."""
    if not choices:
        return
    with store.lock(store_path):
        table = dict(store.attrs(store_path).get("batching", {}))
        shapes = dict(table.get(kind, {}))
        at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for c in choices:
            shapes.setdefault(c.shape, {"stacked": c.stacked, "k": c.k, "reason": c.reason, "at": at})
        if shapes != table.get(kind):
            store.set_attrs(store_path, batching={**table, kind: shapes})


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


def _run_round(store_path, owner, tasks: list[batching.Task], workers, ex, report: FillReport, progress, start,
               todo_codes, tried: set, echo, again: dict, detach: bool = False) -> None:
    bar = _progress(sum(_task_tokens(t.configs) for t in tasks), sum(len(t.cells) for t in tasks), progress)
    recorder = Recorder(store_path, report, bar, echo, start)
    threads = threads_per_worker(workers)
    claimable = _still_to_train(store_path, todo_codes, again)
    try:
        if getattr(ex, "jobs", False):
            from scalingkit.run import slurm

            slurm.run_round(store_path, tasks, ex, threads, claimable, again, tried, report, recorder, echo, detach,
                            begin_redo)
            return
        tickets: dict = {}  # cell -> claims.Ticket, for the cells this coordinator claimed and has not recorded yet

        def claimed():
            """The round's tasks, each taken only when a worker is free: its cells claimed just then (those another
            coordinator finished or holds meanwhile are left out)."""
            for task in tasks:
                with store.lock(store_path):
                    got = claims.claim(store_path, owner, task.cells, claimable)
                    begin_redo(store_path, [cell for cell in got if cell in again])
                if not got:
                    continue
                keep = [i for i, cell in enumerate(task.cells) if cell in got]
                cells, configs = tuple(task.cells[i] for i in keep), tuple(task.configs[i] for i in keep)
                tickets.update(got)
                tried.update(cells)
                report.planned += len(cells)
                mine = {cell: got[cell] for cell in cells}
                if len(cells) == 1:
                    yield run_cell, (store_path, cells[0], configs[0], task.family_spec, threads, mine, task.stacked)
                else:
                    yield run_batch, (store_path, cells, configs, task.family_spec, threads, mine, True)

        with closing(ex.run(claimed())) as results:
            for result in results:
                outcomes = result if isinstance(result, list) else [result]
                recorder.record(outcomes, tickets)
                for outcome in outcomes:
                    tickets.pop(outcome.cell, None)
    finally:
        bar.close()


def begin_redo(store_path, cells) -> None:
    """Runs to train again, just claimed (under the lock): set missing (from now on no read uses their old values,
    and a kill leaves them missing for the next --fill-missing), their old checksums and checkpoints cleared (nothing
    adopts or resumes the old run)."""
    if cells:
        from scalingkit.store import adopt

        store.RunWriter(store_path).write_status([(cell, "missing") for cell in cells])
        adopt.clear_checksums(store_path, cells)
        adopt.remove_checkpoints(store_path, cells)


class Recorder:
    """Records tasks' outcomes as they arrive (the coordinator's only write per task, under the lock: _record),
    counts them in the report and the progress bar, and removes a task's checkpoint once all its runs are done or
    diverged (a failed or lost run keeps it, to resume from)."""

    def __init__(self, store_path, report: FillReport, bar, echo, start: float):
        self.store_path, self.report, self.bar, self.echo, self.start = store_path, report, bar, echo, start

    def record(self, outcomes: list[Outcome], tickets: dict) -> set:
        from scalingkit.store import adopt

        recorded = _record(self.store_path, outcomes, tickets)
        report = self.report
        now = None
        for outcome in outcomes:
            if outcome.status == "cancelled":  # its SLURM job was cancelled: left missing, its checkpoint kept
                report.cancelled += 1
                continue
            if outcome.cell not in recorded:
                if outcome.status in ("done", "diverged", "failed"):  # adopted by a status or train meanwhile?
                    now = now or _status_now(self.store_path)
                    if now.get(outcome.cell) != outcome.status:
                        report.lost += 1
                        continue
                else:
                    report.lost += 1
                    continue
            report.counts[outcome.status] = report.counts.get(outcome.status, 0) + 1
            report.tokens += outcome.tokens_trained
            report.already += bool(outcome.already)
            report.resumed += bool(outcome.resumed_at)
            if outcome.status == "failed":
                report.failures.append(f"{outcome.cell}: {outcome.message}")
                self.echo(f"run failed: {outcome.cell}: {outcome.message}")
            self.bar.update(outcome.tokens_trained if outcome.status != "failed" else 0)
        if outcomes and all(o.status in ("done", "diverged") for o in outcomes):
            adopt.remove_checkpoints(self.store_path, [o.cell for o in outcomes])
        report.seconds = time.perf_counter() - self.start
        self.bar.set_postfix_str(f"runs {sum(report.counts.values())}/{report.planned - report.submitted}, "
                                 f"{report.tokens / max(report.seconds, 1e-9):,.0f} tok/s", refresh=True)
        return recorded


def _status_now(store_path) -> dict:
    """{Cell: status} of every run, read now (rarely: only for outcomes whose claims were gone)."""
    import numpy as np

    coords, codes = store.read_status(store_path)
    out = {}
    for pos in np.argwhere(codes != store.STATUS_CODE["missing"]):
        cell = store.Cell(*(_plain(coords[d][i]) for d, i in zip(store.RUN_DIMS, pos)))
        out[cell] = store.STATUS[int(codes[tuple(pos)])]
    return out


def _still_to_train(store_path, todo_codes, again=()):
    """claims.claim's test, under the lock: a cell is claimable while its status is still one to train (another
    coordinator may have finished it since this round was planned), or if it is one to train again."""
    where: dict = {}  # label -> position, per dimension: growth only appends labels, so positions stay valid

    def check(cells, fresh=False):
        if fresh or not where:
            coords, codes = store.read_status(store_path)
            where.clear()
            where.update({d: {plan._key(d, x): i for i, x in enumerate(coords[d])} for d in store.RUN_DIMS})
        else:  # the status array alone, read afresh (one small file and its chunk, not the whole group's metadata)
            codes = _status_codes(store_path)
        out = []
        for cell in cells:
            idx = tuple(where[d].get(plan._key(d, x)) for d, x in zip(store.RUN_DIMS, cell.labels()))
            if None in idx or any(i >= n for i, n in zip(idx, codes.shape)):
                if not fresh:  # a label added since the positions were read: read them again, once
                    return check(cells, fresh=True)
                out.append(False)  # not in the store at all: nothing to claim
                continue
            out.append(int(codes[idx]) in todo_codes or cell in again)
        return out

    return check


def _status_codes(store_path):
    import numpy as np
    import zarr

    return np.asarray(zarr.open_array(str(Path(store_path) / "status"), mode="r", zarr_format=3)[:])


def _task_tokens(configs) -> int:
    return sum(c.steps * c.settings.batch * c.settings.context for c in configs)


def _record(store_path: str, outcomes: list[Outcome], tickets: dict) -> set:
    """The coordinator's only write per task, under the lock: the status codes of its runs whose claims are still
    its own (a claim taken over meanwhile is the new holder's to record; a claim of a job that has ended is still
    its submitter's to record while nobody took it over), then it releases them. Returns the cells recorded."""
    with store.lock(store_path):
        mine = [o for o in outcomes if o.status in ("done", "diverged", "failed") and o.cell in tickets
                and claims.holds(store_path, o.cell, tickets[o.cell], alive=False)]
        if mine:
            writer = store.RunWriter(store_path)
            writer.write_status([(outcome.cell, outcome.status) for outcome in mine])
            for outcome in mine:
                if outcome.status == "failed":
                    writer.write_run_values(outcome.cell, {"message": outcome.message})
        claims.release(store_path, {o.cell: tickets[o.cell] for o in outcomes if o.cell in tickets})
    return {o.cell for o in mine}


def _progress(total_tokens: int, runs: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total_tokens, unit="tok", unit_scale=True, disable=not enabled, dynamic_ncols=True,
                desc=f"training {runs} runs", smoothing=0.1, leave=False)  # the round's summary line stays
