"""What the compute-optimal methods read: the final-point table L(N, D) and, from a cube, every run's curve.

One `Inputs` per analysed group (a (family, param) of the cube, or a whole CSV). N is always in the chosen
convention (all parameters or non-embedding), and so is compute: C = 6 N D for the table, and tokens x FLOPs per
token for the curves, where FLOPs per token is 6 N ("6nd") or the run's exact matmul count ("exact").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scalingkit.errors import UserError

N_CONVENTIONS = ("total", "nonembedding")
FLOPS = ("6nd", "exact")


@dataclass
class Curves:
    """Every logged point of every finished run: arrays of R runs x P points (NaN past a run's last point)."""

    N: np.ndarray  # (R,) parameters in the chosen convention
    D: np.ndarray  # (R,) the run's token budget
    lr: np.ndarray  # (R,)
    seed: np.ndarray  # (R,)
    tokens: np.ndarray  # (R, P)
    loss: np.ndarray  # (R, P) the loss the group is analysed on (Inputs.source["loss"]: exact or sampled)
    flops_per_token: np.ndarray  # (R,)

    @property
    def compute(self) -> np.ndarray:
        """Cumulative FLOPs at every logged point, (R, P)."""
        return self.tokens * self.flops_per_token[:, None]

    def __len__(self) -> int:
        return len(self.N)


@dataclass
class Inputs:
    label: str
    table: pd.DataFrame  # columns N, D, loss: the best final loss over learning rates and seeds
    curves: Curves | None = None  # None for a CSV (no curves: the envelope uses the final points)
    n_convention: str = "total"
    flops: str = "6nd"
    source: dict = field(default_factory=dict)

    def arrays(self):
        return (self.table["N"].to_numpy(float), self.table["D"].to_numpy(float),
                self.table["loss"].to_numpy(float))

    @property
    def offset_floor(self) -> float | None:
        """The lower bound of every fitted offset (E, E_C): the family's loss floor where it is exact, else None."""
        floor = self.source.get("loss_floor")
        exact = self.source.get("loss_floor_kind") == "exact" and floor is not None and np.isfinite(floor)
        return float(floor) if exact else None


def check_choices(n_convention: str, flops: str) -> None:
    if n_convention not in N_CONVENTIONS:
        raise UserError(f"unknown N convention {n_convention!r} (use {' or '.join(N_CONVENTIONS)})")
    if flops not in FLOPS:
        raise UserError(f"unknown FLOPs count {flops!r} (use {' or '.join(FLOPS)})")


def from_cube(path, family=None, param=None, n_convention="total", flops="6nd", loss="auto") -> list[Inputs]:
    """One Inputs per (family, param) of the cube that has finished runs. loss: exact, sampled, or auto (exact for
    a family whose every finished run has it: store.loss_kinds); both the table and the curves use it."""
    from scalingkit.store import best_loss, family_entropy, loss_kinds, open_cube

    check_choices(n_convention, flops)
    ds = open_cube(path)
    for dim, value in (("family", family), ("param", param)):
        if value is not None:
            have = [str(x) for x in ds[dim].values]
            if value not in have:
                raise UserError(f"{dim} {value!r} is not in the cube (have: {', '.join(have)})")
            ds = ds.sel({dim: [value]})
    kinds = loss_kinds(ds, loss)
    out = []
    for fam in ds["family"].values:
        kind = kinds[str(fam)]
        best = best_loss(ds.sel(family=[fam]), n_convention, kind)
        for par in ds["param"].values:
            sub = ds.sel(family=fam, param=par)
            curves = _curves(sub, best["n"].sel(family=fam).values, flops, kind)
            if curves is None:
                continue
            b = best.sel(family=fam, param=par)
            floor, floor_kind = family_entropy(ds, str(fam))  # the entropy: exact for walks, estimated for TnL
            n = np.broadcast_to(b["n"].values[:, None], b["loss"].shape)
            d = np.broadcast_to(b["D"].values[None, :], b["loss"].shape).astype(float)
            ok = np.isfinite(b["loss"].values)
            table = pd.DataFrame({"N": n[ok], "D": d[ok], "loss": b["loss"].values[ok]})
            out.append(Inputs(f"{fam}-{par}", table, curves, n_convention, flops,
                              {"store": str(path), "family": str(fam), "param": str(par), "loss": kind,
                               "loss_floor": floor, "loss_floor_kind": floor_kind}))
    if not out:
        raise UserError(f"the cube at {path} has no finished runs")
    for inputs in out:
        check_inputs(inputs)
    return out


def check_inputs(inputs: Inputs) -> None:
    """A group whose table cannot identify a compute-optimal allocation (a constant loss, fewer than 3 distinct N
    or D) is refused in one line, rather than given confident exponents (fit/table.check_identifiable)."""
    from scalingkit.fit.table import check_identifiable

    check_identifiable(inputs.table, f"compute-optimal [{inputs.label}]", ("N", "D"))


def _curves(sub, n_by_N: np.ndarray, flops: str, kind: str = "sampled") -> Curves | None:
    """The finished runs of one (family, param), read as whole arrays (one read per variable, not per run)."""
    done = sub["status"].values == "done"  # (N, D, lr, seed)
    if not done.any():
        return None
    idx = np.nonzero(done)
    n_lab, d_lab = sub["N"].values, sub["D"].values
    lr_lab, seed_lab = sub["lr"].values, sub["seed"].values
    tokens = sub["tokens"].values[idx]
    loss = sub["exact_loss" if kind == "exact" else "eval_loss"].values[idx]
    D = d_lab[idx[1]].astype(float)
    N = np.asarray(n_by_N, dtype=float)[idx[0]]
    if flops == "6nd":
        per_token = 6.0 * N
    else:
        # the exact count is per run; per token it does not change along the curve
        per_token = sub["flops_exact"].values[idx] / D
        if not np.all(np.isfinite(per_token) & (per_token > 0)):
            raise UserError("some finished runs have no exact FLOP count; use --flops 6nd")
    bad = ~(np.isfinite(tokens) & np.isfinite(loss) & (tokens > 0) & (loss > 0))
    tokens, loss = np.where(bad, np.nan, tokens), np.where(bad, np.nan, loss)
    return Curves(N, D, lr_lab[idx[2]].astype(float), seed_lab[idx[3]].astype(float), tokens, loss, per_token)


def from_csv(path, *, n_col=None, d_col=None, c_col=None, loss_col="loss", drop_top=0,
             n_convention="total", flops="6nd") -> list[Inputs]:
    """A CSV of runs (one row per run: final points only). Its N column is taken to be in the chosen convention."""
    from scalingkit.fit.table import read_csv_table

    check_choices(n_convention, flops)
    if flops != "6nd":
        raise UserError("--flops exact needs the cube (a CSV has no exact FLOP counts)")
    if not n_col or not (d_col or c_col):
        raise UserError("with --csv, say which columns hold N and D (--n-col, and --d-col or --c-col)")
    df = read_csv_table(path, n_col=n_col, d_col=d_col, c_col=c_col, loss_col=loss_col, drop_top=drop_top)
    inputs = Inputs(Path(path).stem, df[["N", "D", "loss"]].reset_index(drop=True), None, n_convention, flops,
                    {"csv": str(path), "n_col": n_col, "d_col": d_col, "c_col": c_col, "loss_col": loss_col,
                     "drop_top": int(drop_top)})
    check_inputs(inputs)
    return [inputs]
