"""AdamW and gradient clipping for stacked parameters, every variant with its own learning rate and its own norm.

torch.optim.AdamW takes one scalar learning rate per group, so it cannot step K variants with K learning rates.
This is its single-tensor algorithm (torch/optim/adam.py, decoupled weight decay) with the scalar factors turned
into per-variant columns (K, 1, ..., 1); the factors are computed in float64 and rounded to float32 as torch rounds
its Python scalars, so a variant steps exactly as it would alone up to the order of float operations.
"""
from __future__ import annotations

import math

import numpy as np
import torch


class StackedAdamW:
    def __init__(self, params: dict[str, torch.Tensor], groups: dict[str, tuple[float, float]],
                 betas: tuple[float, float], eps: float):
        """params: name -> leaf (K, ...); groups: name -> (lr_scale, weight_decay) from the parameterisation."""
        self.params, self.groups = params, groups
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.steps = 0
        self.exp_avg = {n: torch.zeros_like(p) for n, p in params.items()}
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in params.items()}

    def keep(self, params: dict[str, torch.Tensor], rows: list[int]) -> None:
        """Follow StackedGPT.keep: the surviving variants' parameters and moments."""
        self.params = params
        self.exp_avg = {n: m[rows] for n, m in self.exp_avg.items()}
        self.exp_avg_sq = {n: v[rows] for n, v in self.exp_avg_sq.items()}

    def state_dict(self) -> dict:
        """The step count and both moments (for a checkpoint)."""
        return {"steps": self.steps, "exp_avg": {n: m.detach() for n, m in self.exp_avg.items()},
                "exp_avg_sq": {n: v.detach() for n, v in self.exp_avg_sq.items()}}

    def load_state_dict(self, state: dict, params: dict[str, torch.Tensor]) -> None:
        """Go on from `state_dict()`'s state, stepping `params` (the stack's, loaded from the same checkpoint)."""
        for key in ("exp_avg", "exp_avg_sq"):
            moments = state[key]
            if set(moments) != set(params) or any(moments[n].shape != p.shape for n, p in params.items()):
                raise ValueError(f"the optimiser's {key} does not match the stack's parameters")
        self.params, self.steps = params, int(state["steps"])
        self.exp_avg = {n: state["exp_avg"][n].to(p.device).contiguous() for n, p in params.items()}
        self.exp_avg_sq = {n: state["exp_avg_sq"][n].to(p.device).contiguous() for n, p in params.items()}

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    @torch.no_grad()
    def step(self, lrs: np.ndarray) -> None:
        """One AdamW step; lrs (K,) are the scheduled learning rates of the variants (before per-group scales)."""
        self.steps += 1
        bias1 = 1 - self.beta1 ** self.steps
        bias2_sqrt = math.sqrt(1 - self.beta2 ** self.steps)
        columns = _Columns(next(iter(self.params.values())).device)
        for name, p in self.params.items():
            scale, decay = self.groups[name]
            lr = lrs * scale
            if decay:
                p.mul_(columns(1 - lr * decay, p.dim()))
            m, v, g = self.exp_avg[name], self.exp_avg_sq[name], p.grad
            m.lerp_(g, 1 - self.beta1)
            v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            denom = (v.sqrt() / bias2_sqrt).add_(self.eps)
            p.add_(m * columns(-lr / bias1, p.dim()) / denom)  # addcdiv's order: (value * m) / denom


class _Columns:
    """Per-variant float64 factors -> float32 tensors shaped (K, 1, ..., 1), one host-to-device copy per value."""

    def __init__(self, device: torch.device):
        self.device, self.cache = device, {}

    def __call__(self, values: np.ndarray, dim: int) -> torch.Tensor:
        key = values.tobytes()
        if key not in self.cache:
            self.cache[key] = torch.from_numpy(values.astype(np.float32)).to(self.device)
        col = self.cache[key]
        return col.view((-1,) + (1,) * (dim - 1))


@torch.no_grad()
def clip_grad_norms(params: dict[str, torch.Tensor], max_norm: float) -> torch.Tensor:
    """torch.nn.utils.clip_grad_norm_ for each variant separately: norm over all of variant k's gradients, scaled
    by min(1, max_norm / (norm + 1e-6)). Returns the K norms before clipping."""
    grads = [p.grad for p in params.values()]
    per_tensor = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads], dim=1)
    norms = torch.linalg.vector_norm(per_tensor, dim=1)
    coef = torch.clamp(max_norm / (norms + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.view((-1,) + (1,) * (g.dim() - 1)))
    return norms
