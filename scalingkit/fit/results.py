"""Saving and loading fits: one JSON file per result, beside the cube (store/fits/) unless told otherwise.

A file holds either one `FitResult` (kind "fit") or a `FitCollection` (kind "collection": the 1-d fits of a
table, one per fixed D and per fixed N, with their summary). The name is derived from the form, the data hash
and the settings, so re-running the same fit on the same data rewrites the same file.

Every save also records the result in `index.csv` in the same folder (one row per saved file: when, what kind,
the form or methods, the data source and its hash, the family/param or the CSV's column mapping, --drop-top,
which loss, the key settings, the file), so results can be found again (`scalingkit results`, `read_index`).
compare's and optimal's saves write their rows through the same `record_in_index`.
"""
from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import math
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scalingkit.errors import UserError
from scalingkit.fit.base import FitResult, jsonable


@dataclass
class FitCollection:
    """Several fits of one form over slices of a table, with a summary (e.g. mean and spread of exponents)."""

    form: str
    results: list[FitResult]
    summary: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return bool(self.results) and all(r.converged for r in self.results)

    def verdict_counts(self) -> dict:
        """Slices by verdict (fit/verdict.py) over the whole collection; empty where no fit has one."""
        calls = [r.diagnostics["verdict"].get("verdict") for r in self.results
                 if r.converged and isinstance(r.diagnostics.get("verdict"), dict)]
        if not calls:
            return {}
        known = ("power law", "exponential", "transient", "inconclusive")
        return {k: calls.count(k) for k in (*known, *sorted(set(calls) - set(known)))}

    def table(self) -> str:
        blocks = [r.table() for r in self.results]
        lines = [f"summary ({self.form})"]
        for key, s in self.summary.items():
            text = f"{key}: " + (", ".join(f"{k}={_fmt(v)}" for k, v in s.items()) if isinstance(s, dict) else _fmt(s))
            lines += textwrap.wrap(text, 110, initial_indent="  ", subsequent_indent="    ")
        counts = self.verdict_counts()
        if counts:
            lines.append(f"  slices by verdict: {_fmt(counts)[1:-1]}")
        return "\n\n".join(blocks + ["\n".join(lines)])

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict:
        return jsonable({"kind": "collection", "form": self.form, "results": [r.to_dict() for r in self.results],
                         "summary": self.summary, "provenance": self.provenance})

    @classmethod
    def from_dict(cls, d: dict) -> "FitCollection":
        return cls(d["form"], [FitResult.from_dict(r) for r in d["results"]], d.get("summary", {}),
                   d.get("provenance", {}))


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"  # inf prints as inf, as in fit/base.py
    if isinstance(v, dict):  # e.g. slices by verdict: (power law 3, exponential 1, ...)
        return "(" + ", ".join(f"{k} {_fmt(x)}" for k, x in v.items()) + ")"
    return str(v)


def default_out_dir(store: str | Path) -> Path:
    """store/cube.zarr -> store/fits"""
    return Path(store).parent / "fits"


def result_filename(result) -> str:
    prov = result.provenance
    data = str(prov.get("data_sha256", "nodata"))[:12]
    settings = json.dumps(jsonable(prov.get("settings", {})), sort_keys=True)
    label = _clean(prov.get("label", ""))
    tag = hashlib.sha256((settings + label).encode()).hexdigest()[:8]
    return f"{result.form}-{label + '-' if label else ''}{data}-{tag}.json"


def _clean(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in str(label))[:60].strip("-")


def save_result(result, out_dir: str | Path) -> Path:
    return _write(result.to_dict(), Path(out_dir) / result_filename(result))


def save_document(doc: dict, kind: str, out_dir: str | Path) -> Path:
    """Any other JSON-able record (e.g. a model comparison), named by kind, label and data hash."""
    prov = doc.get("provenance", {})
    label = _clean(prov.get("label", ""))
    name = f"{kind}-{label + '-' if label else ''}{str(prov.get('data_sha256', 'nodata'))[:12]}.json"
    return _write(jsonable(doc), Path(out_dir) / name)


def _write(doc: dict, path: Path) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    except OSError as exc:
        raise UserError(f"cannot write the result to {path.parent}: {exc.strerror or exc}") from None
    record_in_index(doc, path)
    return path


