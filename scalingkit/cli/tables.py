"""What `scalingkit status` and `scalingkit table` print: counts by status, compute left, and L(N, D).

Status reads only the coordinates and the status chunk (no xarray), so it stays fast on large cubes."""
from __future__ import annotations

import numpy as np

from scalingkit import store
from scalingkit.store import RUN_DIMS, STATUS, STATUS_CODE
from scalingkit.sweep import plan


def status_summary(path, brackets: bool = False) -> dict:
    """Counts by status, compute left, and where each (family, param, N, D)'s best learning rate stands: always for
    sweeps that search learning rates, for every sweep with brackets=True (reads the final loss of every done run)."""
    coords, codes = store.read_status(path)
    group = store.open_group(path)
    sweeps = plan.stored_sweeps(path)
    awaiting = []  # runs a search wants at learning rates past its grid that the cube does not hold yet
    planned = plan.planned_mask(coords, sweeps, codes, path, awaiting)
    n_params = np.asarray(group["n_params"][:], dtype=np.float64)  # (family, N)
    D = np.asarray(coords["D"], dtype=np.float64)
    # 6 N D for every cell, broadcast over (family, param, N, D, lr, seed)
    flops = 6.0 * n_params[:, None, :, None, None, None] * D[None, None, None, :, None, None]
    flops = np.broadcast_to(flops, codes.shape)
    out = {"store": str(path), "runs_planned": int(planned.sum()), "by_status": {}, "by_family": {}}
    for name in STATUS:
        sel = planned & (codes == STATUS_CODE[name])
        out["by_status"][name] = int(sel.sum())
    left = planned & np.isin(codes, [STATUS_CODE["missing"], STATUS_CODE["failed"]])
    out["flops_left_6nd"] = float(flops[left].sum())
    out["flops_done_6nd"] = float(flops[planned & (codes == STATUS_CODE["done"])].sum())
    out["tokens_left"] = float(np.broadcast_to(D[None, None, None, :, None, None], codes.shape)[left].sum())
    for fi, fam in enumerate(coords["family"]):
        for pi, par in enumerate(coords["param"]):
            sub_planned = planned[fi, pi]
            if not sub_planned.any():
                continue
            sub = codes[fi, pi][sub_planned]
            out["by_family"][f"{fam}/{par}"] = {name: int((sub == STATUS_CODE[name]).sum()) for name in STATUS}
    if awaiting:  # planned and missing too: the next `train --fill-missing` adds their lr labels and trains them
        fam_index = {str(f): i for i, f in enumerate(coords["family"])}
        n_index = {int(n): i for i, n in enumerate(coords["N"])}
        out["runs_planned"] += len(awaiting)
        out["by_status"]["missing"] += len(awaiting)
        for c in awaiting:
            out["by_family"].setdefault(f"{c.family}/{c.param}", dict.fromkeys(STATUS, 0))["missing"] += 1
            out["flops_left_6nd"] += 6.0 * float(n_params[fam_index[c.family], n_index[c.N]]) * c.D
            out["tokens_left"] += float(c.D)
    out["runs_awaiting_lr_labels"] = len(awaiting)
    out["unplanned_cells"] = int((~planned).sum())
    out["sizes"] = {d: len(coords[d]) for d in RUN_DIMS}
    if brackets or any(sw.lr_search is not None for sw in sweeps):
        out["lr_optima"] = plan.lr_optima(path, sweeps, coords, codes, grids=brackets)
    return out


def format_status(s: dict) -> str:
    lines = [f"store {s['store']}: " + " x ".join(f"{v} {k}" for k, v in s["sizes"].items()),
             f"planned runs: {s['runs_planned']:,}   " + "   ".join(f"{k}: {v:,}" for k, v in s["by_status"].items())]
    if s.get("runs_awaiting_lr_labels"):
        lines.append(f"  {s['runs_awaiting_lr_labels']:,} of the missing runs are at learning rates past a sweep's "
                     "grid that the next `train --fill-missing` adds to the cube")
    width = max([len("family/param")] + [len(k) for k in s["by_family"]])
    lines.append(f"{'family/param':<{width}}  " + "  ".join(f"{k:>8}" for k in STATUS))
    for key, counts in s["by_family"].items():
        lines.append(f"{key:<{width}}  " + "  ".join(f"{counts[k]:>8,}" for k in STATUS))
    lines.append(f"compute left: {s['flops_left_6nd']:.3g} FLOPs (6ND), {s['tokens_left']:.3g} tokens; "
                 f"done: {s['flops_done_6nd']:.3g} FLOPs")
    if s.get("lr_optima"):
        lines.append(format_lr_optima(s["lr_optima"]))
    return "\n".join(lines)


