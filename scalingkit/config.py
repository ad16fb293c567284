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