def load_result(path: str | Path):
    """Inverse of save_result: a FitResult or a FitCollection, with `predict` working again."""
    try:
        d = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"no fit result at {path}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read fit result {path}: {exc}") from None
    if d.get("kind") == "collection":
        return FitCollection.from_dict(d)
    if d.get("kind") == "fit":
        return FitResult.from_dict(d)
    raise UserError(f"{path} is not a scalingkit fit result")


def summarise(values) -> dict:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    return {"n": int(v.size), "mean": float(v.mean()) if v.size else np.nan,
            "std": float(v.std(ddof=1)) if v.size > 1 else np.nan,
            "min": float(v.min()) if v.size else np.nan, "max": float(v.max()) if v.size else np.nan}


# ---------------------------------------------------------------- the results index (index.csv beside the files)

INDEX_NAME = "index.csv"
INDEX_COLUMNS = ("time", "kind", "form", "source", "source_sha256", "data_sha256", "family", "param", "n_col",
                 "d_col", "c_col", "loss_col", "drop_top", "loss", "n_convention", "settings", "file")
# The settings worth a glance in a listing (the file holds them all).
KEY_SETTINGS = ("bootstrap", "seed", "offset", "solver", "interval", "confidence", "splits", "budgets", "flops",
                "envelope_edges", "isoflop_slicing", "grid", "surrogates", "expr", "fixed", "bounds")
SOURCE_FIELDS = ("n_col", "d_col", "c_col", "loss_col", "drop_top")


