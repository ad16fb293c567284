"""Chinchilla approach 2: IsoFLOP profiles. At fixed compute C, loss against log N; its minimum is (N_opt, L_opt).

Slices of the final-point table L(N, D) at fixed C = 6 N D:
- "interpolate" (a grid sweep: several D per N): each N's losses are interpolated linearly in (log D, log L) to
  D = C / 6N, only inside the D range that N was trained on (no extrapolation);
- "bins" (an IsoFLOP design, as in the Chinchilla table: one or two D per N, runs clustered at a few budgets):
  the peaks of the histogram of log10 C (scipy.signal.find_peaks) are the slices, and a run belongs to the
  slice within `bin_width` decades of its peak;
- "auto": interpolate when the median N has at least two budgets D, bins otherwise.

Each profile is fitted twice: a parabola in log N (Hoffmann's choice) and an Akima spline (scipy; smooth,
no overshoot at uneven spacing). An optimum is rejected, and reported, when the profile's lowest point is at
either end of its sampled N range (the data do not bracket a minimum), when the parabola opens downward, or
when its vertex lies outside the sampled range.

Intervals of a, b, kN, kD and at the budgets come from a bootstrap over runs (the rows of the final-point
table, as the parametric method resamples them): the optima of one set of profiles are not independent
observations (the same runs feed neighbouring slices, and each slice's minimum rests on a handful of runs), so
OLS t intervals on them say little. Each draw resamples runs, rebuilds the slices with the same settings (the
slicing chosen on the full data, the same number of slices, bin width and edge rules), refits the profiles and
the lines; draws left with fewer than 3 accepted optima are dropped and counted. Both variants share the draws.
"""
from __future__ import annotations

import numpy as np
from scipy.interpolate import Akima1DInterpolator
from scipy.optimize import minimize_scalar
from scipy.signal import find_peaks

from scalingkit.errors import UserError
from scalingkit.optimal.inputs import Inputs
from scalingkit.optimal.laws import MIN_LINE_POINTS, draws_or_ols, laws_from_points, lines_over_runs
from scalingkit.optimal.result import OptimalResult

SLICING = ("auto", "interpolate", "bins")
MIN_PROFILE = 4  # points in a profile: three fix a parabola, the fourth checks it


# -- slicing --------------------------------------------------------------------------------------------------
def _rows(N, D, L) -> dict:
    """N -> (log D sorted, log L), one loss per (N, D) (the lowest, should a table repeat a cell)."""
    rows = {}
    for n in np.unique(N):
        m = N == n
        d, ll = np.log(D[m]), np.log(L[m])
        ud = np.unique(d)
        rows[float(n)] = (ud, np.array([ll[d == x].min() for x in ud]))
    return rows


def interpolated_slices(N, D, L, n_slices=8, min_points=MIN_PROFILE, budgets=None) -> list[dict]:
    """Profiles at n_slices budgets log-spaced over the C range where at least min_points N can be interpolated."""
    rows = {n: r for n, r in _rows(N, D, L).items() if len(r[0]) >= 2}
    if not rows:
        return []
    ns = np.array(sorted(rows))
    lo = np.array([rows[n][0][0] for n in ns])
    hi = np.array([rows[n][0][-1] for n in ns])

    def available(lc):  # which N have D = C / 6N inside their trained range, for each log C in lc
        ld = lc[:, None] - np.log(6.0 * ns)[None, :]
        return (ld >= lo - 1e-12) & (ld <= hi + 1e-12)

    if budgets is None:
        lc_all = np.log(6.0 * N * D)
        fine = np.linspace(lc_all.min(), lc_all.max(), 400)
        ok = fine[available(fine).sum(axis=1) >= min_points]
        if len(ok) == 0:
            return []
        budgets = np.exp(np.linspace(ok[0], ok[-1], int(n_slices)))
    lcs = np.log(np.asarray(budgets, dtype=float))
    av = available(lcs)
    out = []
    for lc, mask in zip(lcs, av):
        if mask.sum() < min_points:
            continue
        sel = ns[mask]
        ld = lc - np.log(6.0 * sel)
        loss = np.exp([np.interp(x, *rows[n]) for x, n in zip(ld, sel)])
        out.append({"C": float(np.exp(lc)), "N": sel, "L": loss})
    return out


def binned_slices(N, D, L, bin_width=0.1, min_points=MIN_PROFILE) -> list[dict]:
    """Slices at the peaks of the density of log10 C (runs laid out at a few budgets)."""
    lc = np.log10(6.0 * N * D)
    step = bin_width / 2
    edges = np.arange(lc.min() - step, lc.max() + 2 * step, step)
    counts, _ = np.histogram(lc, edges)
    centres = 0.5 * (edges[1:] + edges[:-1])
    peaks, _ = find_peaks(np.r_[0, counts, 0], height=min_points, distance=3)  # peaks >= 1.5 bin widths apart
    out = []
    for p in peaks - 1:
        member = np.abs(lc - centres[p]) <= bin_width
        ns = np.unique(N[member])
        if len(ns) < min_points:
            continue
        loss = np.array([L[member & (N == n)].min() for n in ns])
        out.append({"C": float(10 ** np.median(lc[member])), "N": ns, "L": loss})
    return out


