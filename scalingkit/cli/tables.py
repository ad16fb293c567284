"""What `scalingkit status` and `scalingkit table` print: counts by status, compute left, the runs other
coordinators are training now, the runs queued and running on a cluster (and those finished but not recorded yet),
the failed runs with their messages, a check of every run against its checksum (--verify), and L(N, D).

Status reads only the coordinates and the status chunk (no xarray), so it stays fast on large cubes. Both commands
label a model by N in the convention named (default total: all parameters, embedding included, as fit, optimal and
plot count it) beside its width; runs are named by the cube's labels (Cell: N there is the non-embedding label)."""
from __future__ import annotations

import json
import math

import numpy as np

from scalingkit import store
from scalingkit.store import RUN_DIMS, STATUS, STATUS_CODE
from scalingkit.sweep import plan

N_LABELS = {"total": "N = total parameters, embedding included",
            "nonembedding": "N = non-embedding parameters"}


def status_summary(path, brackets: bool = False, n_convention: str = "total", verify: bool = False) -> dict:
    """Counts by status, compute left, the runs live coordinators hold now, and where each (family, param, N, D)'s
    best learning rate stands: always for sweeps that search learning rates, for every sweep with brackets=True
    (reads the final loss of every done run), with N in `n_convention` beside the width. verify: also check every
    finished run against its checksum (reads every run: store.verify)."""
    if n_convention not in N_LABELS:
        from scalingkit.errors import UserError

        raise UserError(f"unknown N convention {n_convention!r} (use total or nonembedding)")
    adopted = _adopt(path)  # first: runs that finished while no coordinator watched are counted as what they are
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
    out["n_convention"] = n_convention
    held = _live_claims(path)
    out["training_now"] = _training_now(held)
    out["cluster"] = _cluster(path, held)
    out["adopted"] = adopted
    out["failed_runs"] = _failed_runs(path, coords, codes, planned)
    if brackets or any(sw.lr_search is not None for sw in sweeps):
        shape = {int(n): (int(l), int(w)) for n, l, w in zip(coords["N"], group["n_layer"][:], group["d_model"][:])}
        fam_index = {str(f): i for i, f in enumerate(coords["family"])}
        n_index = {int(n): i for i, n in enumerate(coords["N"])}
        rows = []
        for row in plan.lr_optima(path, sweeps, coords, codes, grids=brackets):
            label = int(row["N"])
            n = label if n_convention == "nonembedding" else int(n_params[fam_index[row["family"]], n_index[label]])
            rows.append({**row, "N": n, "width": shape[label][1], "n_layer": shape[label][0]})
        out["lr_optima"] = rows
    if verify:
        from scalingkit.store.verify import verify as check

        out["verify"] = check(path).to_dict()
    return out


def _adopt(path) -> dict:
    """Drop the claims of gone owners and record the runs they finished (store/adopt.py), as `train` does; what
    happened, for the report: {"runs": n, "by_status": {...}} or, where the store cannot be written here, a note."""
    from scalingkit.store import claims

    if not (claims.folder(path) / "cells.json").exists():
        return {"runs": 0, "by_status": {}}
    from scalingkit.errors import StoreError

    try:
        adopted = claims.expire(path)
    except (OSError, StoreError) as exc:  # a read-only store: status still reads it
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return {"runs": 0, "by_status": {},
                "note": f"runs that gone coordinators or jobs finished are not recorded here: {why}"}
    counts: dict = {}
    for status in adopted.values():
        counts[status] = counts.get(status, 0) + 1
    return {"runs": len(adopted), "by_status": counts}


def _live_claims(path) -> list[dict]:
    from scalingkit.store import claims

    try:
        return claims.live(path)
    except (OSError, ValueError):  # a claims file being replaced, or unreadable: nothing to say
        return []


def _training_now(held: list[dict]) -> list[dict]:
    """Per live coordinator, the runs it holds a claim on now: what it is training (cluster jobs: _cluster)."""
    by_owner: dict = {}
    for claim in held:
        if claim["owner"] is not None and claim["owner"].kind == "job":
            continue
        who = str(claim["owner"]) if claim["owner"] is not None else "unknown owner"
        entry = by_owner.setdefault(who, {"owner": who, "runs": [], "since": claim["since"]})
        entry["runs"].append(str(store.Cell(*claim["cell"])))
        entry["since"] = min(filter(None, (entry["since"], claim["since"])), default=None)
    return list(by_owner.values())


RUNNING = ("RUNNING", "COMPLETING", "CONFIGURING")


