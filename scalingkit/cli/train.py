"""`scalingkit train`, `status` and `table`: thin wrappers over runner, tables and store."""
from __future__ import annotations

import json
import sys

import click

DEFAULT_STORE = "store/cube.zarr"
store_option = click.option("--store", "store_path", default=DEFAULT_STORE, show_default=True,
                            help="Path of the cube (a zarr v3 directory).")


@click.command()
@click.argument("sweep_file", required=False, type=click.Path(dir_okay=False))
@click.option("--fill-missing", is_flag=True, help="Train every planned cell that is not finished yet.")
@store_option
@click.option("--workers", default=None, type=int,
              help="Worker processes, local or in a dask LocalCluster (default 1; 0: train in this process).")
@click.option("--executor", default=None, type=click.Choice(["local", "slurm", "dask"]),
              help="Where runs execute: local processes, SLURM job arrays (submitit) or dask (default: the sweep's "
                   "[executor] table, else local).")
@click.option("--partition", default=None, help="SLURM partition.")
@click.option("--gpus-per-task", default=None, type=int, help="SLURM: GPUs per job.")
@click.option("--cpus-per-task", default=None, type=int, help="SLURM: CPUs per job.")
@click.option("--mem", default=None, help="SLURM: memory per job (e.g. 32G).")
@click.option("--time", "time_limit", default=None, metavar="TIME",
              help="SLURM: time limit per job (minutes, H:MM:SS or D-HH:MM:SS; default: the partition's). A job "
                   "near its limit saves a checkpoint and is requeued.")