def resolve_slicing(N, D, method="auto") -> str:
    if method not in SLICING:
        raise UserError(f"unknown IsoFLOP slicing {method!r} (use {', '.join(SLICING)})")
    if method == "auto":
        per_n = [len(np.unique(D[N == n])) for n in np.unique(N)]
        method = "interpolate" if np.median(per_n) >= 2 else "bins"
    return method


def slices(inputs: Inputs, method="auto", n_slices=8, bin_width=0.1, min_points=MIN_PROFILE) -> tuple[str, list]:
    N, D, L = inputs.arrays()
    method = resolve_slicing(N, D, method)
    return method, sliced(N, D, L, method, n_slices, bin_width, min_points)


def sliced(N, D, L, mode: str, n_slices=8, bin_width=0.1, min_points=MIN_PROFILE) -> list[dict]:
    if mode == "interpolate":
        return interpolated_slices(N, D, L, n_slices, min_points)
    return binned_slices(N, D, L, bin_width, min_points)


# -- one profile ------------------------------------------------------------------------------------------------
MERGE = 0.02  # sizes closer than 2% (in log N) are one size: an interpolant through both would spike


def merge_close(logN: np.ndarray, L: np.ndarray, tol: float = MERGE):
    """Sorted profile with runs of nearly equal log N averaged (tables read off figures have such pairs)."""
    order = np.argsort(logN)
    x, y = logN[order], L[order]
    group = np.r_[0, np.cumsum(np.diff(x) > tol)]
    count = np.bincount(group)
    return np.bincount(group, x) / count, np.bincount(group, y) / count


def fit_profile(logN: np.ndarray, L: np.ndarray) -> dict:
    """Parabola and Akima minima of one profile, each with the reason it is rejected (None if accepted).
    Expects a profile from merge_close (sorted, distinct sizes)."""
    x, y = np.asarray(logN, dtype=float), np.asarray(L, dtype=float)
    lowest = int(np.argmin(y))
    edge = None
    if lowest == 0:
        edge = "lowest loss at the smallest N (optimum below the sampled sizes)"
    elif lowest == len(y) - 1:
        edge = "lowest loss at the largest N (optimum above the sampled sizes)"
    c2, c1, c0 = np.polyfit(x, y, 2)  # least squares; numpy's is the standard tool for a polynomial
    para = {"coef": [float(c2), float(c1), float(c0)], "reject": edge}
    if c2 <= 0:
        para["reject"] = "parabola opens downward"
        para["logN"] = para["L"] = float("nan")
    else:
        v = -c1 / (2 * c2)
        para["logN"], para["L"] = float(v), float(c0 - c1 * c1 / (4 * c2))
        if para["reject"] is None and not x[0] <= v <= x[-1]:
            para["reject"] = "parabola vertex outside the sampled N range"
    ak = Akima1DInterpolator(x, y)
    j = lowest
    lo, hi = x[max(j - 1, 0)], x[min(j + 1, len(x) - 1)]
    best = minimize_scalar(lambda t: float(ak(t)), bounds=(lo, hi), method="bounded")
    akima = {"logN": float(best.x), "L": float(best.fun), "reject": edge}
    return {"parabola": para, "akima": akima}


KINDS = ("parabola", "akima")


def _beyond_reach(C: float, profile_N, N, D) -> dict:
    """Why a profile ends where it does: the sampled sizes just outside it, each with the token budget it would
    need at this C (D = C / 6N) and the range it was trained on. A profile's smallest N is often not the sweep's
    smallest: a smaller model enters this C only at a budget the sweep did not train (an IsoFLOP profile of a
    grid sweep is cut by the grid's D range, not only by its N range)."""
    sizes = np.unique(N)
    out = {}
    for side, n in (("below", sizes[sizes < min(profile_N) * (1 - MERGE)]),
                    ("above", sizes[sizes > max(profile_N) * (1 + MERGE)])):
        if len(n):
            n = float(n.max() if side == "below" else n.min())
            trained = D[N == n]
            out[side] = (f"N = {n:.3g} would need D = {C / (6 * n):.3g}, outside the {trained.min():.3g} to "
                         f"{trained.max():.3g} it was trained on")
    return out


