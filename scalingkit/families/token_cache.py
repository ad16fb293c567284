"""The tokenised corpus on disk: two flat token arrays (training documents, held-out documents), memory-mapped.

Layout: <cache>/tokens/<key>/{train.bin, held_out.bin, meta.json}, key = sha256 of the corpus fingerprint, the
tokenizer fingerprint, the held-out fraction and FORMAT. Every document is followed by <|endoftext|>, in corpus
order. Tokens are uint16 when the vocabulary fits, else uint32.

meta.json is written last and atomically, with each file's length and sha256: a cache whose files are missing,
truncated or altered is detected when it is opened (a warning says what is wrong) and rebuilt. A file lock makes
parallel workers build it once; the others wait and then read it. `cached` gives the same guarantees to any
pair of token arrays (the generated family's sample pools).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock
from tqdm.auto import tqdm

from scalingkit.families.cache import cache_root
from scalingkit.families.corpus import Corpus, is_held_out
from scalingkit.families.tokenizers import Tokenizer

FORMAT = 1
PARTS = ("train", "held_out")
BATCH_CHARS = 4_000_000  # documents are encoded in batches of about this many characters (threads share a batch)


@dataclass(frozen=True)
class TokenArrays:
    train: np.ndarray     # read-only memory maps
    held_out: np.ndarray
    meta: dict            # lengths, documents, checksums, and what the key was made of


def cache_key(corpus: Corpus, tokenizer: Tokenizer, held_out: float) -> str:
    parts = {"format": FORMAT, "corpus": corpus.fingerprint, "tokenizer": tokenizer.fingerprint, "held_out": held_out}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def tokenised(corpus: Corpus, tokenizer: Tokenizer, held_out: float, cache_dir: Path | None = None,
              progress: bool | None = None) -> TokenArrays:
    """The corpus tokenised and split, from the cache (built here, once, if missing or corrupted)."""
    folder = Path(cache_dir or cache_root()) / "tokens" / cache_key(corpus, tokenizer, held_out)
    return cached(folder, lambda tmp: _write_corpus(tmp, corpus, tokenizer, held_out, progress))


def cached(folder: Path, build) -> TokenArrays:
    """The arrays saved in `folder`, made first by build(tmp_folder) if they are missing or fail their check.

    build writes train.bin and held_out.bin into the folder it is given and returns the meta to record (with
    "dtype"); lengths, checksums and FORMAT are added here, and the folder is renamed into place when complete.
    """
    meta, problem = _check(folder)
    if meta is None:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder) + ".lock"):
            meta, problem = _check(folder)  # another process may have built it while we waited
            if meta is None:
                if problem:
                    warnings.warn(f"cache {folder} is corrupted ({problem}); rebuilding it", stacklevel=3)
                _make(folder, build)
                meta, problem = _check(folder)
                if meta is None:
                    raise RuntimeError(f"cache {folder} failed its check right after being built: {problem}")
    arrays = {p: _open(folder / f"{p}.bin", meta["dtype"], meta["length"][p]) for p in PARTS}
    return TokenArrays(arrays["train"], arrays["held_out"], meta)


def _open(path: Path, dtype: str, length: int) -> np.ndarray:
    if length == 0:  # numpy cannot map an empty file
        return np.zeros(0, dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(length,))


def _check(folder: Path) -> tuple[dict | None, str]:
    """(meta, "") for a sound cache; (None, what is wrong) otherwise ("" when there is simply none)."""
    if not folder.exists():
        return None, ""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None, "meta.json missing or unreadable"
    itemsize = np.dtype(meta["dtype"]).itemsize
    for part in PARTS:
        path = folder / f"{part}.bin"
        if not path.exists():
            return None, f"{path.name} is missing"
        if path.stat().st_size != meta["length"][part] * itemsize:
            return None, f"{path.name} holds {path.stat().st_size} bytes, expected {meta['length'][part] * itemsize}"
        if _sha256(path) != meta["sha256"][part]:
            return None, f"{path.name} does not match its checksum"
    return meta, ""


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _make(folder: Path, build) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    tmp = folder.with_name(folder.name + f".{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    meta = build(tmp)
    itemsize = np.dtype(meta["dtype"]).itemsize
    meta = {"format": FORMAT, **meta, "length": {p: (tmp / f"{p}.bin").stat().st_size // itemsize for p in PARTS},
            "sha256": {p: _sha256(tmp / f"{p}.bin") for p in PARTS}}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    os.replace(tmp, folder)


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def _write_corpus(tmp: Path, corpus: Corpus, tokenizer: Tokenizer, held_out: float,
                  progress: bool | None) -> dict:
    from scalingkit.progress import resolve

    dtype = token_dtype(tokenizer.vocab_size)
    files = {p: open(tmp / f"{p}.bin", "wb") for p in PARTS}
    docs, chars = dict.fromkeys(PARTS, 0), 0
    start = time.perf_counter()
    bar = tqdm(total=corpus.n_bytes, unit="B", unit_scale=True, desc=f"tokenising {corpus.name} ({tokenizer.name})",
               disable=not resolve(progress), leave=False)
    try:
        for batch in _prefetched(_batches(corpus)):
            for (doc_id, text), ids in zip(batch, tokenizer.encode_batch([t for _, t in batch])):
                part = "held_out" if is_held_out(doc_id, held_out) else "train"
                ids.append(tokenizer.eos_id)
                files[part].write(np.asarray(ids, dtype=dtype).tobytes())
                docs[part] += 1
                chars += len(text)
            bar.update(sum(len(t) for _, t in batch))
    finally:
        bar.close()
        for f in files.values():
            f.close()
    return {"dtype": dtype.name, "documents": docs, "characters": chars, "corpus": corpus.name,
            "corpus_fingerprint": corpus.fingerprint, "tokenizer": tokenizer.name,
            "tokenizer_fingerprint": tokenizer.fingerprint, "vocab_size": tokenizer.vocab_size,
            "eos_id": tokenizer.eos_id, "held_out": held_out, "seconds": round(time.perf_counter() - start, 3)}


def _prefetched(items):
    """The items of an iterator, the next one read in a thread while the caller works on the current one.

    Reading documents is Python work that holds the GIL; encoding releases it, so the two overlap.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(next, items, None)
        while (item := pending.result()) is not None:
            pending = pool.submit(next, items, None)
            yield item


def _batches(corpus: Corpus):
    batch, size = [], 0
    for doc in corpus.documents():
        batch.append(doc)
        size += len(doc[1])
        if size >= BATCH_CHARS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def from_settings(settings: dict, held_out: float) -> tuple[Tokenizer, TokenArrays]:
    """The tokenizer and tokenised corpus that a language family's settings name (see language_spec)."""
    from scalingkit.families.corpus import open_corpus
    from scalingkit.families.tokenizers import tokenizer_for

    corpus = open_corpus(settings["corpus"], settings["text_field"])
    tokenizer = tokenizer_for(settings["tokenizer"], corpus, held_out, cache_root())
    return tokenizer, tokenised(corpus, tokenizer, held_out)
