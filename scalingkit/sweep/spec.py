"""Sweep specifications: a TOML file names families and a grid; it expands to cells of the cube.

    name = "er-cpu-demo"
    [families.er200]            # the family's label in the cube
    kind = "er"
    nodes = 200
    edges = 1000
    seed = 0
    [grid]
    params = ["sp"]
    layers = [2]
    widths = [16, 32, 64]
    tokens = [16000, 64000]     # D, token budgets
    lrs = [1e-3, 3e-3, 1e-2]
    seeds = [0]
    [training]                  # optional; defaults in engine.TrainSettings
    context = 50
    batch = 32
    [lr_search]                 # optional: search the lr grid per (family, param, N, D) (lrsearch.py)
    start = [3e-3]
    beyond = 2                  # and up to 2 steps past each end of it (the default), by the grid's ratio there
    [executor]                  # optional: where `train` runs it, a cluster profile (the flags override it)
    kind = "slurm"              # local | slurm | dask; then that executor's settings (run/executors.py)
    partition = "gpu"

Validation names the bad key in a one-line UserError. A store keeps every sweep it was filled from, so
`train --fill-missing` without a sweep re-plans from them.
"""
from __future__ import annotations

import itertools
import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from scalingkit.config import PARAM_NAMES, SEED_MAX, RunConfig, TrainSettings, check_settings
from scalingkit.errors import UserError
from scalingkit.model.counts import check_shape, nonembedding_params, total_params
from scalingkit.store import Cell
from scalingkit.sweep import lrsearch

TOP_KEYS = {"name", "description", "families", "grid", "training", "lr_search", "executor"}
GRID_KEYS = {"params": str, "layers": int, "widths": int, "tokens": int, "lrs": float, "seeds": int}
SETTING_KEYS = {f.name: f.type for f in fields(TrainSettings)}
# Adam's peak learning rate: below, a run's updates vanish in float32 rounding; far above, it only diverges (the tests
# drive runs to divergence with 1e8), and past float32's range (3.4e38) a run cannot even start
LR_RANGE = (1e-9, 1e10)
TOKENS_MAX = 2**53  # token budgets and their FLOP counts stay exact in the cube's float64 arithmetic below this


@dataclass(frozen=True)
class Sweep:
    name: str
    families: dict  # label -> spec table
    grid: dict  # key -> list
    settings: TrainSettings
    source: dict  # the validated table, as stored in the cube
    # {"start": [...], "max_rounds": n, "beyond": k, optional "lr_min", "lr_max"} (lrsearch.validate); None: train
    # the whole lr grid
    lr_search: dict | None = None
    # the [executor] table: where `train` runs it unless the command line says otherwise (run/executors.py)
    executor: dict | None = None

    @property
    def shapes(self) -> dict:
        """N label (non-embedding parameter count) -> (n_layer, d_model)."""
        out = {}
        for n_layer, width in itertools.product(self.grid["layers"], self.grid["widths"]):
            n = nonembedding_params(n_layer, width)
            if n in out and out[n] != (n_layer, width):
                raise UserError(f"sweep {self.name!r}: shapes {out[n]} and {(n_layer, width)} have the same size N={n}")
            out[n] = (n_layer, width)
        return out

    def cells(self) -> list[Cell]:
        """The grid's cells (a search's learning rates past the grid are labels added as it wants them:
        plan.block_labels)."""
        g = self.grid
        return [
            Cell(f, p, n, d, lr, s)
            for f, p, n, d, lr, s in itertools.product(
                self.families, g["params"], sorted(self.shapes), g["tokens"], g["lrs"], g["seeds"]
            )
        ]

    def run_config(self, cell: Cell) -> RunConfig:
        n_layer, width = self.shapes[cell.N]
        return RunConfig(family=cell.family, param=cell.param, n_layer=n_layer, d_model=width, tokens=cell.D,
                         lr=cell.lr, seed=cell.seed, settings=self.settings)


def load(path) -> Sweep:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"sweep file {path} does not exist")
    try:
        table = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"sweep file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise UserError(f"sweep file {path} is not a text file") from None
    return from_table(table, default_name=path.stem)