def profile_records(N, D, L, mode: str, n_slices=8, bin_width=0.1) -> list[dict]:
    """Every usable slice's profile (merged sizes) and both its minima. An optimum at a profile's end that is not
    the sweep's end says which size lies beyond it and why that size is not in this profile."""
    records = []
    for p in sliced(N, D, L, mode, n_slices, bin_width):
        x, y = merge_close(np.log(p["N"]), p["L"])
        if len(x) < MIN_PROFILE:
            continue
        rec = {"C": p["C"], "N": np.exp(x).tolist(), "L": y.tolist(), **fit_profile(x, y)}
        reach = _beyond_reach(p["C"], rec["N"], N, D)
        for kind in KINDS:
            why = rec[kind]["reject"] or ""
            side = "below" if "smallest N" in why else "above" if "largest N" in why else None
            if side in reach:
                end = "smallest" if side == "below" else "largest"
                rec[kind]["reject"] = f"lowest loss at the {end} N this profile reaches ({reach[side]})"
        records.append(rec)
    return records


def rejection_summary(records, kind: str) -> str:
    """One clause: how many profiles were rejected, and for what, most common reason first."""
    from collections import Counter

    reasons = Counter()
    for r in records:
        why = r[kind]["reject"]
        if why:
            reasons[why.split(" (")[0]] += 1
    if not reasons:
        return ""
    parts = [f"{n} {why}" for why, n in reasons.most_common()]
    return f"{sum(reasons.values())} of {len(records)} profiles rejected: " + ", ".join(parts)


def accepted(records, kind: str):
    """(C, N_opt, D_opt, L_opt) of the accepted optima of one kind."""
    acc = [r for r in records if r[kind]["reject"] is None]
    C = np.array([r["C"] for r in acc], dtype=float)
    Nopt = np.exp(np.array([r[kind]["logN"] for r in acc], dtype=float))
    return C, Nopt, C / (6.0 * Nopt), np.array([r[kind]["L"] for r in acc], dtype=float)


def bootstrap_optima(N, D, L, mode: str, n_slices, bin_width, draws: int, seed, floor=None):
    """Per kind, the line draws of a bootstrap over the table's rows and how many draws were dropped."""
    def optima(runs):
        # a row drawn twice repeats a cell, which the slices reduce to one loss anyway: only which rows matter
        u = np.unique(runs)
        records = profile_records(N[u], D[u], L[u], mode, n_slices, bin_width)
        return [accepted(records, kind) for kind in KINDS]

    return lines_over_runs(optima, len(N), draws, seed, variants=len(KINDS), floor=floor)


def isoflop(inputs: Inputs, budgets, *, slicing="auto", n_slices=8, bin_width=0.1, bootstrap=200, seed=0,
            confidence=0.95, workers=None) -> list[OptimalResult]:
    """Two results: 'isoflop-parabola' and 'isoflop-akima', with the profiles kept for the figure."""
    N, D, L = inputs.arrays()
    mode = resolve_slicing(N, D, slicing)
    records = profile_records(N, D, L, mode, n_slices, bin_width)
    enough = {kind: sum(r[kind]["reject"] is None for r in records) >= MIN_LINE_POINTS for kind in KINDS}
    drawn = dict.fromkeys(KINDS)
    if bootstrap and any(enough.values()):
        drawn = dict(zip(KINDS, bootstrap_optima(N, D, L, mode, n_slices, bin_width, int(bootstrap), seed,
                                                 inputs.offset_floor)))
    out = []
    for kind in KINDS:
        method = f"isoflop-{kind}"
        rej = [r for r in records if r[kind]["reject"] is not None]
        notes = [f"{len(records)} IsoFLOP slices ({mode}), {len(rej)} optima rejected"]
        notes += [f"  C = {r['C']:.3g}: {r[kind]['reject']}" for r in rej]
        diag = {"slicing": mode, "slices": len(records), "rejected": len(rej),
                "rejections": [{"C": r["C"], "reason": r[kind]["reject"]} for r in rej],
                "profiles": records, "notes": notes}
        if not records:
            diag["failure"] = ("no IsoFLOP slice has enough N values (need "
                               f"{MIN_PROFILE} per slice; slicing {mode})")
            out.append(OptimalResult(method, diagnostics=diag, converged=False))
            continue
        coefs, line_method, gammas = draws_or_ols(
            drawn[kind] if enough[kind] else None, bootstrap, diag, notes,
            f"left fewer than {MIN_LINE_POINTS} accepted optima (too few slices, or optima at the edge)",
            "take the profile optima as independent observations (they share runs, so too narrow)")
        C, Nopt, Dopt, Lopt = accepted(records, kind)
        result = laws_from_points(method, C, Nopt, Dopt, Lopt, budgets, bootstrap=bootstrap, seed=seed,
                                  confidence=confidence, workers=workers, diagnostics=diag, line_draws=coefs,
                                  line_method=line_method, gamma_draws=gammas, floor=inputs.offset_floor)
        if not result.converged and rej:  # say why the optima are too few, not only that they are
            result.diagnostics["failure"] += f" ({rejection_summary(records, kind)})"
        out.append(result)
    return out
