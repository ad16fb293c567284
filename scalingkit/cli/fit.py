"""`scalingkit fit` and `scalingkit compare`: read a table (the cube or a CSV), call the fit library, print, save."""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import click

DEFAULT_STORE = "store/cube.zarr"
FORMS = ("powerlaw", "exponential", "chinchilla", "kaplan", "mlp", "kernel", "expr")


def data_options(fn):
    """The flags that say where the table comes from (shared by fit and compare)."""
    options = [
        click.option("--family", default=None, help="Cube: fit only this data family."),
        click.option("--param", default=None, help="Cube: fit only this parameterisation (sp or mup)."),
        click.option("--n-convention", type=click.Choice(["total", "nonembedding"]), default="total",
                     show_default=True, help="Cube: count all parameters or the non-embedding ones as N."),
        click.option("--loss", "loss_kind", type=click.Choice(["auto", "exact", "sampled"]), default="auto",
                     show_default=True, help="Cube: fit the exact loss (floor + KL to the family's law) or the "
                     "sampled one; auto: exact for every family whose finished runs all have it."),
        click.option("--store", "store_path", default=DEFAULT_STORE, show_default=True,
                     help="Path of the cube; fits are saved in fits/ beside it."),
        click.option("--csv", "csv_path", default=None, type=click.Path(dir_okay=False),
                     help="Fit a CSV table of runs instead of the cube."),
        click.option("--n-col", default=None, help="CSV column with the parameter count N."),
        click.option("--d-col", default=None, help="CSV column with the tokens D."),
        click.option("--c-col", default=None, help="CSV column with the compute C (then D = C / 6N)."),
        click.option("--loss-col", default="loss", show_default=True, help="CSV column with the loss."),
        click.option("--group-col", "group_cols", multiple=True,
                     help="CSV column(s) that split the table into separate fits (repeatable)."),
        click.option("--drop-top", default=0, show_default=True, type=int,
                     help="Drop the K highest-loss rows before fitting."),
        click.option("--seed", default=0, show_default=True, type=int, help="Seed of every random draw."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of a table."),
        click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
                     help="Directory for the saved results (default: fits/ beside the store)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def load_table(csv_path, store_path, family, param, n_convention, n_col, d_col, c_col, loss_col, group_cols,
               drop_top, loss_kind="auto"):
    """The table to fit (DataFrame with N, D, loss and group columns; from the cube also loss_se and loss_kind)
    and the names of its group columns."""
    from scalingkit.errors import UserError
    from scalingkit.fit import table

    if csv_path:
        if family or param or loss_kind != "auto":
            raise UserError("--family/--param/--loss select from the cube; with --csv use --group-col")
        if not (n_col or d_col or c_col):
            raise UserError("with --csv, say which columns hold N and D (--n-col, and --d-col or --c-col)")
        df = table.read_csv_table(csv_path, n_col=n_col, d_col=d_col, c_col=c_col, loss_col=loss_col,
                                  group_cols=group_cols, drop_top=drop_top)
        return df, list(group_cols)
    if n_col or d_col or c_col or group_cols:
        raise UserError("--n-col/--d-col/--c-col/--group-col describe a CSV: give --csv FILE")
    from scalingkit.store import loss_table  # the cube's reader: imported only when the cube is used

    df = loss_table(store_path, family=family, param=param, n_convention=n_convention, loss=loss_kind)
    if df.empty:
        raise UserError(f"the cube at {store_path} has no finished runs to fit")
    table.validate(df)
    return table.drop_highest(df, drop_top), ["family", "param"]


def _groups(df, group_cols):
    cols = [c for c in group_cols if c in df.columns]
    if not cols:
        return [("", df)]
    return [(",".join(f"{c}={v}" for c, v in zip(cols, key if isinstance(key, tuple) else (key,))), g)
            for key, g in df.groupby(cols, sort=True)]


def _floors(csv_path, store_path) -> dict:
    """family -> (loss floor, exact | estimate | unknown) for a cube; a CSV has no floors."""
    if csv_path is not None:
        return {}
    from scalingkit.store import family_floors

    return family_floors(store_path)


def _note_floors(results, floors: dict) -> None:
    """Compare each fitted offset with its family's loss floor (fit/floor.py) where the fit did not bound it."""
    if floors:
        from scalingkit.fit.floor import note_floors

        note_floors(results, floors)


def _record_loss(results, df) -> None:
    """Every cube fit says which loss it was fitted on (exact or sampled)."""
    if "loss_kind" not in df:
        return
    kinds = df.groupby("family")["loss_kind"].first().to_dict()
    for r in results:
        family = r.provenance.get("group", {}).get("family")
        if family in kinds:
            r.provenance["loss"] = kinds[family]


def _source(csv_path, store_path, n_col, d_col, c_col, loss_col, group_cols, drop_top, n_convention, family,
            param) -> dict:
    """What the results were fitted to (the store, or the CSV with its sha256, column mapping and --drop-top), for
    their provenance and the results index (fit.results.source_record)."""
    from scalingkit.fit.results import source_record

    if csv_path:
        return source_record(csv=csv_path, n_col=n_col, d_col=d_col, c_col=c_col, loss_col=loss_col,
                             drop_top=drop_top, group_cols=group_cols)
    return source_record(store=store_path, n_convention=n_convention, family=family, param=param,
                         drop_top=drop_top)


def _figures(results, df, out_dir: Path, n_convention, floors, csv_path, n_col) -> None:
    """A figure per fit (plots/fits.py): into figures/ beside fits/ (the default), else into --out."""
    from scalingkit.plots.fits import figures_for

    folder = out_dir.parent / "figures" if out_dir.name == "fits" else out_dir
    prefix = f"fit-{Path(csv_path).stem}" if csv_path else "fit"
    for r in results:
        for path in figures_for(r, df, folder, n_convention=n_convention, floors=floors,
                                n_column=n_col if csv_path else None, prefix=prefix):
            click.echo(f"wrote {path}", err=True)


def _accepted(cls, **candidates):
    """Only the keyword settings the estimator's constructor takes (the surrogates take fewer)."""
    params = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in candidates.items() if k in params and v is not None}


