"""`scalingkit optimal`: compute-optimal curves by every method, side by side, with intervals and figures."""
from __future__ import annotations

import json
from pathlib import Path

import click

DEFAULT_STORE = "store/cube.zarr"


@click.command()
@click.option("--method", "methods", multiple=True, default=("all",), show_default=True,
              help="envelope, isoflop, parametric, surrogate or all (repeatable or comma-separated).")
@click.option("--family", default=None, help="Cube: only this data family.")
@click.option("--param", default=None, help="Cube: only this parameterisation (sp or mup).")
@click.option("--store", "store_path", default=DEFAULT_STORE, show_default=True,
              help="Path of the cube; results go to fits/ and figures to figures/ beside it.")
@click.option("--csv", "csv_path", default=None, type=click.Path(dir_okay=False),
              help="A CSV table of runs (final losses only) instead of the cube.")
@click.option("--n-col", default=None, help="CSV column with the parameter count N.")
@click.option("--d-col", default=None, help="CSV column with the tokens D.")
@click.option("--c-col", default=None, help="CSV column with the compute C (then D = C / 6N).")
@click.option("--loss-col", default="loss", show_default=True, help="CSV column with the loss.")
@click.option("--drop-top", default=0, show_default=True, type=int, help="CSV: drop the K highest-loss rows.")
@click.option("--n-convention", type=click.Choice(["total", "nonembedding"]), default="total", show_default=True,
              help="N counts all parameters or the non-embedding ones, in every method and in C = 6ND.")
@click.option("--loss", "loss_kind", type=click.Choice(["auto", "exact", "sampled"]), default="auto", show_default=True,
              help="Cube: fit the exact loss (floor + KL to the family's law) or the sampled one; auto: exact for "
                   "every family whose finished runs all have it.")
@click.option("--flops", type=click.Choice(["6nd", "exact"]), default="6nd", show_default=True,
              help="Envelope: cumulative compute as tokens x 6N or the runs' exact matmul FLOPs.")
@click.option("--budget", "budgets", multiple=True, type=float,
              help="Compute (FLOPs) for N_opt, D_opt and D/N (repeatable; default: the data's largest 6ND).")
@click.option("--bootstrap", default=200, show_default=True, type=click.IntRange(min=0),
              help="Bootstrap draws: wild for L_opt(C); over runs for a, b and the budgets (envelope, IsoFLOP, "
                   "kernel surrogate, parametric); 0 for none (OLS).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of every random draw.")
@click.option("--grid", default=100, show_default=True, type=click.IntRange(min=5),
              help="Surrogate: log-spaced grid points per axis (the paper: 50 to 100).")
@click.option("--surrogates", default="mlp,kernel", show_default=True, help="Surrogate: which ones (mlp, kernel).")
@click.option("--mlp-epochs", default=5000, show_default=True, type=click.IntRange(min=1),
              help="Surrogate: the MLP's maximum epochs (early stopping usually ends sooner).")
@click.option("--mlp-hidden", default=256, show_default=True, type=click.IntRange(min=1),
              help="Surrogate: the MLP's hidden width (the paper: 256, or 512 on the Chinchilla table).")
@click.option("--isoflop-slicing", type=click.Choice(["auto", "interpolate", "bins"]), default="auto",
              show_default=True, help="IsoFLOP: interpolate each N along D (a grid sweep) or bin runs by C.")
@click.option("--isoflop-slices", default=8, show_default=True, type=click.IntRange(min=1),
              help="IsoFLOP: budgets to slice at (interpolate mode).")
@click.option("--envelope-min-fraction", default=1.0, show_default=True, type=click.FloatRange(0, 1),
              help="Envelope: skip each run's points before this share of its tokens (1: each run's final point, "
                   "where its schedule has decayed; 0: every logged point, Hoffmann's approach 1).")
@click.option("--envelope-edges", type=click.Choice(["clip", "keep"]), default="clip", show_default=True,
              help="Envelope: leave points on the smallest or largest N out of the fits (clip) or keep them.")
