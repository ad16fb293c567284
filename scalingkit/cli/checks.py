"""Checks of command-line values where they enter, before any work: output paths, counts and sizes, seeds.

Each failure is a UserError (one line, exit code 2) naming the flag and what is wrong with its value. The library
checks what it is given as well; these make the command fail at once, not after minutes of fitting, and name the flag.

Every option that names an output, and the rule it is checked by before anything is trained, fitted or written
(folders are made if missing, with their parents; nothing is made or left behind by a refusal):

    train --store PATH        a cube to add to, or a new one: a file, or a folder that is not a cube, is refused; the
                              folder it is in must take its lock file (store_for_writing)
    plot --out DIR            figures folder (figures/ beside the store): a folder that can be written; figures of
                              the same names are re-drawn (output_folder)
    coord-check --out FILE    a figure: an extension matplotlib can write here, not a folder, in a folder that can be
                              written; replaces only a figure matplotlib wrote, anything else needs --force
                              (figure_file, replaceable)
    fit/compare --out DIR     results folder (fits/ beside the store) and, for fit, figures/ beside fits/ (or --out
                              itself): folders that can be written; a result of the same fit is re-written
    optimal --out DIR         the same, for the results and the figures folder
    report --out FILE         an .html/.htm page (report.html beside the store); --markdown FILE an .md/.markdown
                              file, its figures in FILE's stem + '-figures/'; --fits DIR a folder that can be
                              written: each file replaces only an earlier scalingkit report, anything else needs
                              --force (report_file)

`--json` everywhere prints to stdout and `--csv` is an input; `results`, `status` and `table` name no output.
"""
from __future__ import annotations

import gzip
import io
import math
import os
import tempfile
from pathlib import Path

from scalingkit.errors import UserError

MAX_DRAWS = 100_000  # bootstrap draws: the defaults are 200 to 4,000; 1e5 already pins a 95% interval's ends