def expr_options(fn):
    """The flags of --form expr: the law a user writes, its starting values, bounds and fixed parameters."""
    options = [
        click.option("--expr", "expr", default=None,
                     help="--form expr: the law in N and/or D; every other name is a parameter "
                          "(e.g. 'E + A*N**-alpha + B*D**-beta').", metavar="EXPRESSION"),
        click.option("--guess", multiple=True, metavar="NAME=VALUE,...",
                     help="--form expr: a starting value for every parameter not fixed (repeatable)."),
        click.option("--bound", "bounds", multiple=True, metavar="NAME=LO:HI,...",
                     help="--form expr: bounds; either side may be empty (repeatable)."),
        click.option("--fix", "fixed", multiple=True, metavar="NAME=VALUE,...",
                     help="--form expr: hold parameters at these values (repeatable; overrides --guess)."),
        click.option("--starts", default=None, type=click.IntRange(min=1),
                     help="--form expr: start from the guess and K-1 jittered copies of it (default 8)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _expr_settings(form, expr, guess, bounds, fixed, starts) -> dict:
    """--form expr's flags as Expr settings; an error for them with another form."""
    from scalingkit.errors import UserError

    given = [flag for flag, value in (("--expr", expr), ("--guess", guess), ("--bound", bounds), ("--fix", fixed),
                                      ("--starts", starts)) if value]
    if form != "expr":
        if given:
            raise UserError(f"{given[0]} goes with --form expr, not --form {form}")
        return {}
    from scalingkit.fit.expr import parse_bounds, parse_values

    settings = {"expr": expr, "guess": parse_values(guess, "--guess"), "bounds": parse_bounds(bounds, "--bound"),
                "fixed": parse_values(fixed, "--fix"), "starts": starts}
    return {k: v for k, v in settings.items() if v is not None}


def _check_outputs(out_dir, store_path, figures: bool) -> Path:
    """The folder results go to (and figures/ beside it) can be written, before any fitting: a file where a folder
    goes or a read-only place fails now, in one line, not after the fits."""
    from scalingkit.cli import checks
    from scalingkit.fit.results import default_out_dir

    folder = Path(out_dir) if out_dir else default_out_dir(store_path)
    flag = "--out" if out_dir else "the results folder (fits/ beside the store; --out DIR moves it)"
    checks.output_folder(folder, flag)
    if figures and folder.name == "fits":
        checks.output_folder(folder.parent / "figures", "the figures folder (figures/ beside fits/; --no-figures)")
    return folder


def _emit(results, as_json, out_dir, verbose=True):
    from scalingkit.cli import summaries
    from scalingkit.fit.results import FitCollection, save_result

    paths = [save_result(r, out_dir) for r in results]
    if as_json:
        docs = [r.to_dict() for r in results]
        click.echo(json.dumps(docs[0] if len(docs) == 1 else docs, indent=1))
    elif verbose:
        click.echo("\n\n".join(r.table() for r in results))
    else:  # a collection's summary names its file on its last line
        click.echo("\n".join(summaries.slices_table(r, saved=p) if isinstance(r, FitCollection)
                             else summaries.result_table(r) for r, p in zip(results, paths)))
    for r, p in zip(results, paths):
        if as_json or verbose or not isinstance(r, FitCollection):
            click.echo(f"saved {p}", err=True)


@click.command()
@click.option("--form", required=True, type=click.Choice(FORMS), help="The law (or surrogate) to fit.")
@data_options
@click.option("--bootstrap", default=4000, show_default=True, type=click.IntRange(min=0),
              help="Bootstrap draws (wild for 1-d forms, over runs for 2-d forms); 0 for none.")
@click.option("--interval", type=click.Choice(["bca", "percentile"]), default="bca", show_default=True,
              help="2-d forms: which bootstrap interval to report (both are saved).")
@click.option("--solver", type=click.Choice(["varpro", "lbfgs"]), default="varpro", show_default=True,
              help="2-d forms: exponent grid + NNLS + L-BFGS-B, or L-BFGS-B from Hoffmann's 4,500 starts.")
@click.option("--crosscheck", is_flag=True, help="2-d forms: also run the 4,500-start L-BFGS-B and compare.")
@click.option("--budget", default=None, type=float,
              help="2-d forms: compute (FLOPs) for N_opt, D_opt, tokens per parameter (default: largest 6ND).")
@click.option("--workers", default=None, type=click.IntRange(min=1), help="Processes (default: all cores).")
@click.option("--verbose", is_flag=True, help="Print every fit's full block (diagnostics, window, notes), not one line each.")
@click.option("--offset", type=click.Choice(["free", "floor"]), default="free", show_default=True,
              help="Cube, where a family's loss floor is exact: the offset (E) is fitted above the floor (free) or "
                   "fixed at it (floor; powerlaw, exponential and chinchilla).")
@click.option("--weights", type=click.Choice(["none", "se"]), default="none", show_default=True,
              help="Cube: weight each point by its standard error (loss_se): 1/se^2 for powerlaw and exponential, "
                   "1/(se/L)^2 (the log loss's) for chinchilla and kaplan, in the fit and every refit; none: all "
                   "alike.")
@expr_options
@click.option("--no-figures", is_flag=True, help="Do not draw a figure per fit (figures/ beside fits/, or --out).")
def fit(form, family, param, n_convention, loss_kind, store_path, csv_path, n_col, d_col, c_col, loss_col,
        group_cols, drop_top, seed, as_json, out_dir, bootstrap, interval, solver, crosscheck, budget, workers,
        verbose, offset, weights, expr, guess, bounds, fixed, starts, no_figures):
    """Fit a scaling-law form to the cube's L(N, D) (best over lr and seed) or to a CSV table.

    powerlaw/exponential: 1-d fits L(N) at every D and L(D) at every N, with wild-bootstrap BCa intervals,
    the exponents' mean and spread, and the power-against-exponential MSE ratio. chinchilla/kaplan: the 2-d
    law with bootstrap intervals over runs and the implied compute-optimal exponents a, b. expr: a law you
    write (--expr, --guess, optional --bound, --fix), same objective and bootstrap as the 2-d forms.
    Results are saved as JSON (store/fits/ beside the cube, or --out).

    \b
    Example:
      scalingkit fit --form chinchilla --csv ../shared/data/chinchilla_epoch.csv \\
        --n-col "Model Size" --c-col "Training FLOP" --loss-col loss --drop-top 5
      scalingkit fit --form expr --expr "E + A*N**-alpha + B*D**-beta" \\
        --guess E=1.7,A=400,B=400,alpha=0.3,beta=0.3 --bound alpha=0:2 --csv ...
    """
    from scalingkit.cli import checks
    from scalingkit.errors import UserError
    from scalingkit.fit import table
    from scalingkit.fit.registry import ONE_D, estimator_class

    checks.seed(seed)
    checks.workers(workers)
    checks.draws(bootstrap, "--bootstrap")
    budget = checks.budgets([budget], "--budget")[0] if budget is not None else None
    checks.at_most(starts, 10_000, "--starts", "each start is a least-squares solve from a jittered guess; the "
                   "default is 8")
    cls = estimator_class(form)  # before reading data: an unavailable form fails fast
    law = _expr_settings(form, expr, guess, bounds, fixed, starts)
    checked = cls(**law) if form == "expr" else None  # a bad expression fails fast too
    if offset == "floor" and form not in (*ONE_D, "chinchilla"):
        raise UserError(f"--offset floor fixes the offset of powerlaw, exponential and chinchilla, not {form}")
    if offset == "floor" and csv_path:
        raise UserError("--offset floor needs the cube's exact loss floors; a CSV has none")
    if weights == "se" and form not in (*ONE_D, "chinchilla", "kaplan"):
        raise UserError(f"--weights se weights powerlaw, exponential, chinchilla and kaplan fits, not {form}")
    if weights == "se" and csv_path:
        raise UserError("--weights se needs the losses' standard errors: the cube has them (loss_se), a CSV does "
                        "not; use --weights none")
    out_dir = _check_outputs(out_dir, store_path, not no_figures)
    df, group_cols = load_table(csv_path, store_path, family, param, n_convention, n_col, d_col, c_col,
                                loss_col, group_cols, drop_top, loss_kind)
    checks.draws(bootstrap, "--bootstrap", rows=len(df), per_draw=8)
    if weights == "se":
        from scalingkit.fit.weights import check_table

        check_table(df, "the cube's table")  # every point's standard error, before any fit
    floors = _floors(csv_path, store_path)
    source = _source(csv_path, store_path, n_col, d_col, c_col, loss_col, group_cols if csv_path else (), drop_top,
                     n_convention, family, param)
    if form in ONE_D:
        from scalingkit.fit.slices import fit_slices

        result = fit_slices(df, form, group_cols=group_cols, floors=floors, offset=offset, bootstrap=bootstrap,
                            seed=seed, workers=workers, weights=weights)
        _record_loss(result.results, df)
        result.provenance["loss"] = sorted(set(df["loss_kind"])) if "loss_kind" in df else "csv"
        _note_floors(result.results, floors)
        result.provenance["source"] = source
        _emit([result], as_json, out_dir, verbose)
        if not no_figures:
            _figures([result], df, out_dir, n_convention, floors, csv_path, n_col)
        if not any(r.converged for r in result.results):
            raise click.ClickException(f"every {form} fit failed (see the diagnostics above)")
        return
    min_points = getattr(checked or cls, "min_points", 1)  # an expression's: its free parameters plus one
    variables = checked.variables if checked is not None else None  # the columns the law uses
    table.require_points(df, form, min_points, two_d=checked is None, variables=variables)
    if checked is not None:
        absent = [v for v in checked.variables if v not in df]
        if absent:
            raise UserError(f"the expression uses {' and '.join(absent)}: give "
                            + " and ".join("--n-col" if v == "N" else "--d-col or --c-col" for v in absent))
    settings = _accepted(cls, bootstrap=bootstrap, seed=seed, workers=workers, interval=interval, solver=solver,
                         crosscheck=crosscheck or None, budget=budget, weights=weights)
    settings.update(law)
    results = []
    for label, g in _groups(df, group_cols):
        table.require_points(g, f"{form} [{label}]" if label else form, min_points, checked is None, variables)
        group_settings = dict(settings)
        floor, kind = floors.get(str(g["family"].iloc[0]), (None, "unknown")) if "family" in g else (None, "")
        if form == "chinchilla" and kind == "exact":  # E can never be below an exact floor: bound (or fix) it
            group_settings.update(floor=floor, offset=offset)
        elif offset == "floor":
            raise UserError(f"--offset floor: [{label}] has no exact loss floor to fix E at")
        se = {"se": g["loss_se"].to_numpy(float)} if weights == "se" else {}
        r = cls(**group_settings).fit(*(g[c].to_numpy(float) if c in g else None for c in ("N", "D", "loss")),
                                      label=label, **se)
        r.provenance["group"] = {c: str(g[c].iloc[0]) for c in group_cols if c in g.columns}
        r.provenance["source"] = source
        results.append(r)
    _record_loss(results, df)
    _note_floors(results, floors)
    _emit(results, as_json, out_dir, verbose)
    if not no_figures:
        _figures(results, df, out_dir, n_convention, floors, csv_path, n_col)
    failed = [r for r in results if not r.converged]
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(results)} {form} fit(s) failed: {failed[0].failure}")


@click.command()
@click.option("--forms", default="chinchilla,kaplan,mlp,kernel", show_default=True,
              help="Comma-separated 2-d forms to compare.")
@click.option("--splits", default=20, show_default=True, type=click.IntRange(min=1),
              help="Random 80/20 train/validation splits.")
@data_options
@click.option("--workers", default=None, type=click.IntRange(min=1), help="Processes (default: all cores).")
def compare(forms, splits, family, param, n_convention, loss_kind, store_path, csv_path, n_col, d_col, c_col,
            loss_col, group_cols, drop_top, seed, as_json, out_dir, workers):
    """Put 2-d forms side by side: mean train and validation MSE over random 80/20 splits."""
    from scalingkit.cli import checks
    from scalingkit.errors import UserError
    from scalingkit.fit import table
    from scalingkit.fit.provenance import data_hash, package_versions
    from scalingkit.fit.registry import ONE_D, check_form
    from scalingkit.fit.results import save_document

    checks.seed(seed)
    checks.workers(workers)
    checks.at_most(splits, 1000, "--splits", "each split refits every form, the MLP for seconds; the default is 20")
    names = [f.strip() for f in forms.split(",") if f.strip()]
    if not names:
        raise UserError("--forms is empty")
    for name in names:
        check_form(name)
        if name in ONE_D:
            raise UserError(f"compare takes 2-d forms; {name!r} is 1-d")
        if name == "expr":
            raise UserError("compare takes named forms; compare an expression from Python: "
                            "compare_forms(N, D, loss, forms={'mine': Expr(expr=..., guess=...), ...})")
    try:
        from scalingkit.fit.compare import compare_forms
    except ModuleNotFoundError as exc:
        if exc.name == "scalingkit.fit.compare":
            raise UserError("the comparison is not available yet (scalingkit.fit.compare is missing)") from None
        raise
    out_dir = _check_outputs(out_dir, store_path, figures=False)
    df, group_cols = load_table(csv_path, store_path, family, param, n_convention, n_col, d_col, c_col,
                                loss_col, group_cols, drop_top, loss_kind)
    source = _source(csv_path, store_path, n_col, d_col, c_col, loss_col, group_cols if csv_path else (), drop_top,
                     n_convention, family, param)
    docs, texts = [], []
    for label, g in _groups(df, group_cols):
        table.require_points(g, "compare", 2, two_d=True)
        res = compare_forms(g["N"].to_numpy(float), g["D"].to_numpy(float), g["loss"].to_numpy(float),
                            forms=names, splits=splits, seed=seed, workers=workers)
        doc = res.to_dict()
        doc["provenance"] = {"label": label, "data_sha256": data_hash({c: g[c].to_numpy() for c in ("N", "D", "loss")}),
                             "versions": package_versions(), "seed": seed, "source": source,
                             "group": {c: str(g[c].iloc[0]) for c in group_cols if c in g.columns}}
        if "loss_kind" in g:
            doc["provenance"]["loss"] = str(g["loss_kind"].iloc[0])
        docs.append(doc)
        texts.append((f"[{label}]\n" if label else "") + res.table())
    for doc in docs:
        click.echo(f"saved {save_document(doc, 'compare', out_dir)}", err=True)
    click.echo(json.dumps(docs[0] if len(docs) == 1 else docs, indent=1) if as_json else "\n\n".join(texts))


COMMANDS = [fit, compare]
