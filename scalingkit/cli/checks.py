"""Checks of command-line values where they enter, before any work: output paths, counts and sizes, seeds.

Each failure is a UserError (one line, exit code 2) naming the flag and what is wrong with its value. The library
checks what it is given as well; these make the command fail at once, not after minutes of fitting, and name the flag.
"""
from __future__ import annotations

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
    """A file to write (its folder made if missing); an existing folder of that name is refused."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{flag} {p}: is a folder; give a file name")
    _check_writable(p.parent if str(p.parent) else Path("."), flag, p)


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
