"""`scalingkit report` (one self-contained HTML page of a store's fits, figures and provenance) and
`scalingkit results` (the saved results, from fits/index.csv)."""
from __future__ import annotations

import json
from pathlib import Path

import click

DEFAULT_STORE = "store/cube.zarr"


def _fits_dir(store_path, fits_dir) -> Path:
    return Path(fits_dir) if fits_dir else Path(store_path).parent / "fits"


@click.command()
@click.option("--store", "store_path", default=DEFAULT_STORE, show_default=True,
              help="Path of the cube; its results are in fits/ beside it.")
@click.option("--fits", "fits_dir", default=None, type=click.Path(file_okay=False),
              help="Folder of saved results (default: fits/ beside the store).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def results(store_path, fits_dir, as_json):
    """List the saved results: fits, comparisons and compute-optimal reports, one row each (fits/index.csv),
    with what they were fitted to (store or CSV and its column mapping, the data's sha256), which loss, the key
    settings and the file. Results saved before the index existed are listed as unindexed."""
    from scalingkit.errors import UserError
    from scalingkit.fit.results import read_index

    folder = _fits_dir(store_path, fits_dir)
    if fits_dir and not folder.is_dir():
        raise UserError(f"no results folder at {folder}")
    rows = read_index(folder) if folder.is_dir() else []
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo(f"no saved results in {folder}")
        return
    click.echo(format_rows(rows))
    click.echo(f"{len(rows)} result(s) in {folder}", err=True)


def _what(row: dict) -> str:
    """family/param for a cube's result; the CSV's name and column mapping for a CSV's."""
    if row.get("n_col") or row.get("d_col") or row.get("c_col"):
        cols = ", ".join(f"{k}={row[k]!r}" for k in ("n_col", "d_col", "c_col", "loss_col") if row.get(k))
        top = f", drop-top {row['drop_top']}" if row.get("drop_top") not in ("", "0") else ""
        return f"{Path(row['source']).name} ({cols}{top})"
    fam = "/".join(x for x in (row.get("family"), row.get("param")) if x)
    return fam or Path(row.get("source") or "?").name


def format_rows(rows: list[dict]) -> str:
    table = [("time", "kind", "form", "data", "loss", "N", "sha256", "settings", "file")]
    for r in rows:
        settings = json.loads(r["settings"]) if r.get("settings") else {}
        brief = ", ".join(f"{k} {v}" for k, v in settings.items() if k in ("bootstrap", "splits", "offset", "seed"))
        table.append((r["time"].replace("+00:00", "Z"), r["kind"], r["form"], _what(r), r.get("loss") or "-",
                      r.get("n_convention") or "-", (r.get("data_sha256") or "-")[:12], brief or "-", r["file"]))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in table)


COMMANDS = [results]


@click.command()
@click.option("--store", "store_path", default=DEFAULT_STORE, show_default=True, help="Path of the cube.")
@click.option("--out", "out", default=None, type=click.Path(dir_okay=False),
              help="The HTML page to write, .html or .htm (default: report.html beside the store). An earlier report "
                   "there is replaced; any other file only with --force.")
@click.option("--markdown", "markdown", default=None, type=click.Path(dir_okay=False),
              help="Also write the report as Markdown to FILE, .md or .markdown (figures in FILE's stem + "
                   "'-figures/', whose earlier report figures are replaced). An earlier report there is replaced; "
                   "any other file only with --force.")
@click.option("--force", is_flag=True, help="Replace --out and --markdown even if they are not earlier reports.")
@click.option("--fits", "fits_dir", default=None, type=click.Path(file_okay=False),
              help="Folder of saved results to reuse and to save new ones in (default: fits/ beside the store).")
@click.option("--n-convention", type=click.Choice(["total", "nonembedding"]), default="total", show_default=True,
              help="N counts all parameters or the non-embedding ones, everywhere in the report.")
@click.option("--loss", "loss_kind", type=click.Choice(["auto", "exact", "sampled"]), default="auto",
              show_default=True, help="Which loss to fit (auto: exact for every family whose runs all have it).")
@click.option("--bootstrap", default=4000, show_default=True, type=click.IntRange(min=0),
              help="Missing 1-d power-law fits: wild-bootstrap draws per slice.")
@click.option("--bootstrap-2d", default=200, show_default=True, type=click.IntRange(min=0),
              help="A missing Chinchilla fit: bootstrap draws over runs.")
@click.option("--forms", default="chinchilla,kaplan,mlp,kernel", show_default=True,
              help="A missing comparison: the 2-d forms to compare.")
@click.option("--splits", default=20, show_default=True, type=click.IntRange(min=1),
              help="A missing comparison: random 80/20 splits.")
