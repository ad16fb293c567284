"""What a run is: its training settings and its coordinates. Plain data, no torch, so that planning, status and
the statistics layer never pay for importing the engine."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

PARAM_NAMES = ("sp", "mup")  # parameterisations the model implements (model.PARAMETERISATIONS checks it agrees)


@dataclass(frozen=True)
class TrainSettings:
    """Everything about training that is not a cube coordinate. Recorded in the store with every sweep."""

    context: int = 50
    batch: int = 64
    weight_decay: float = 0.01
    warmup_fraction: float = 0.02
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0  # 0 disables clipping
    eval_points: int = 24
    eval_sequences: int = 256
    eval_seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    checkpoint_seconds: float = 30.0  # how often a running run saves its partial curve (0: at every point)
    # how often a running run saves a checkpoint to resume from after a kill or preemption (model, optimiser, data
    # streams, partial curve: train/checkpoint.py); 0: never. Separate from checkpoint_seconds: a partial curve is a
    # few kB written into the cube for notebooks, a checkpoint is ~3x the model's parameters written beside it.
    checkpoint_minutes: float = 10.0
    mup_base_width: int = 128  # muP: the width at which muP coincides with SP (learning rates transfer from it)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


@dataclass(frozen=True)
class RunConfig:
    family: str
    param: str
    n_layer: int
    d_model: int
    tokens: int  # D, the token budget
    lr: float
    seed: int
    settings: TrainSettings = field(default_factory=TrainSettings)

    @property
    def steps(self) -> int:
        return self.tokens // (self.settings.batch * self.settings.context)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["settings"] = self.settings.to_dict()
        return d

    def config_hash(self, family_spec: dict) -> str:
        """sha256 of everything that determines the run's result, device excepted."""
        d = self.to_dict()
        d["settings"].pop("device")
        d["settings"].pop("checkpoint_seconds")
        d["settings"].pop("checkpoint_minutes")  # added later: hashes of older runs stay as they were
        d["family_spec"] = family_spec
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- checks where a value enters

SEED_MAX = 2**63 - 1  # seeds are int64 labels in the cube; numpy and torch take any non-negative one below this


def check_settings(s: TrainSettings, where: str) -> None:
    """Every training setting in its range: a UserError naming the key otherwise. NaN and infinities never pass (a
    NaN gradient clip once silently turned clipping off, a NaN weight decay made every run diverge)."""
    import math

    from scalingkit.errors import UserError

    def bad(key, must):
        raise UserError(f"{where}: training.{key} = {getattr(s, key)!r} {must}")

    for key in ("context", "batch", "eval_points", "eval_sequences"):
        if getattr(s, key) < 1:
            bad(key, "must be at least 1")
    reals = {"weight_decay": "must be a finite number >= 0",
             "grad_clip": "must be a finite number >= 0 (0 turns clipping off)",
             "checkpoint_seconds": "must be a finite number of seconds >= 0 (0: at every point)",
             "checkpoint_minutes": "must be a finite number of minutes >= 0 (0: never)"}
    for key, must in reals.items():
        value = getattr(s, key)
        if not math.isfinite(value) or value < 0:
            bad(key, must)
    if not (math.isfinite(s.eps) and s.eps > 0):
        bad("eps", "must be a finite number > 0 (Adam divides by sqrt(v) + eps)")
    if not all(math.isfinite(b) and 0 <= b < 1 for b in s.betas):
        bad("betas", "must be two numbers in [0, 1) (Adam's moment decay rates)")
    if not 0 <= s.warmup_fraction < 1:  # NaN fails too
        bad("warmup_fraction", "must be in [0, 1)")
    if not 0 <= s.eval_seed <= SEED_MAX:
        bad("eval_seed", f"must be a whole number from 0 to {SEED_MAX}")
    if s.mup_base_width < 1:
        bad("mup_base_width", "must be at least 1")
    if s.device not in ("auto", "cpu", "cuda"):
        raise UserError(f"{where}: training.device must be auto, cpu or cuda")


# ---------------------------------------------------------------- sizes: what fits in this machine's memory

def memory_bytes(device: str = "cpu") -> int | None:
    """This machine's memory for `device`: the RAM (MemTotal) for the CPU, the first GPU's total memory for cuda
    (None where there is no CUDA device here: the runs go elsewhere, and their memory is not known here)."""
    import os

    if device in ("cuda", "auto"):
        try:
            import torch

            if torch.cuda.is_available():
                return int(torch.cuda.get_device_properties(0).total_memory)
        except Exception:  # noqa: BLE001 - no usable CUDA: the CPU's memory, or none known for cuda
            pass
        if device == "cuda":
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    n = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.3g} {unit}"
        n /= 1024
    return f"{n:.3g} EiB"


def check_memory(need: float, what: str, device: str = "cpu", why: str = "") -> None:
    """A UserError, before anything is allocated, when `what` needs more memory than this machine has for `device`
    ('... needs about 44 TiB of memory{why}; this machine has 23 GiB'). No check where the device is not here."""
    from scalingkit.errors import UserError

    have = memory_bytes(device)
    if have is not None and need > have:
        gpu = " of GPU memory" if device in ("cuda", "auto") and cuda_here() else ""
        raise UserError(f"{what} needs about {format_bytes(need)} of memory{why}; this machine has "
                        f"{format_bytes(have)}{gpu}")


def cuda_here() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001
        return False
