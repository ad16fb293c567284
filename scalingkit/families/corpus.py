"""Corpora: where text comes from, as documents (id, text) in a deterministic order, and the held-out split.

A corpus is named in a sweep by `corpus = "embedded"` (public-domain English fetched by `make`, see embedded.py)
or a path: a .txt file (one document), a .jsonl file (one document per line, text in `text_field`), a .parquet file
(one document per row, text in the column `text_field`), or a folder holding any of these (searched recursively,
files in sorted order of their relative paths). So a user with FineWeb-edu's parquet shards on disk points a sweep
at the folder.

Held-out split by document: a document is held out when the hash of its id falls below `fraction`. The decision
depends on the id alone, so it is stable when documents are added, and a document never straddles the split.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from scalingkit.errors import UserError
from scalingkit.families import embedded

SUFFIXES = (".txt", ".jsonl", ".parquet")


@dataclass(frozen=True)
class Corpus:
    """Documents in a fixed order. `fingerprint` changes whenever the content may have changed (cache keys)."""

    name: str
    fingerprint: str
    n_bytes: int  # size on disk, for progress bars (not the text size)
    _documents: Callable[[], Iterator[tuple[str, str]]] = field(repr=False, compare=False)

    def documents(self) -> Iterator[tuple[str, str]]:
        return self._documents()


def is_held_out(doc_id: str, fraction: float) -> bool:
    """True for about `fraction` of documents, decided by the id's sha256 (stable, no seed to carry around)."""
    h = int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big")
    return h < fraction * 2.0**64


def open_corpus(source: str, text_field: str = "text") -> Corpus:
    """The corpus a sweep names: "embedded" or a path (a file or a folder of .txt / .jsonl / .parquet)."""
    if source == "embedded":
        root = embedded.corpus_dir()
        manifest = embedded.manifest(root)
        return Corpus("embedded", manifest["fingerprint"], sum(manifest["sizes"].values()),
                      lambda: embedded.documents(root))
    path = Path(source).expanduser()
    if not path.exists():
        raise UserError(f"corpus {source!r}: no such file or folder (use \"embedded\" for the default corpus)")
    files = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()) if path.is_dir() else [path]
    if not files or any(f.suffix not in SUFFIXES for f in files):
        raise UserError(f"corpus {source!r}: expected a .txt, .jsonl or .parquet file, or a folder holding some")
    base = path if path.is_dir() else path.parent
    stats = [(str(f.relative_to(base)), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    # hashing the content of a 40 GB corpus on every run is too slow: size and mtime stand for it
    fingerprint = hashlib.sha256(json.dumps([str(path.resolve()), text_field, stats]).encode()).hexdigest()
    return Corpus(str(path.resolve()), fingerprint, sum(s[1] for s in stats),
                  lambda: _read_files(files, base, text_field))


def _read_files(files: list[Path], base: Path, text_field: str) -> Iterator[tuple[str, str]]:
    for f in files:
        rel = str(f.relative_to(base))
        if f.suffix == ".txt":
            yield rel, f.read_text(encoding="utf-8", errors="replace")
        elif f.suffix == ".jsonl":
            yield from _read_jsonl(f, rel, text_field)
        else:
            yield from _read_parquet(f, rel, text_field)


def _read_jsonl(f: Path, rel: str, text_field: str) -> Iterator[tuple[str, str]]:
    with open(f, encoding="utf-8") as lines:
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                text = json.loads(line)[text_field]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError(f"corpus file {f}, line {i}: expected a JSON object with a {text_field!r} field "
                                f"(set text_field)") from None
            yield f"{rel}:{i}", str(text)


def _read_parquet(f: Path, rel: str, text_field: str) -> Iterator[tuple[str, str]]:
    import pyarrow.parquet as pq

    table = pq.ParquetFile(f)
    if text_field not in table.schema_arrow.names:
        raise UserError(f"corpus file {f}: no column {text_field!r} (columns: {', '.join(table.schema_arrow.names)}; "
                        f"set text_field)")
    row = 0
    for batch in table.iter_batches(batch_size=4096, columns=[text_field]):  # bounded memory on big shards
        for text in batch.column(0).to_pylist():
            yield f"{rel}:{row}", text or ""
            row += 1
