"""Run the chosen methods on one group of runs and collect them in an OptimalReport with provenance."""
from __future__ import annotations

import numpy as np

from scalingkit.errors import UserError
from scalingkit.optimal.inputs import Inputs
from scalingkit.optimal.result import OptimalReport

METHODS = ("envelope", "isoflop", "parametric", "surrogate")


def methods_from(names) -> list[str]:
    """'all' or any of METHODS (repeats and order ignored: the report keeps METHODS' order)."""
    names = [n.strip() for item in ([names] if isinstance(names, str) else names) for n in str(item).split(",")]
    names = [n for n in names if n]
    if not names:
        raise UserError("no method given (use envelope, isoflop, parametric, surrogate or all)")
    for n in names:
        if n != "all" and n not in METHODS:
            raise UserError(f"unknown method {n!r} (use {', '.join(METHODS)} or all)")
    return list(METHODS) if "all" in names else [m for m in METHODS if m in names]


DEFAULTS = {
    "bootstrap": 200,  # PAPER.md: 200 draws for compute-optimal fits
    "seed": 0,
    "confidence": 0.95,
    "interval": "bca",  # parametric: the fits' default
    # the runs' final points only: a run's earlier points are at a learning rate its cosine schedule has not yet
    # decayed, above what a run of that length reaches, and they pull the envelope toward long runs of small
    # models (measured on the N-axis pilots, benchmarks/RESULTS.md: a = 0.12-0.15 with every point, 0.32-0.42 with
    # final points, against 0.45-0.48 from the Chinchilla fit); 0.0 is Hoffmann's every-point envelope
    "envelope_min_fraction": 1.0,
    "envelope_edges": "clip",  # leave envelope points on the smallest or largest N out of the fits
    "isoflop_slicing": "auto",
    "isoflop_slices": 8,
    "isoflop_bin_width": 0.1,
    "grid": 100,  # PAPER.md: 50 to 100 points per axis
    "surrogates": ("mlp", "kernel"),
    "mlp": {},  # MLPSurrogate settings (defaults: the paper's)
    "kernel": {},
}


def default_budgets(inputs: Inputs) -> list[float]:
    """The data's largest compute 6 N D, as `fit --form chinchilla` uses."""
    N, D, _ = inputs.arrays()
    return [float(np.max(6.0 * N * D))]


def run_methods(inputs: Inputs, methods=("all",), budgets=None, workers=None, **settings) -> OptimalReport:
    from scalingkit.fit.floor import offset_notes
    from scalingkit.fit.provenance import data_hash, package_versions

    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise UserError(f"unknown compute-optimal setting(s): {', '.join(sorted(unknown))}")
    s = {**DEFAULTS, **settings}
    if int(s["bootstrap"]) < 0:
        raise UserError(f"bootstrap must be >= 0, got {s['bootstrap']}")
    if not 0 < float(s["confidence"]) < 1:
        raise UserError(f"confidence must be between 0 and 1, got {s['confidence']}")
    budgets = default_budgets(inputs) if not budgets else [float(b) for b in budgets]
    if any(not np.isfinite(b) or b <= 0 for b in budgets):
        raise UserError("budgets must be positive FLOP counts")
    methods = methods_from(methods)
    common = {"bootstrap": int(s["bootstrap"]), "seed": s["seed"], "confidence": float(s["confidence"]),
              "workers": workers}
    from tqdm.auto import tqdm

    from scalingkit.progress import resolve

    results = []
    # the surrogates and the bootstraps over runs take tens of seconds: a bar says which method is running (stderr)
    bar = tqdm(methods, desc=f"compute-optimal [{inputs.label}]", disable=not resolve(None), leave=False)
    for m in bar:
        bar.set_postfix_str(m)
        if m == "envelope":
            from scalingkit.optimal.envelope import envelope

            results.append(envelope(inputs, budgets, min_fraction=s["envelope_min_fraction"],
                                    edges=s["envelope_edges"], **common))
        elif m == "isoflop":
            from scalingkit.optimal.isoflop import isoflop

            results += isoflop(inputs, budgets, slicing=s["isoflop_slicing"], n_slices=s["isoflop_slices"],
                               bin_width=s["isoflop_bin_width"], **common)
        elif m == "parametric":
            from scalingkit.optimal.parametric import parametric

            results.append(parametric(inputs, budgets, interval=s["interval"], **common))
        elif m == "surrogate":
            from scalingkit.optimal.surrogate import surrogate

            for kind in s["surrogates"]:
                results.append(surrogate(inputs, budgets, kind=kind, grid=int(s["grid"]),
                                         surrogate_settings=s.get(kind), **common))
    record = {**s, "methods": methods, "budgets": budgets, "n_convention": inputs.n_convention,
              "flops": inputs.flops}
    N, D, L = inputs.arrays()
    prov = {"label": inputs.label, "source": inputs.source, "data_sha256": data_hash({"N": N, "D": D, "loss": L}),
            "n_runs": int(len(inputs.curves) if inputs.curves is not None else len(N)), "n_table": int(len(N)),
            "seed": s["seed"], "versions": package_versions()}
    if inputs.curves is not None:  # the envelope reads the curves: they are data too
        cv = inputs.curves
        prov["curves_sha256"] = data_hash({"compute": cv.compute.ravel(), "loss": cv.loss.ravel()})
    floor, floor_kind = inputs.source.get("loss_floor", np.nan), inputs.source.get("loss_floor_kind", "unknown")
    for r in results:
        r.provenance = {"label": inputs.label, "data_sha256": prov["data_sha256"], "seed": s["seed"]}
        notes = offset_notes(r.params, r.intervals, floor, floor_kind) if r.converged else []
        notes += outside_sampled(r, N, D)
        if notes:
            r.diagnostics.setdefault("notes", []).extend(notes)
    return OptimalReport(inputs.label, results, settings=record, provenance=prov)


def outside_sampled(result, N, D) -> list[str]:
    """A note for every budget whose N_opt or D_opt lies outside the sizes the runs sampled: there the allocation is
    the fitted law extrapolated, not something the runs measured."""
    if not result.converged:
        return []
    notes = []
    for row in result.budgets:
        for name, have in (("N_opt", N), ("D_opt", D)):
            value = row["values"].get(name)
            if value is not None and np.isfinite(value) and not have.min() <= value <= have.max():
                result.diagnostics.setdefault("extrapolated", []).append({"C": row["C"], "name": name})
                notes.append(f"{name} = {value:.3g} at C = {row['C']:.3g} lies outside the sampled range "
                             f"[{have.min():.3g}, {have.max():.3g}]: an extrapolation of the fitted law, not a "
                             "measured optimum")
    return notes
