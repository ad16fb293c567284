"""Saving and loading fits: one JSON file per result, beside the cube (store/fits/) unless told otherwise.

A file holds either one `FitResult` (kind "fit") or a `FitCollection` (kind "collection": the 1-d fits of a
table, one per fixed D and per fixed N, with their summary). The name is derived from the form, the data hash
and the settings, so re-running the same fit on the same data rewrites the same file.
"""
from __future__ import annotations

import hashlib
import json
import math
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