def file_sha256(path) -> str:
    """sha256 of a file's bytes ("" when it cannot be read)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return ""
    return h.hexdigest()


def source_record(store=None, csv=None, *, n_col=None, d_col=None, c_col=None, loss_col=None, drop_top=0,
                  group_cols=(), n_convention=None, family=None, param=None) -> dict:
    """What a result was fitted to, for its provenance ("source"): the store's path, or the CSV's path, its sha256,
    the column mapping and --drop-top. Set it as result.provenance["source"] before saving."""
    if csv is not None:
        out = {"csv": str(csv), "csv_sha256": file_sha256(csv), "n_col": n_col, "d_col": d_col, "c_col": c_col,
               "loss_col": loss_col, "drop_top": int(drop_top or 0)}
        if group_cols:
            out["group_cols"] = list(group_cols)
        return out
    out = {"store": str(store), "drop_top": int(drop_top or 0)}
    out.update({k: v for k, v in (("n_convention", n_convention), ("family", family), ("param", param)) if v})
    return out


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _groups_of(doc: dict) -> list[dict]:
    """The (family, param) groups a saved document covers."""
    prov = doc.get("provenance", {})
    if doc.get("kind") == "collection":
        groups = [r.get("provenance", {}).get("group", {}) for r in doc.get("results", [])]
    elif doc.get("kind") == "optimal-report":
        src = prov.get("source", {})
        groups = [{"family": src.get("family"), "param": src.get("param")}]
    else:
        groups = [prov.get("group") or _label_group(prov.get("label", ""))]
    return [g for g in groups if g]


def _label_group(label: str) -> dict:
    """'family=er,param=sp' -> {'family': 'er', 'param': 'sp'} (compare's labels); {} for anything else."""
    pairs = [p.split("=", 1) for p in str(label).split(",") if "=" in p]
    return {k: v for k, v in pairs if k in ("family", "param")}


def _joined(values) -> str:
    seen = []
    for v in values:
        if v not in (None, "") and str(v) not in seen:
            seen.append(str(v))
    return "+".join(seen)


def index_row(doc: dict, path, time: str | None = None) -> dict:
    """The index's row for a saved document (a fit, a collection of 1-d fits, a comparison or a compute-optimal
    report) written at `path`."""
    kind = doc.get("kind", "")
    prov = doc.get("provenance", {})
    settings = dict(prov.get("settings") or {})
    if kind == "optimal-report":
        settings = dict(doc.get("settings") or {})
        methods = settings.get("methods") or [r.get("method", "") for r in doc.get("results", [])]
        row_kind, form = "optimal", ",".join(methods)
        for key, method in (("grid", "surrogate"), ("surrogates", "surrogate"), ("isoflop_slicing", "isoflop"),
                            ("envelope_edges", "envelope"), ("interval", "parametric")):
            if method not in methods:
                settings.pop(key, None)  # a setting of a method this report did not run
    elif kind == "comparison":
        settings = {k: v for k, v in (doc.get("settings") or {}).items() if k in ("splits", "seed", "train_fraction")}
        row_kind, form = "compare", ",".join(doc.get("forms", []))
    else:
        row_kind, form = "fit", doc.get("form", "")
    source = dict(prov.get("source") or {})
    groups = _groups_of(doc)
    loss = prov.get("loss", source.get("loss"))
    if isinstance(loss, (list, tuple)):
        loss = "+".join(map(str, loss))
    if loss is None and kind == "collection":
        loss = _joined(r.get("provenance", {}).get("loss") for r in doc.get("results", []))
    if not loss and "csv" in source:
        loss = "csv"
    row = {
        "time": time or _now(),
        "kind": row_kind,
        "form": form,
        "source": source.get("csv") or source.get("store") or "",
        "source_sha256": source.get("csv_sha256", ""),
        "data_sha256": prov.get("data_sha256", ""),
        "family": _joined(g.get("family") for g in groups),
        "param": _joined(g.get("param") for g in groups),
        **{k: "" if source.get(k) is None else source.get(k) for k in SOURCE_FIELDS},
        "loss": loss or "",
        "n_convention": settings.get("n_convention") or source.get("n_convention") or "",
        "settings": json.dumps(jsonable({k: settings[k] for k in KEY_SETTINGS
                                         if settings.get(k) not in (None, "", [], {})}), sort_keys=True),
        "file": Path(path).name,
    }
    return {k: str(row[k]) for k in INDEX_COLUMNS}


def _read_rows(index: Path) -> list[dict]:
    try:
        text = index.read_text()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise UserError(f"cannot read the results index {index}: {exc.strerror or exc}") from None
    try:
        table = list(csv.reader(io.StringIO(text), strict=True))
    except csv.Error as exc:
        raise UserError(f"the results index {index} is damaged ({exc}); move it away and save again") from None
    if not table:
        return []
    header = table[0]
    if "file" not in header or "kind" not in header:
        raise UserError(f"{index} is not a scalingkit results index (its header lacks 'kind' and 'file')")
    out = []
    for line, values in enumerate(table[1:], start=2):
        if not values:
            continue
        if len(values) != len(header):
            raise UserError(f"the results index {index} is damaged (line {line} has {len(values)} fields, the "
                            f"header {len(header)}); move it away and save again")
        row = dict(zip(header, values))
        out.append({k: row.get(k, "") for k in INDEX_COLUMNS})
    return out


def record_in_index(doc: dict, path) -> Path:
    """Add (or replace: one row per file) the row of the document saved at `path` to index.csv in its folder,
    under a lock, written whole and moved into place (a reader never sees half a file)."""
    from filelock import FileLock

    path = Path(path)
    index = path.parent / INDEX_NAME
    row = index_row(doc, path)
    try:
        with FileLock(str(index.parent / f".{INDEX_NAME}.lock"), timeout=60):
            rows = [r for r in _read_rows(index) if r["file"] != row["file"]] + [row]
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=INDEX_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            tmp = index.with_name(f".{INDEX_NAME}.{os.getpid()}.tmp")
            tmp.write_text(buf.getvalue())
            os.replace(tmp, index)
    except OSError as exc:
        raise UserError(f"saved {path}, but cannot update the results index {index}: {exc.strerror or exc}") from None
    return index


def read_index(folder, include_unindexed: bool = True) -> list[dict]:
    """The rows of folder/index.csv, oldest first; with include_unindexed, also a row (time from the file, and
    "unindexed" in its kind) for every result JSON in the folder that the index does not list (saved before the
    index existed, or copied in). Rows whose file is gone are dropped."""
    folder = Path(folder)
    rows = [r for r in _read_rows(folder / INDEX_NAME) if (folder / r["file"]).is_file()]
    if include_unindexed and folder.is_dir():
        listed = {r["file"] for r in rows}
        for path in sorted(folder.glob("*.json")):
            if path.name in listed:
                continue
            try:
                doc = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if not isinstance(doc, dict) or doc.get("kind") not in ("fit", "collection", "comparison",
                                                                     "optimal-report"):
                continue
            stamp = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc)
            row = index_row(doc, path, time=stamp.isoformat(timespec="seconds"))
            row["kind"] += " (unindexed)"
            rows.append(row)
    return sorted(rows, key=lambda r: r["time"])