def from_table(table: dict, default_name: str = "sweep", check_families: bool = True) -> Sweep:
    """Validate a sweep table. check_families=False skips building the families (for sweeps already stored in a
    cube, which were checked when they were added; building a large graph takes seconds)."""
    name = str(table.get("name", default_name))
    where = f"sweep {name!r}"
    unknown = set(table) - TOP_KEYS
    if unknown:
        raise UserError(f"{where}: unknown key {sorted(unknown)[0]!r} (allowed: {', '.join(sorted(TOP_KEYS))})")
    for key in ("families", "grid"):
        if not isinstance(table.get(key), dict) or not table[key]:
            raise UserError(f"{where}: needs a [{key}] table" if key == "grid" else f"{where}: needs [families.NAME] tables")
    families = {}
    for label, spec in table["families"].items():
        if not isinstance(spec, dict):
            raise UserError(f"{where}: families.{label} must be a table with a 'kind'")
        families[str(label)] = dict(spec)
    grid = _validate_grid(table["grid"], where)
    settings = _validate_settings(table.get("training", {}), where)
    source = {"name": name, "families": families, "grid": grid, "training": settings.to_dict()}
    lr_search = lrsearch.validate(table.get("lr_search"), grid["lrs"], where)
    if lr_search is not None:
        source["lr_search"] = lr_search
    if "description" in table:
        source["description"] = str(table["description"])
    executor = _validate_executor(table.get("executor"), where)
    if executor is not None:
        source["executor"] = executor
    sweep = Sweep(name=name, families=families, grid=grid, settings=settings, source=source, lr_search=lr_search,
                  executor=executor)
    _check_buildable(sweep, where, check_families)
    return sweep


def _validate_grid(grid: dict, where: str) -> dict:
    out = {}
    unknown = set(grid) - set(GRID_KEYS)
    if unknown:
        raise UserError(f"{where}: unknown key grid.{sorted(unknown)[0]} (allowed: {', '.join(GRID_KEYS)})")
    for key, typ in GRID_KEYS.items():
        values = grid.get(key, [2] if key == "layers" else [0] if key == "seeds" else ["sp"] if key == "params" else None)
        if values is None:
            raise UserError(f"{where}: grid.{key} is required")
        if not isinstance(values, list) or not values:
            raise UserError(f"{where}: grid.{key} must be a non-empty list")
        try:
            converted = [_convert(v, typ) for v in values]
        except (TypeError, ValueError):
            raise UserError(f"{where}: grid.{key} must be a list of {typ.__name__} values, got {values!r}") from None
        if typ is not str and any(v <= 0 for v in converted) and key != "seeds":
            raise UserError(f"{where}: grid.{key} must be positive, got {values!r}")
        if len(set(converted)) != len(converted):
            raise UserError(f"{where}: grid.{key} has repeated values {values!r}")
        out[key] = converted
    _check_ranges(out, where)
    return out


def _check_ranges(grid: dict, where: str) -> None:
    """Values that convert but cannot train: NaN or absurd learning rates, budgets past exact arithmetic, seeds
    that no generator takes."""
    lo, hi = LR_RANGE
    bad = [v for v in grid["lrs"] if not (math.isfinite(v) and lo <= v <= hi)]
    if bad:
        raise UserError(f"{where}: grid.lrs has {bad[0]!r}: every learning rate must be finite and from {lo:g} to "
                        f"{hi:g} (below, a run's updates vanish in float32 rounding; above, it can only diverge)")
    big = [v for v in grid["tokens"] if v > TOKENS_MAX]
    if big:
        raise UserError(f"{where}: grid.tokens has {big[0]:.4g}: a token budget must be at most 2^53 = "
                        f"{TOKENS_MAX:.4g} (counts stay exact below it)")
    seeds = [v for v in grid["seeds"] if not 0 <= v <= SEED_MAX]
    if seeds:
        raise UserError(f"{where}: grid.seeds has {seeds[0]}: a seed must be a whole number from 0 to 2^63 - 1")


def _convert(v, typ):
    if isinstance(v, bool):
        raise TypeError
    if typ is int:
        if isinstance(v, float) and not v.is_integer():
            raise ValueError
        return int(v)
    if typ is float:
        return float(f"{float(v):.12g}")  # one canonical spelling of a learning rate
    if not isinstance(v, str):
        raise TypeError
    return v


def _validate_settings(training: dict, where: str) -> TrainSettings:
    if not isinstance(training, dict):
        raise UserError(f"{where}: [training] must be a table")
    unknown = set(training) - set(SETTING_KEYS)
    if unknown:
        raise UserError(f"{where}: unknown key training.{sorted(unknown)[0]} (allowed: {', '.join(SETTING_KEYS)})")
    defaults = TrainSettings()
    values = {}
    for key, value in training.items():
        default = getattr(defaults, key)
        try:
            if isinstance(default, tuple):
                value = tuple(float(x) for x in value)
                if len(value) != len(default):
                    raise ValueError
            elif isinstance(value, bool) or not isinstance(value, (type(default), int)):
                raise TypeError
            else:
                value = type(default)(value)
        except (TypeError, ValueError):
            raise UserError(f"{where}: training.{key} = {value!r} is not a valid {type(default).__name__}") from None
        values[key] = value
    settings = TrainSettings(**values)
    check_settings(settings, where)  # every value in its range: finite, positive where it must be
    check_shape(1, settings.mup_base_width)
    return settings