def _cluster(path, held: list[dict]) -> dict:
    """The runs cluster jobs hold: queued or running (by the scheduler's state), per job, and of them the ones
    whose worker finished writing (checksum verifies) that are not recorded yet (their job is ending)."""
    from scalingkit.store import adopt

    jobs: dict = {}
    out = {"queued": 0, "running": 0, "finished_unrecorded": 0, "jobs": []}
    cells = []
    for claim in held:
        owner = claim["owner"]
        if owner is None or owner.kind != "job":
            continue
        state = claim.get("state") or ("SUBMITTING" if not owner.job else "UNKNOWN")
        out["running" if state in RUNNING else "queued"] += 1
        entry = jobs.setdefault(owner.job or "(being submitted)",
                                {"job": owner.job, "state": state, "runs": [], "log": owner.log})
        entry["runs"].append(str(store.Cell(*claim["cell"])))
        cells.append(store.Cell(*claim["cell"]))
    if cells:
        try:
            out["finished_unrecorded"] = len(adopt.finished(path, cells))
        except (OSError, ValueError):
            pass
    out["jobs"] = sorted(jobs.values(), key=lambda j: _job_order(j["job"]))
    return out


def _job_order(job) -> tuple:
    if not job:
        return (1 << 62, 0)
    array, _, index = str(job).partition("_")
    try:
        return (int(array), int(index or 0))
    except ValueError:
        return (1 << 62, 0)


def _failed_runs(path, coords, codes, planned) -> list[dict]:
    """Each failed run (planned or not) with its message (which names a cluster job's log)."""
    from scalingkit.store import chunks

    where = np.argwhere(codes == STATUS_CODE["failed"])
    if not len(where):
        return []
    try:
        messages, _ = chunks.RunArray(path, "message").read(where)
    except (OSError, ValueError):
        messages = [""] * len(where)
    return [{"run": str(store.Cell(*(_plain(coords[d][i]) for d, i in zip(RUN_DIMS, pos)))),
             "message": str(message)} for pos, message in zip(where, messages)]


def _plain(x):
    if isinstance(x, (str, np.str_)):
        return str(x)
    if isinstance(x, (float, np.floating)):
        return float(x)
    return int(x)


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
    for entry in s.get("training_now", []):
        shown = "; ".join(entry["runs"][:5]) + ("; ..." if len(entry["runs"]) > 5 else "")
        lines.append(f"being trained now by {entry['owner']} (claimed since {entry['since']}): "
                     f"{_plural(len(entry['runs']), 'run')}: {shown}")
    lines += format_cluster(s)
    failed = s.get("failed_runs", [])
    for entry in failed[:FAILED_SHOWN]:
        lines.append(f"failed: {entry['run']}: {entry['message'] or '(no message)'}")
    if len(failed) > FAILED_SHOWN:
        lines.append(f"  ... and {len(failed) - FAILED_SHOWN:,} more failed runs (`status --json` lists them all; "
                     "`train --retry-failed` trains them again)")
    if s.get("lr_optima"):
        lines.append(format_lr_optima(s["lr_optima"], s.get("n_convention", "total")))
    if "verify" in s:
        lines.append(format_verify(s["verify"], s["store"]))
    return "\n".join(lines)


FAILED_SHOWN = 10


def format_cluster(s: dict) -> list[str]:
    """Lines on what cluster jobs hold and what was adopted."""
    lines = []
    adopted = s.get("adopted", {})
    if adopted.get("runs"):
        lines.append(f"adopted {_plural(adopted['runs'], 'run')} that finished while no coordinator watched ("
                     + ", ".join(f"{n:,} {k}" for k, n in sorted(adopted["by_status"].items()))
                     + "): recorded now, not trained again")
    if adopted.get("note"):
        lines.append(adopted["note"])
    c = s.get("cluster") or {}
    if c.get("jobs"):
        jobs = c["jobs"]
        running = [j["job"] for j in jobs if j["state"] in RUNNING]
        queued = [j["job"] or "being submitted" for j in jobs if j["state"] not in RUNNING]
        parts = []
        if c["running"]:
            parts.append(f"{_plural(c['running'], 'run')} running ({_jobs(running)})")
        if c["queued"]:
            parts.append(f"{_plural(c['queued'], 'run')} queued ({_jobs(queued)})")
        line = "on the cluster: " + "; ".join(parts)
        if c.get("finished_unrecorded"):
            line += (f"; {_plural(c['finished_unrecorded'], 'run')} finished, not recorded yet (its job is "
                     "ending; the next `status` or `train` records it)")
        lines.append(line)
        unknown = [j["job"] for j in jobs if j["state"] == "UNKNOWN"]
        if unknown:
            lines.append(f"  {_plural(len(unknown), 'job')} could not be asked about here (no squeue, or the "
                         "controller did not answer): counted as queued, their runs are left to them")
    return lines


