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