@click.option("--array-parallelism", default=None, type=int, help="SLURM: at most this many jobs running at once.")
@click.option("--slurm-option", "slurm_options", multiple=True, metavar="KEY=VALUE",
              help="SLURM: any other sbatch option (repeatable), e.g. account=abc, qos=high, constraint=a100.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="dask: the scheduler's address (tcp://host:8786); none: a LocalCluster of --workers processes.")
@click.option("--detach", is_flag=True,
              help="SLURM: submit and exit; a later `train --fill-missing` or `status` records what finished.")
@click.option("--device", default=None, type=click.Choice(["auto", "cpu", "cuda"]),
              help="Override the sweep's device setting.")
@click.option("--retry-failed", is_flag=True, help="Also re-run cells whose last attempt failed.")
@click.option("--no-progress", is_flag=True, help="No progress bars (the sweep's, nor those of family builds).")
@click.option("--batch-variants", default="auto", show_default=True, metavar="auto|K",
              help="Train up to K learning-rate/seed variants of one shape together in one process (1: one by one); "
                   "auto: as many as memory allows, where a short timing probe shows it pays.")
@click.option("--redo", multiple=True, metavar="RUNS",
              help="Train these finished runs again (repeatable): one run as `status --verify` names it "
                   "(er256/sp/N=7248/D=640000/lr=0.03/seed=0) or any part of one, a slice: D=640000, er256/sp/lr=0.1, "
                   "width=16/seed=0, D=3200,6400 (N is the cube's label: the non-embedding count).")
@click.option("--redo-damaged", is_flag=True,
              help="Train again every run whose stored values do not match its checksum (`status --verify`).")
@click.option("--yes", is_flag=True, expose_value=False, callback=lambda ctx, _, v: ctx.meta.__setitem__("yes", v),
              help="Train even when the runs left would take more than a day on this machine (sweep/cost.py).")
def train(sweep_file, fill_missing, store_path, workers, executor, partition, gpus_per_task, cpus_per_task, mem,
          time_limit, array_parallelism, slurm_options, scheduler, detach, device, retry_failed, no_progress,
          batch_variants, redo, redo_damaged):
    """Add SWEEP_FILE's cells to the cube and train what is missing (--fill-missing), or train chosen runs again
    (--redo, --redo-damaged).

    Without SWEEP_FILE, the sweeps the store was filled from are re-planned.
    """
    from scalingkit import progress
    from scalingkit.errors import UserError
    from scalingkit.run import runner
    from scalingkit.sweep import spec as sweep

    if no_progress:  # first: loading a sweep builds its families (tokenising, generators), here and in the workers
        progress.disable()
    if not (fill_missing or redo or redo_damaged):
        raise UserError("say --fill-missing to train the missing cells, or --redo RUNS / --redo-damaged to train "
                        "finished runs again")
    from scalingkit.cli import checks

    checks.store_for_writing(store_path)  # before the sweep is loaded: loading it builds its families (minutes)
    if batch_variants != "auto":
        try:
            batch_variants = int(batch_variants)
        except ValueError:
            batch_variants = 0
        if batch_variants < 1:
            raise UserError("--batch-variants must be auto or a whole number >= 1")
    flags = {"kind": executor, "workers": workers, "partition": partition, "gpus_per_task": gpus_per_task,
             "cpus_per_task": cpus_per_task, "mem": mem, "time": time_limit, "array_parallelism": array_parallelism,
             "options": _key_values(slurm_options, "--slurm-option"), "scheduler": scheduler}
    sw = sweep.load(sweep_file) if sweep_file else None
    from scalingkit.device import check_device

    check_device(device or (sw.settings.device if sw else None))
    if fill_missing:  # the compute left, timed here where it could exceed a day: refused without --yes
        from scalingkit.sweep import cost

        cost.confirm(store_path, sw, workers, device, retry_failed, click.get_current_context().meta.get("yes", False),
                     executor, echo=click.echo)
    report = runner.fill_missing(store_path, sw, executor=flags, retry_failed=retry_failed, device=device,
                                 progress=not no_progress, echo=click.echo, batch_variants=batch_variants,
                                 fill=fill_missing, redo=redo, redo_damaged=redo_damaged, detach=detach)
    click.echo(report.summary())
    if report.counts.get("failed"):
        sys.exit(1)


def _key_values(items, flag: str) -> dict:
    """KEY=VALUE (or a bare KEY: a flag) texts as a dict."""
    from scalingkit.errors import UserError

    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key.strip() or (eq and not value.strip()):
            raise UserError(f"{flag} {item!r}: expected KEY=VALUE (e.g. account=abc) or a bare KEY")
        out[key.strip()] = value.strip() if eq else True
    return out


n_convention_option = click.option("--n-convention", default="total", show_default=True,
                                   type=click.Choice(["total", "nonembedding"]),
                                   help="N counts all parameters (total: embedding included) or the non-embedding "
                                        "ones.")


@click.command()
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--brackets", is_flag=True,
              help="Also say, for sweeps that train their whole lr grid, whether each (family, param, N, D)'s best "
                   "learning rate is bracketed (reads every finished run's loss; sweeps with [lr_search] always show).")
@n_convention_option
@click.option("--verify", is_flag=True,
              help="Also check every finished run against its checksum and name the damaged ones (exit code 1 if any; "
                   "reads every run: seconds for 10,000).")
def status(store_path, as_json, brackets, n_convention, verify):
    """What is done, missing, diverged or failed, how much compute is left, which runs other coordinators are training
    now, and where the best learning rates stand."""
    from scalingkit.cli import tables

    summary = tables.status_summary(store_path, brackets=brackets, n_convention=n_convention, verify=verify)
    click.echo(json.dumps(summary, indent=2) if as_json else tables.format_status(summary))
    if verify and summary["verify"]["damaged"]:
        sys.exit(1)


@click.command()
@store_option
@n_convention_option
@click.option("--loss", "loss_kind", default="auto", show_default=True, type=click.Choice(["auto", "exact", "sampled"]),
              help="Which final loss: the exact loss where the family's law is known (auto: where every finished run "
                   "of the family has it, as fit does), or the sampled one.")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: one row per (family, param, N, D) with N, width, D, loss, loss_se, loss_kind, best_lr, "
                   "best_seed.")
def table(store_path, n_convention, loss_kind, as_json):
    """Print L(N, D): the best final loss over learning rates and seeds (and which lr)."""
    from scalingkit.cli import tables

    if as_json:
        click.echo(tables.loss_table_json(store_path, n_convention, loss_kind))
    else:
        click.echo(tables.format_loss_table(store_path, n_convention, loss_kind))