def _existing_ancestor(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_writable(folder: Path, flag: str, shown: Path) -> None:
    """`folder` (existing or to be made) can take new files: its nearest existing ancestor is a folder in which a
    file can be created (tried: permissions, a read-only file system, root's exemptions all count as they are)."""
    base = _existing_ancestor(folder)
    if not base.is_dir():
        raise UserError(f"{flag} {shown}: {base} is a file, not a folder")
    try:
        fd, name = tempfile.mkstemp(prefix=".scalingkit-write-check-", dir=base)
    except OSError as exc:
        raise UserError(f"{flag} {shown}: cannot write in {base} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(name)


def output_folder(path, flag: str) -> None:
    """A folder that results or figures go to (made if missing)."""
    if path is None:
        return
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{flag} {p}: is a file, not a folder")
    _check_writable(p, flag, p)


def output_file(path, flag: str) -> None:
    """A file to write (its folder made if missing); an existing folder of that name is refused, and so is an existing
    file that cannot be written (opened for writing without truncating: its bytes stay as they are)."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{flag} {p}: is a folder; give a file name")
    _check_writable(p.parent if str(p.parent) else Path("."), flag, p)
    if p.exists():
        try:
            os.close(os.open(p, os.O_WRONLY | os.O_APPEND))
        except OSError as exc:
            raise UserError(f"{flag} {p}: cannot write it ({exc.strerror or exc})") from None


def replaceable(path, flag: str, ours, what: str, force: bool) -> None:
    """An existing file at `path` is replaced only if `ours(path)` says the command wrote it before (re-running a
    command re-writes its own output, as `make demo` does), or it is empty, or with --force: a file of anything else
    (a document, someone's figure) is refused rather than lost."""
    p = Path(path)
    if force or not p.is_file() or p.stat().st_size == 0:
        return
    try:
        mine = ours(p)
    except OSError:
        mine = False
    if not mine:
        raise UserError(f"{flag} {p}: the file exists and is not {what}; add --force to replace it, or name "
                        "another file")


# ---------------------------------------------------------------- figures

def figure_formats() -> dict:
    """matplotlib's own list of the formats it writes: extension -> description."""
    from matplotlib.backend_bases import FigureCanvasBase

    return FigureCanvasBase.get_supported_filetypes()


def _format_list(formats) -> str:
    first = [f for f in ("png", "pdf", "svg") if f in formats]
    return ", ".join("." + f for f in first + sorted(f for f in formats if f not in first))


def figure_file(path, flag: str) -> None:
    """A figure to write: its extension names a format matplotlib writes (matplotlib picks the format from it, and
    saves a name without one under another name, NAME.png), and a figure in that format can be written here (a
    tiny one is drawn into memory: .pgf needs LaTeX, the bitmap formats Pillow's codecs)."""
    p = Path(path)
    formats = figure_formats()
    ext = p.suffix.lower()
    if not ext:
        raise UserError(f"{flag} {p}: no extension to say the figure's format; matplotlib writes "
                        f"{_format_list(formats)} (e.g. {p}.png)")
    if ext[1:] not in formats:
        raise UserError(f"{flag} {p}: matplotlib cannot write '{ext}' files (it writes {_format_list(formats)})")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    fig.text(0.5, 0.5, "x")
    try:
        fig.savefig(io.BytesIO(), format=ext[1:])
    except Exception as exc:  # noqa: BLE001 - whatever stops matplotlib here stops it after the work too
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{flag} {p}: matplotlib cannot write '{ext}' files on this machine ({reason})") from None


def written_by_matplotlib(path: Path) -> bool:
    """A figure matplotlib wrote: PNG, PDF, SVG(Z), EPS and PS carry `Matplotlib v3...` (PNG: `Matplotlib
    version3...`) in their default metadata, near the start or the end of the file; the formats Pillow writes carry
    none, so they are never recognised."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(65536)
        fh.seek(max(0, size - 65536))
        tail = fh.read()
    if head[:2] == b"\x1f\x8b":  # .svgz
        try:
            with gzip.open(path, "rb") as fh:
                head, tail = fh.read(65536), b""
        except (OSError, EOFError):
            return False
    return b"Matplotlib v" in head + tail


# ---------------------------------------------------------------- the report's files

REPORT_FORMATS = {"--out": ((".html", ".htm"), "an HTML page"), "--markdown": ((".md", ".markdown"), "Markdown")}


def is_report_page(path: Path) -> bool:
    """A page `scalingkit report` wrote (plots/report.py: `<title>scalingkit report: STORE</title>` in its head)."""
    with open(path, "rb") as fh:
        return b"<title>scalingkit report: " in fh.read(4096)


def is_report_markdown(path: Path) -> bool:
    """A Markdown copy `scalingkit report` wrote (its first line: `# scalingkit report: STORE`)."""
    with open(path, "rb") as fh:
        return fh.read(64).startswith(b"# scalingkit report: ")


def report_file(path, flag: str, shown: str, force: bool) -> None:
    """`report --out` or `--markdown`: the extension of its format, writable, replacing only an earlier report."""
    p = Path(path)
    extensions, kind = REPORT_FORMATS[flag]
    if p.suffix.lower() not in extensions:
        raise UserError(f"{shown} {p}: the report writes {kind} there; name it {' or '.join(extensions)}")
    output_file(p, shown)
    replaceable(p, shown, is_report_page if flag == "--out" else is_report_markdown,
                f"a {'page' if flag == '--out' else 'Markdown file'} scalingkit report wrote", force)


# ---------------------------------------------------------------- stores

def store_for_writing(path, flag: str = "--store") -> None:
    """A store `train` writes: an existing cube (a folder with zarr.json), or a path where none exists yet (the
    cube is made there, whole: store/cube.py renames it into place, so a cube being made by another `train` is
    never seen half-made). A file, or a folder that is not a cube, is refused; the folder it is in must take the
    store's lock file (tried without making it), as the store itself requires."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"store {p}: is a file, not a cube (a zarr folder); {flag} takes a cube or a new path")
    if p.is_dir() and not (p / "zarr.json").exists():
        held = sum(1 for _ in p.iterdir())
        inside = f"it holds {held} item{'s' if held != 1 else ''}" if held else "it is empty"
        raise UserError(f"{flag} {p}: is a folder but not a cube (no zarr.json; {inside}); give an existing cube, "
                        "or a path that does not exist yet for a new one")
    lock = Path(os.path.abspath(p) + ".lock")
    base = _existing_ancestor(lock.parent)
    if not base.is_dir():
        raise UserError(f"store {p}: {base} is a file, not a folder")
    try:
        if lock.exists():
            os.close(os.open(lock, os.O_RDWR))
        else:
            fd, name = tempfile.mkstemp(prefix=".scalingkit-write-check-", dir=base)
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        raise UserError(f"store {p}: cannot create its lock file {lock} ({exc.strerror or exc}); training and every "
                        "change to a store need write access to the folder it is in") from None


def draws(value, flag: str, rows: int | None = None, per_draw: int = 1) -> None:
    """A bootstrap (or split) count: at most MAX_DRAWS, and its draws must fit in memory (each draw keeps `rows`
    indices or signs and `per_draw` estimates: float64)."""
    if value is None:
        return
    if value > MAX_DRAWS:
        need = f"; its draws alone need {_bytes(8 * value * ((rows or 0) + per_draw))}" if rows else ""
        raise UserError(f"{flag} {value:,}: at most {MAX_DRAWS:,} draws (each one is a refit; the defaults are 200 to "
                        f"4,000){need}")
    if rows:
        from scalingkit.config import check_memory

        check_memory(8 * value * (rows + per_draw), f"{flag} {value:,} on {rows:,} rows")


def seed(value, flag: str = "--seed") -> None:
    if value is not None and not 0 <= value < 2**63:
        raise UserError(f"{flag} {value}: a seed must be a whole number from 0 to 2^63 - 1")


def max_workers() -> int:
    return max(64, 4 * (os.cpu_count() or 1))


def workers(value, flag: str = "--workers") -> None:
    """Processes on this machine: at least 1, at most 4 per core (64 at least): more only share the cores, and each
    holds its own copy of the data and the libraries."""
    if value is None:
        return
    if not 1 <= value <= max_workers():
        raise UserError(f"{flag} {value:,}: from 1 to {max_workers()} processes (this machine has "
                        f"{os.cpu_count() or 1} CPU cores; more processes only share them)")


def budgets(values, flag: str = "--budget") -> list[float]:
    """Compute budgets in FLOPs: finite and positive (a budget of 0 once silently dropped the N_opt rows)."""
    out = []
    for v in values or ():
        if not (math.isfinite(v) and v > 0):
            raise UserError(f"{flag} {v!r}: budgets must be positive, finite numbers of FLOPs")
        out.append(float(v))
    return out


def fraction(value, flag: str, low: float = 0.0, high: float = 1.0) -> None:
    if value is not None and not (math.isfinite(value) and low <= value <= high):
        raise UserError(f"{flag} {value!r}: must be a number from {low:g} to {high:g}")


def at_most(value, limit: int, flag: str, why: str) -> None:
    if value is not None and value > limit:
        raise UserError(f"{flag} {value:,}: at most {limit:,} ({why})")


def _bytes(n: float) -> str:
    from scalingkit.config import format_bytes

    return format_bytes(n)


def coord_check(widths: list[int], base_width: int, steps: int, lr: float) -> None:
    """`scalingkit coord-check`'s values: at least two valid widths (the check compares them) that fit in memory, a
    valid base width, 1 to 1,000 steps (it measures the first updates, not training), a finite positive lr."""
    from scalingkit.config import check_memory
    from scalingkit.model.counts import check_shape, training_bytes

    if len(set(widths)) < 2:
        raise UserError(f"--widths {','.join(map(str, widths))}: give at least two different widths (the check "
                        "compares how layers move across widths)")
    for flag, layers, values in (("--widths", 2, widths), ("--base-width", 1, [base_width])):
        for w in values:
            try:
                check_shape(layers, w)
            except UserError as exc:
                raise UserError(f"{flag}: {exc}") from None
    if not 1 <= steps <= 1000:
        raise UserError(f"--steps {steps}: from 1 to 1,000 (the check measures the first updates; 0 measures nothing)")
    from scalingkit.sweep.spec import LR_RANGE

    if not (math.isfinite(lr) and LR_RANGE[0] <= lr <= LR_RANGE[1]):
        raise UserError(f"--lr {lr!r}: a learning rate must be finite and from {LR_RANGE[0]:g} to {LR_RANGE[1]:g}, "
                        "as in a sweep")
    # coordinate_check's models: 2 layers, vocabulary 64, batch 16 x context 16, one width at a time
    widest = max(widths)
    check_memory(training_bytes(2, widest, 64, 16 * 16), f"--widths: the model of width {widest:,}")