EXECUTOR_KEYS = {"kind": str, "workers": int, "partition": str, "gpus_per_task": int, "cpus_per_task": int,
                 "mem": str, "time": (str, int), "array_parallelism": int, "slurm_options": dict, "scheduler": str}


def _validate_executor(table, where: str) -> dict | None:
    """The optional [executor] table: a cluster profile (kind = "local" | "slurm" | "dask", and that executor's
    settings, as the train command's flags name them). Flags override it; run/executors.py checks the rest."""
    if table is None:
        return None
    if not isinstance(table, dict):
        raise UserError(f"{where}: [executor] must be a table")
    unknown = set(table) - set(EXECUTOR_KEYS)
    if unknown:
        raise UserError(f"{where}: unknown key executor.{sorted(unknown)[0]} (allowed: {', '.join(EXECUTOR_KEYS)})")
    out = {}
    for key, value in table.items():
        typ = EXECUTOR_KEYS[key]
        if isinstance(value, bool) or not isinstance(value, typ):
            names = "/".join(t.__name__ for t in typ) if isinstance(typ, tuple) else typ.__name__
            raise UserError(f"{where}: executor.{key} = {value!r} is not a {names}")
        if typ is int and value < (0 if key == "workers" else 1):
            raise UserError(f"{where}: executor.{key} must be at least {0 if key == 'workers' else 1}")
        if key == "slurm_options":
            bad = [k for k, v in value.items() if isinstance(v, (dict, list))]
            if bad:
                raise UserError(f"{where}: executor.slurm_options.{bad[0]} must be a plain value")
            value = {str(k): v for k, v in value.items()}
        out[key] = value
    if out.get("kind", "local") not in ("local", "slurm", "dask"):
        raise UserError(f"{where}: executor.kind must be local, slurm or dask, got {out['kind']!r}")
    return out


def _check_buildable(sweep: Sweep, where: str, check_families: bool) -> None:
    for p in sweep.grid["params"]:
        if p not in PARAM_NAMES:
            raise UserError(f"{where}: grid.params: unknown parameterisation {p!r} (known: {', '.join(PARAM_NAMES)})")
    for n_layer, width in sweep.shapes.values():
        check_shape(n_layer, width)
    per_step = sweep.settings.batch * sweep.settings.context
    small = [d for d in sweep.grid["tokens"] if d < per_step]
    if small:
        raise UserError(f"{where}: grid.tokens {small[0]} is less than one step ({sweep.settings.batch} x "
                        f"{sweep.settings.context} = {per_step} tokens)")
    if check_families:
        from scalingkit.families import build_family

        vocab = {}
        for label, spec in sweep.families.items():
            vocab[label] = int(build_family(label, spec).vocab_size)  # raises UserError naming the bad key
        check_memory(sweep, where, vocab)


def check_memory(sweep: Sweep, where: str, vocab: dict) -> None:
    """Refuse, before any store is made or model built, a sweep whose runs cannot fit in this machine's memory for
    the sweep's device (train/memory.py's model of a run: weights, Adam moments, activations, the evaluation chunk;
    plus the held-out set and the curves), naming the run and what takes most of it. A sweep for CUDA on a machine
    without it is not checked here (its runs go elsewhere)."""
    from scalingkit.config import check_memory as check, cuda_here
    from scalingkit.train.memory import fixed_bytes, variant_bytes

    s = sweep.settings
    kind = "cuda" if s.device == "cuda" or (s.device == "auto" and cuda_here()) else "cpu"
    for label, v in vocab.items():
        for n_layer, width in sorted(sweep.shapes.values(), key=lambda shape: -nonembedding_params(*shape)):
            cfg = RunConfig(label, "sp", n_layer, width, max(sweep.grid["tokens"]), sweep.grid["lrs"][0], 0, s)
            weights = 16 * total_params(n_layer, width, v)
            parts = {"weights, gradients and Adam moments": weights,
                     "activations (training.batch x training.context)":
                         variant_bytes(cfg, v, kind) - weights + fixed_bytes(cfg, v, kind),
                     "the held-out set (training.eval_sequences)": 3 * 8 * s.eval_sequences * (s.context + 1),
                     "the curves (training.eval_points)": 8 * 20 * s.eval_points}
            biggest = max(parts, key=parts.get)
            check(sum(parts.values()), f"{where}: one run of {label} (width {width:,}, {n_layer:,} layers, vocabulary "
                  f"{v:,})", s.device, why=f", most of it for {biggest}")