@click.option("--method", "methods", default="all", show_default=True,
              help="A missing compute-optimal analysis: its methods (comma-separated, or all).")
@click.option("--optimal-bootstrap", default=200, show_default=True, type=click.IntRange(min=0),
              help="A missing compute-optimal analysis: bootstrap draws.")
@click.option("--budget", "budgets", multiple=True, type=float,
              help="A missing compute-optimal analysis: budgets in FLOPs (default: the data's largest 6ND).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of every missing result's draws.")
@click.option("--workers", default=None, type=click.IntRange(min=1), help="Processes (default: all cores).")
@click.option("--no-compute", is_flag=True, help="Only reuse saved results; list the missing ones with the command "
                                                 "that would make each.")
@click.option("--no-ranks", is_flag=True, help="Leave out Fig. 3 (it rebuilds every family).")
@click.option("--verbose", is_flag=True, help="Say which saved result each part reuses and what it computes.")
def report(store_path, out, markdown, force, fits_dir, n_convention, loss_kind, bootstrap, bootstrap_2d, forms,
           splits, methods, optimal_bootstrap, budgets, seed, workers, no_compute, no_ranks, verbose):
    """Write one self-contained HTML page of a store: per family the paper's Fig. 1 panels with every 1-d fit,
    its band and residuals, the excess-loss view, the Chinchilla fit, Fig. 15 (power against exponential per
    slice), the comparison of 2-d forms (Figs. 10/17) and every compute-optimal method side by side; then Fig. 2
    (exponents against entropy) and Fig. 3 (ranks); every number with its 95% interval and provenance.

    Saved results (fits/ beside the store) whose data hash matches the store's data, saved by this scalingkit
    code, are reused; only the missing ones are computed, with the settings given here, and saved. The page says
    which were reused and which computed.

    \b
    Example:
      scalingkit report --store store/cube.zarr --out store/report.html --markdown store/report.md
    """
    from scalingkit.cli import checks
    from scalingkit.errors import UserError
    from scalingkit.fit.compare import DEFAULT_FORMS  # noqa: F401 - the comparison is available
    from scalingkit.fit.registry import ONE_D, check_form
    from scalingkit.optimal.pipeline import methods_from
    from scalingkit.plots.report import ReportSettings, write_report

    # every value checked before anything is computed (a bad budget used to fail after the fits had run)
    checks.seed(seed)
    checks.workers(workers)
    for flag, value in (("--bootstrap", bootstrap), ("--bootstrap-2d", bootstrap_2d),
                        ("--optimal-bootstrap", optimal_bootstrap)):
        checks.draws(value, flag)
    checks.at_most(splits, 1000, "--splits", "each split refits every form, the MLP for seconds; the default is 20")
    budgets = tuple(checks.budgets(budgets))
    page = Path(out) if out else Path(store_path).parent / "report.html"
    checks.report_file(page, "--out", "--out" if out else "the report (report.html beside the store; --out FILE)",
                       force)
    if markdown:
        md = Path(markdown)
        checks.report_file(md, "--markdown", "--markdown", force)
        checks.output_folder(md.with_name(md.stem + "-figures"), "--markdown (its figures folder)")
    if not no_compute:
        checks.output_folder(_fits_dir(store_path, fits_dir), "--fits" if fits_dir else
                             "the results folder (fits/ beside the store; --fits DIR)")
    form_list = tuple(f.strip() for f in forms.split(",") if f.strip())
    if not form_list:
        raise UserError("--forms is empty")
    for f in form_list:
        check_form(f)
        if f in ONE_D or f == "expr":
            raise UserError(f"--forms takes named 2-d forms; {f!r} is not one")
    settings = ReportSettings(n_convention=n_convention, loss=loss_kind, bootstrap=bootstrap,
                              bootstrap_2d=bootstrap_2d, compare_forms=form_list, splits=splits,
                              methods=tuple(methods_from(methods)), optimal_bootstrap=optimal_bootstrap,
                              budgets=tuple(budgets), seed=seed, workers=workers, ranks=not no_ranks,
                              compute=not no_compute)
    result = write_report(store_path, out, markdown, fits_dir, settings,
                          echo=(lambda m: click.echo(m, err=True)) if verbose else (lambda m: None))
    counts = {s: sum(i.status == s for i in result.items) for s in ("reused", "computed", "missing", "failed")}
    click.echo(f"report: {result.html} (" + ", ".join(f"{v} {k}" for k, v in counts.items() if v)
               + f" result(s); {result.bytes / 1e6:.2f} MB in {result.seconds:.1f} s)", err=True)
    if result.markdown:
        click.echo(f"wrote {result.markdown}", err=True)
    click.echo(str(result.html))


COMMANDS.append(report)