MARKS = {"bracketed": "ok", "bracketed beyond the grid": "ok", "low bound": "low", "high bound": "high",
         "max rounds": "stop", "searching": "...", "open": "...", "none": "-"}


def format_lr_optima(rows: list[dict]) -> str:
    """One grid per (sweep, family, param): rows N, columns D; each cell says whether the best learning rate is
    bracketed ('ok'), at the lowest or highest learning rate the search may try ('low', 'high': the grid's end, or
    where stepping past it stops), given up after max_rounds ('stop') or still being searched ('...'), with the best
    lr ('*' when it lies past the grid) and how many lrs were tried (on the grid + past it, when some lie past it).
    Below each grid: the learning rates past the grid that were tried or are wanted, and what set each bound."""
    counts = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    lines = ["best learning rate per (family, param, N, D): " + ", ".join(f"{v} {k}" for k, v in counts.items()),
             "  ok = bracketed by tried neighbours; stop = max_rounds reached; low/high = at the lowest/highest lr",
             "  the search may try (the grid's end, `beyond` steps past it, or lr_min/lr_max); best-lr* = past the "
             "grid;",
             "  tried = grid+past when some of the lrs tried or wanted lie past the grid"]
    blocks: dict[tuple, list[dict]] = {}
    for r in rows:
        blocks.setdefault((r["sweep"], r["family"], r["param"]), []).append(r)
    for (sweep, fam, par), block in blocks.items():
        Ds = sorted({r["D"] for r in block})
        cell = {(r["N"], r["D"]): r for r in block}
        lines.append(f"{sweep}: {fam}/{par}  (mark best-lr/tried)")
        lines.append(f"{'N':>12} " + " ".join(f"{f'D={d:.3g}':>18}" for d in Ds))
        for n in sorted({r["N"] for r in block}):
            marks = []
            for d in Ds:
                r = cell.get((n, d))
                marks.append(f"{_lr_mark(r):>18}")
            lines.append(f"{n:>12,} " + " ".join(marks))
        past = sorted({lr for r in block for lr in r.get("beyond", [])})
        if past:
            lines.append("  past the grid (tried or wanted): " + ", ".join(f"{lr:g}" for lr in past))
        limits = {}
        for r in block:
            if r["state"] in ("low bound", "high bound") and r.get("limit"):
                key = (r["state"].split()[0], r["limit"])
                limits[key] = limits.get(key, 0) + 1
        for (end, limit), k in sorted(limits.items()):
            why = "the grid's end" if limit == "grid" else limit
            lines.append(f"  {k} at the {end} bound, set by {why}")
    return "\n".join(lines)


def _lr_mark(r: dict | None) -> str:
    if r is None:
        return ""
    past = r.get("beyond", [])
    best = "" if r["best_lr"] is None else f"{r['best_lr']:.3g}" + ("*" if r["best_lr"] in past else "")
    tried = f"{r['tried'] - len(past)}+{len(past)}" if past else f"{r['tried']}"
    return f"{MARKS[r['state']]} {best}/{tried}".replace(" /", " -/")


def format_loss_table(path, n_convention: str = "total") -> str:
    """L(N, D) for every (family, param): rows are model shapes, columns token budgets, cells best loss (best lr)."""
    ds = store.open_cube(path)
    best = store.best_loss(ds, n_convention)
    blocks = []
    for fam in best["family"].values:
        floor = float(ds["loss_floor"].sel(family=fam))
        for par in best["param"].values:
            sub = best.sel(family=fam, param=par)
            if int(sub["runs_done"].sum()) == 0:
                continue
            head = f"L(N, D) for {fam}/{par}: best final eval loss over lr and seed (loss floor {floor:.4f} nats)"
            Ds = [int(d) for d in sub["D"].values]
            rows = [f"{'N':>12} {'width':>6} " + " ".join(f"{f'D={d:.3g}':>18}" for d in Ds)]
            for n in sub["N"].values:
                row = sub.sel(N=n)
                label = f"{float(row['n']):>12.4g} {int(ds['d_model'].sel(N=n)):>6} "
                cells = []
                for d in sub["D"].values:
                    loss = float(row["loss"].sel(D=d))
                    lr = float(row["best_lr"].sel(D=d))
                    cells.append(f"{'-':>18}" if np.isnan(loss) else f"{loss:>8.4f} (lr {lr:<6.2g})")
                rows.append(label + " ".join(cells))
            blocks.append(head + f"   [N = {n_convention} parameters]\n" + "\n".join(rows))
    return "\n\n".join(blocks) if blocks else "no finished runs in the cube yet"