COMMANDS = [train, status, table]


@click.command()
@store_option
@click.option("--out", "out_dir", default=None,
              help="Directory for the figures (default: figures/ beside the store; made if missing). Figures of the "
                   "same names there are re-drawn.")
@click.option("--n-convention", default="total", show_default=True, type=click.Choice(["total", "nonembedding"]))
@click.option("--no-ranks", is_flag=True, help="Skip the probability-by-rank figure (it rebuilds every family).")
def plot(store_path, out_dir, n_convention, no_ranks):
    """Write figures of the cube (re-drawing those of the same names).

    \b
    loss-FAMILY-PARAM.png        curves, and L(N, D) against N and against D, per family and parameterisation
    ranks.png                    unigram and bigram probability against rank for every family (Fig. 3)
    exponents-entropy-CONV.png   fitted exponents alpha, beta against each family's entropy (Fig. 2, right),
                                 with the points and their provenance in a .json beside it
    """
    from pathlib import Path

    from scalingkit.plots import curves, exponents

    out = Path(out_dir) if out_dir else Path(store_path).parent / "figures"
    from scalingkit.cli import checks

    checks.output_folder(out, "--out" if out_dir else "the figures folder (figures/ beside the store; --out DIR)")
    for file in curves.plot_cube(store_path, out, n_convention):
        click.echo(f"wrote {file}")
    if not no_ranks:
        from scalingkit.plots import ranks

        file, left_out = ranks.plot_store_ranks(store_path, out / "ranks.png")
        for line in left_out:
            click.echo(f"ranks: left out {line}", err=True)
        if file:
            click.echo(f"wrote {file}")
    files, skipped = exponents.plot_store_exponents(store_path, out, n_convention)
    if files:
        for line in skipped:
            click.echo(f"exponents: no fit for {line}", err=True)
    else:
        click.echo(f"exponents: no figure: {'; '.join(skipped)}", err=True)
    for file in files:
        click.echo(f"wrote {file}")


COMMANDS.append(plot)


@click.command("coord-check")
@click.option("--widths", default="64,128,256,512", show_default=True, help="Comma-separated widths.")
@click.option("--base-width", default=64, show_default=True, type=int, help="muP base width.")
@click.option("--steps", default=4, show_default=True, type=int, help="Adam steps before measuring.")
@click.option("--lr", default=1e-2, show_default=True, type=float)
@click.option("--out", default="store/figures/coord-check.png", show_default=True,
              help="Figure to write; its extension names the format (.png, .pdf, .svg, ... as matplotlib writes). Its "
                   "folder is made if missing; an existing figure matplotlib wrote is replaced, any other file only "
                   "with --force.")
@click.option("--force", is_flag=True, help="Replace --out even if it is not a figure matplotlib wrote.")
def coord_check(widths, base_width, steps, lr, out, force):
    """muP coordinate check: RMS change of every layer's output after a few steps, SP against muP, across widths."""
    from pathlib import Path

    from scalingkit.errors import UserError
    from scalingkit.model.coordcheck import coordinate_check, plot_coordinate_check

    try:
        ws = [int(w) for w in widths.split(",")]
    except ValueError:
        raise UserError(f"--widths must be comma-separated integers, got {widths!r}") from None
    from scalingkit.cli import checks

    checks.coord_check(ws, base_width, steps, lr)  # two valid widths that fit, 1 to 1,000 steps, a finite lr
    checks.output_file(out, "--out")
    checks.figure_file(out, "--out")  # a format matplotlib writes here, before the models are trained
    checks.replaceable(out, "--out", checks.written_by_matplotlib, "a figure matplotlib wrote", force)
    results = {p: coordinate_check(p, ws, steps=steps, lr=lr, base_width=base_width) for p in ("sp", "mup")}
    for param, layers in results.items():
        for layer, values in layers.items():
            click.echo(f"{param:>4} {layer:<10} " + "  ".join(f"w={w}: {v:.3g}" for w, v in zip(ws, values)))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    plot_coordinate_check(results, ws, out)
    click.echo(f"wrote {out}")


COMMANDS.append(coord_check)
