"""Tables in: a CSV of runs (column flags) or the cube's L(N, D) table, validated into columns N, D, loss.

Every problem is a one-line UserError that names the column or the rows at fault.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scalingkit.errors import UserError


def _rows(mask: np.ndarray, limit: int = 5) -> str:
    """1-based data-row numbers where mask is true, shortened."""
    idx = np.flatnonzero(mask) + 1
    shown = ", ".join(map(str, idx[:limit]))
    return shown + (f", ... ({len(idx)} in all)" if len(idx) > limit else "")


def read_csv_table(path, *, n_col=None, d_col=None, c_col=None, loss_col="loss", group_cols=(), drop_top=0):
    """Read `path` and return a DataFrame with N, D (when given) and loss, plus the group columns.

    D comes from `d_col`, or from a compute column `c_col` as D = C / (6 N). `drop_top` drops the rows with
    the K highest losses (Epoch's standard subset of the Chinchilla table drops 5).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such CSV file: {path}")
    try:
        raw = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot read {path} as CSV: {reason}") from None
    if raw.empty:
        raise UserError(f"{path} has no rows of data (only a header)")
    if d_col and c_col:
        raise UserError("give either --d-col (tokens) or --c-col (compute, D = C/6N), not both")
    if c_col and not n_col:
        raise UserError("--c-col needs --n-col (D = C / 6N)")
    wanted = {"N": n_col, "D": d_col, "C": c_col, "loss": loss_col}
    wanted = {k: v for k, v in wanted.items() if v}
    present = list(map(str, raw.columns))
    for role, col in [*wanted.items(), *(("group", g) for g in group_cols)]:
        if col not in raw.columns:
            raise UserError(f"column {col!r} is not in {path.name} (columns: {', '.join(present)})")
    out = pd.DataFrame({g: raw[g].astype(str) for g in group_cols})
    for role, col in wanted.items():
        values = pd.to_numeric(raw[col], errors="coerce")
        bad = values.isna() & raw[col].notna()
        if bad.any():
            raise UserError(f"column {col!r} has non-numeric value(s) in row(s) {_rows(bad.to_numpy())}")
        out[role] = values.astype(float)
    if "C" in out:
        out["D"] = out.pop("C") / (6.0 * out["N"])
    names = {"N": n_col, "D": d_col or (f"{c_col}/6N" if c_col else None), "loss": loss_col}
    validate(out, names)
    repeated = out.duplicated(keep="first").to_numpy()
    if repeated.any():
        raise UserError(f"row(s) {_rows(repeated)} of {path.name} repeat an earlier row exactly (same "
                        f"{', '.join(repr(c) for c in [*group_cols, *wanted.values()])}): a run listed twice counts "
                        "twice in every fit and bootstrap over runs, which narrows the intervals; remove the copies")
    return drop_highest(out, drop_top)


def validate(df: pd.DataFrame, names: dict | None = None) -> pd.DataFrame:
    """NaN and non-positive values in N, D, loss are errors (logs of them are taken)."""
    names = names or {}
    for role in ("N", "D", "loss"):
        if role not in df:
            continue
        label = names.get(role) or role
        v = df[role].to_numpy(dtype=float)
        if np.isnan(v).any():
            raise UserError(f"column {label!r} has NaN/missing value(s) in row(s) {_rows(np.isnan(v))}")
        if (v <= 0).any() or np.isinf(v).any():
            raise UserError(f"column {label!r} must be positive and finite; row(s) {_rows((v <= 0) | np.isinf(v))}")
    if "loss" not in df:
        raise UserError("the table has no loss column")
    return df


def drop_highest(df: pd.DataFrame, k: int) -> pd.DataFrame:
    k = int(k or 0)
    if k < 0:
        raise UserError(f"--drop-top must be >= 0, got {k}")
    if k >= len(df):
        raise UserError(f"--drop-top {k} would drop all {len(df)} rows")
    if k == 0:
        return df.reset_index(drop=True)
    keep = df["loss"].rank(method="first", ascending=False) > k
    return df[keep].reset_index(drop=True)


def require_points(df: pd.DataFrame, form: str, min_points: int, two_d: bool, variables=None) -> None:
    """A missing axis, too few distinct points or a table that cannot identify `form`'s law -> one-line error.
    variables: the columns the law uses (default N and D where present)."""
    if two_d:
        missing = [c for c in ("N", "D") if c not in df]
        if missing:
            raise UserError(f"the {form} form needs N and D (give --n-col and --d-col or --c-col)")
    if len(df) < min_points:
        raise UserError(f"too few points for {form}: {len(df)} row(s), need at least {min_points}")
    check_identifiable(df, form, variables, min_points)


MIN_DISTINCT = 3  # distinct values a variable needs: two give one difference, not an amplitude and an exponent


def check_identifiable(df: pd.DataFrame, what: str, variables=None, min_points: int = 0) -> None:
    """A UserError where the table cannot identify a law, instead of confident exponents fitted to nothing: a loss
    that is the same in every row; fewer than MIN_DISTINCT distinct values of a variable the law uses (one N, one D);
    fewer distinct points than the law needs (`min_points`: its free parameters plus one; repeated rows add none)."""
    loss = df["loss"].to_numpy(dtype=float)
    if len(loss) >= 2 and np.ptp(loss) <= 1e-12 * np.max(np.abs(loss)):
        raise UserError(f"{what}: not identifiable: the loss is {loss[0]:.6g} in every one of the {len(loss)} rows "
                        "(a constant loss fixes no exponent or amplitude)")
    cols = [c for c in (("N", "D") if variables is None else variables) if c in df]
    for c in cols:
        values = np.unique(df[c].to_numpy(dtype=float))
        if len(values) < MIN_DISTINCT:
            shown = ", ".join(f"{v:.4g}" for v in values)
            raise UserError(f"{what}: not identifiable: {len(values)} distinct {c} ({shown}); a law in {c} needs at "
                            f"least {MIN_DISTINCT} to tell its amplitude from its exponent")
    points = len(df.drop_duplicates(cols)) if cols else len(df)
    if points < min_points:
        raise UserError(f"{what}: not identifiable: {points} distinct ({', '.join(cols)}) point(s) for a law that "
                        f"needs at least {min_points} (its free parameters plus one; repeated points add none)")