def _jobs(ids: list) -> str:
    """SLURM job ids, grouped by array: 7_[0-3,5], 8."""
    arrays: dict = {}
    for job in ids:
        array, sep, index = str(job).partition("_")
        arrays.setdefault(array, []).append(index if sep else None)
    parts = []
    for array, indices in arrays.items():
        if indices == [None]:
            parts.append(f"SLURM job {array}")
            continue
        numbers = sorted(int(i) for i in indices if i is not None and i.isdigit())
        ranges, start = [], None
        for k, n in enumerate(numbers):
            if start is None:
                start = n
            if k + 1 == len(numbers) or numbers[k + 1] != n + 1:
                ranges.append(f"{start}" if start == n else f"{start}-{n}")
                start = None
        parts.append(f"SLURM job {array}_[{','.join(ranges)}]" if ranges else f"SLURM job {array}")
    return ", ".join(parts)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def format_verify(v: dict, store_path) -> str:
    """The result of --verify: every damaged run named, with what is wrong, and the fix."""
    unsealed = f", {v['unsealed']:,} without a checksum yet" if v["unsealed"] else ""
    lines = [f"verify: {_plural(v['checked'], 'finished run')} checked against their checksums: {v['ok']:,} ok, "
             f"{len(v['damaged']):,} damaged{unsealed}"]
    if v.get("note"):
        lines.append(f"  {v['note']}")
    for d in v["damaged"]:
        lines.append(f"  damaged: {d['run']}: {', '.join(d['problems'])}")
    if v["damaged"]:
        lines.append(f"  `scalingkit train --redo-damaged --store {store_path}` trains them again (nothing else is "
                     "touched)")
    return "\n".join(lines)


MARKS = {"bracketed": "ok", "bracketed beyond the grid": "ok", "low bound": "low", "high bound": "high",
         "max rounds": "stop", "searching": "...", "open": "...", "none": "-"}


def format_lr_optima(rows: list[dict], n_convention: str = "total") -> str:
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
        lines.append(f"{sweep}: {fam}/{par}  (mark best-lr/tried)   [{N_LABELS[n_convention]}]")
        lines.append(f"{'N':>12} {'width':>6} " + " ".join(f"{f'D={d:.3g}':>18}" for d in Ds))
        for n in sorted({r["N"] for r in block}):
            marks = []
            for d in Ds:
                r = cell.get((n, d))
                marks.append(f"{_lr_mark(r):>18}")
            width = next(r.get("width", "") for r in block if r["N"] == n)
            lines.append(f"{n:>12,} {width:>6} " + " ".join(marks))
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


def loss_rows(path, n_convention: str = "total", loss: str = "auto"):
    """L(N, D) of the cube as a table (store.best_table: every read checked against the runs' checksums)."""
    return store.best_table(store.open_cube(path), n_convention, loss)


def format_loss_table(path, n_convention: str = "total", loss: str = "auto") -> str:
    """L(N, D) for every (family, param): rows are model shapes (N in the convention named, and width), columns
    token budgets, cells best loss (best lr); which loss (exact or sampled, store.loss_kinds) in each heading."""
    ds = store.open_cube(path)
    table = store.best_table(ds, n_convention, loss)
    blocks = []
    for (fam, par), rows in table.groupby(["family", "param"], sort=True):
        floor = float(ds["loss_floor"].sel(family=fam))
        kind = rows["loss_kind"].iloc[0]
        head = (f"L(N, D) for {fam}/{par}: best final {kind} loss over lr and seed (loss floor {floor:.4f} nats)"
                f"   [{N_LABELS[n_convention]}]")
        Ds = sorted(int(d) for d in rows["D"].unique())
        lines = [f"{'N':>12} {'width':>6} " + " ".join(f"{f'D={d:.3g}':>18}" for d in Ds)]
        for (n, width), by_n in rows.groupby(["N", "d_model"], sort=True):
            at = {int(r.D): r for r in by_n.itertuples()}
            cells = [f"{at[d].loss:>8.4f} (lr {at[d].best_lr:<6.2g})" if d in at else f"{'-':>18}" for d in Ds]
            lines.append(f"{int(n):>12,} {int(width):>6} " + " ".join(cells))
        blocks.append(head + "\n" + "\n".join(lines))
    return "\n\n".join(blocks) if blocks else "no finished runs in the cube yet"


def loss_table_json(path, n_convention: str = "total", loss: str = "auto") -> str:
    """`table --json`: the same L(N, D), one object per (family, param, N, D): N in the convention named (with the
    width and layers behind it), D, loss, loss_se, loss_kind (exact or sampled), best_lr, best_seed."""
    table = loss_rows(path, n_convention, loss)
    rows = [{"family": r.family, "param": r.param, "N": int(r.N), "width": int(r.d_model), "n_layer": int(r.n_layer),
             "D": int(r.D), "loss": _num(r.loss), "loss_se": _num(r.loss_se), "loss_kind": r.loss_kind,
             "best_lr": _num(r.best_lr), "best_seed": None if _num(r.best_seed) is None else int(r.best_seed)}
            for r in table.itertuples()]
    return json.dumps({"store": str(path), "n_convention": n_convention, "n_label": N_LABELS[n_convention],
                       "loss": loss, "rows": rows}, indent=2)


def _num(x):
    x = float(x)
    return None if math.isnan(x) else x