@click.option("--workers", default=None, type=click.IntRange(min=1), help="Processes (default: all cores).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of a table.")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Directory for the results and figures (default: fits/ and figures/ beside the store).")
@click.option("--no-figures", is_flag=True, help="Do not draw figures.")
@click.option("--verbose", is_flag=True, help="Print every result's notes (default: how many there are).")
def optimal(methods, family, param, store_path, csv_path, n_col, d_col, c_col, loss_col, drop_top, n_convention,
            loss_kind, flops, budgets, bootstrap, seed, grid, surrogates, mlp_epochs, mlp_hidden, isoflop_slicing,
            isoflop_slices, envelope_min_fraction, envelope_edges, workers, as_json, out_dir, no_figures, verbose):
    """Compute-optimal allocation by every method: gamma (L_opt = E_C + K C^-gamma), a (N_opt ~ C^a),
    b (D_opt ~ C^b), and N_opt, D_opt, D/N at the budgets, each with a 95% interval (but for the MLP
    surrogate's a, b and budget values: a bootstrap would refit the MLP per draw, too slow).

    Methods: envelope (lower envelope of every run's loss against compute), isoflop (parabola and Akima
    minima of loss against log N at fixed C; optima at the edge of the sampled N are rejected), parametric
    (closed form from the Chinchilla fit) and surrogate (MLP and kernel surrogates minimised along C = 6ND).

    \b
    Examples:
      scalingkit optimal --budget 1e12 --budget 1e13
      scalingkit optimal --method parametric --csv ../shared/data/chinchilla_epoch.csv \\
        --n-col "Model Size" --c-col "Training FLOP" --loss-col loss --drop-top 5 --budget 5.76e23
    """
    from scalingkit.cli import checks
    from scalingkit.errors import UserError
    from scalingkit.optimal import from_csv, from_cube, run_methods, save_report
    from scalingkit.optimal.pipeline import methods_from
    from scalingkit.optimal.surrogate import SURROGATES

    chosen = methods_from(methods)  # bad names fail before any data is read
    checks.seed(seed)
    checks.workers(workers)
    budgets = checks.budgets(budgets)  # finite and positive: a budget of 0 would drop its rows
    checks.draws(bootstrap, "--bootstrap")
    checks.fraction(envelope_min_fraction, "--envelope-min-fraction")
    checks.at_most(isoflop_slices, 1000, "--isoflop-slices", "budgets to slice the runs at; the default is 8")
    checks.at_most(mlp_epochs, 1_000_000, "--mlp-epochs", "the MLP stops early long before; the default is 5,000")
    kinds = [k.strip() for k in surrogates.split(",") if k.strip()]
    if "surrogate" in chosen and (not kinds or any(k not in SURROGATES for k in kinds)):
        raise UserError(f"--surrogates takes a comma-separated subset of {', '.join(SURROGATES)}, got {surrogates!r}")
    base = Path(store_path).parent  # the output folders, before any data is read
    results_dir = Path(out_dir) if out_dir else base / "fits"
    figures_dir = Path(out_dir) if out_dir else base / "figures"
    checks.output_folder(results_dir, "--out" if out_dir else "the results folder (fits/ beside the store; --out)")
    if not no_figures and figures_dir != results_dir:
        checks.output_folder(figures_dir, "the figures folder (figures/ beside the store; --out, --no-figures)")
    if csv_path:
        if family or param or loss_kind != "auto":
            raise UserError("--family/--param/--loss select from the cube; they do not apply to --csv")
        groups = from_csv(csv_path, n_col=n_col, d_col=d_col, c_col=c_col, loss_col=loss_col, drop_top=drop_top,
                          n_convention=n_convention, flops=flops)
    else:
        if n_col or d_col or c_col or drop_top:
            raise UserError("--n-col/--d-col/--c-col/--drop-top describe a CSV: give --csv FILE")
        groups = from_cube(store_path, family=family, param=param, n_convention=n_convention, flops=flops,
                           loss=loss_kind)
    rows = max(len(g.table) for g in groups)
    checks.draws(bootstrap, "--bootstrap", rows=rows, per_draw=16)
    if "surrogate" in chosen:
        _check_surrogate_sizes(grid, mlp_hidden, kinds, rows)
    settings = {"bootstrap": bootstrap, "seed": seed, "grid": grid, "surrogates": tuple(kinds),
                "mlp": {"max_epochs": mlp_epochs, "hidden": mlp_hidden}, "isoflop_slicing": isoflop_slicing,
                "isoflop_slices": isoflop_slices, "envelope_min_fraction": envelope_min_fraction,
                "envelope_edges": envelope_edges}
    reports, saved = [], []
    for inputs in groups:
        report = run_methods(inputs, chosen, budgets=list(budgets) or None, workers=workers, **settings)
        reports.append(report)
        saved.append(save_report(report, results_dir))
        if as_json or verbose:  # otherwise the table's last line names the file
            click.echo(f"saved {saved[-1]}", err=True)
        if not no_figures:
            from scalingkit.plots.optimal import plot_report

            for path in plot_report(report, inputs, figures_dir):
                click.echo(f"wrote {path}", err=True)
    if as_json:
        docs = [r.to_dict() for r in reports]
        click.echo(json.dumps(docs[0] if len(docs) == 1 else docs, indent=1))
    else:
        click.echo("\n\n".join(r.table(verbose=verbose, saved=None if verbose else path)
                               for r, path in zip(reports, saved)))
    results = [x for r in reports for x in r.results]
    if results and not any(x.converged for x in results):
        raise click.ClickException(f"every method failed: {results[0].failure}")


def _check_surrogate_sizes(grid: int, hidden: int, kinds: list, rows: int) -> None:
    """The surrogates' grid (grid x grid points on each side of the constraint, each predicted at once: the MLP's
    hidden layers per point, the kernel's row of weights per point) and the MLP itself must fit in memory."""
    from scalingkit.config import check_memory

    if "mlp" in kinds:
        check_memory(16 * (hidden * hidden + 4 * hidden) + 16 * rows * hidden,
                     f"--mlp-hidden {hidden:,}: the MLP surrogate (two hidden layers of {hidden:,})")
    per_point = 64 + (12 * hidden if "mlp" in kinds else 0) + (8 * rows if "kernel" in kinds else 0)
    check_memory(grid * grid * per_point, f"--grid {grid:,}: the surrogates' {grid:,} x {grid:,} points")


COMMANDS = [optimal]
