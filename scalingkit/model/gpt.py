"""The GPT: decoder-only, pre-LayerNorm, rotary position embeddings, tied input/output embedding.

Readable in one sitting, in the style of nanoGPT. Heads = max(4, width / 64) as in the paper; no biases, no
dropout, 4x GELU MLP (nanoGPT habits; the paper does not say). The parameterisation (how weights are initialised,
scaled and given learning rates) is a separate object so that a second one (muP) can be added without touching the
network, and the network is a plain nn.Module so torch.func can stack several variants of one shape later.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from scalingkit.config import PARAM_NAMES
from scalingkit.model.counts import check_shape, n_heads, nonembedding_params, total_params, train_flops_per_token  # noqa: F401


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    n_layer: int = 2
    d_model: int = 128
    context: int = 50
    mlp_ratio: int = 4
    rope_base: float = 10_000.0

    @property
    def n_head(self) -> int:
        return n_heads(self.d_model)

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_head

    def validate(self) -> None:
        check_shape(self.n_layer, self.d_model)
        if self.vocab_size < 2 or self.context < 1:
            from scalingkit.errors import UserError

            raise UserError(f"model shape {asdict(self)} is not a valid GPT")


# ---- the network ----

def rotary_tables(context: int, d_head: int, base: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (base ** (torch.arange(0, d_head, 2, device=device, dtype=torch.float32) / d_head))
    angles = torch.outer(torch.arange(context, device=device, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()  # each (context, d_head / 2)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive coordinate pairs of x (batch, heads, time, d_head) by position-dependent angles."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    t = x.shape[-2]
    cos, sin = cos[:t], sin[:t]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2).type_as(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.d_head = cfg.n_head, cfg.d_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.attn_scale: float | None = None  # None: 1/sqrt(d_head); a parameterisation may override

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_head, self.d_head).transpose(1, 2) for z in (q, k, v))
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.attn_scale)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model, bias=False)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model, bias=False)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.ln_1(x), cos, sin)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model, bias=False)
        self.readout_scale = 1.0  # multiplies the logits; muP divides by the width ratio
        cos, sin = rotary_tables(cfg.context, cfg.d_head, cfg.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx)
        for block in self.blocks:
            x = block(x, self.rope_cos, self.rope_sin)
        x = self.ln_f(x)
        return F.linear(x, self.wte.weight) * self.readout_scale  # tied readout

    def count_params(self, embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n if embedding else n - self.wte.weight.numel()


# ---- parameterisations ----

class StandardParam:
    """nanoGPT's standard parameterisation: N(0, 0.02) everywhere, residual projections 0.02 / sqrt(2 L),
    one learning rate for every parameter, weight decay on matrices only."""

    name = "sp"
    std = 0.02

    def initialise(self, model: GPT, generator: torch.Generator) -> None:
        n_layer = model.cfg.n_layer
        for name, p in model.named_parameters():
            if p.dim() < 2:
                nn.init.ones_(p)  # LayerNorm gains
            elif name.endswith("proj.weight"):
                nn.init.normal_(p, 0.0, self.std / math.sqrt(2 * n_layer), generator=generator)
            else:
                nn.init.normal_(p, 0.0, self.std, generator=generator)

    def configure(self, model: GPT) -> None:
        """Forward-pass multipliers: none in SP."""

    def lr_scale(self, name: str, p: torch.Tensor, width: int) -> float:
        return 1.0

    def param_groups(self, model: GPT, lr: float, weight_decay: float) -> list[dict]:
        """AdamW groups: one per (learning-rate scale, decayed or not); `lr_scale` multiplies the scheduled lr."""
        groups: dict[tuple, dict] = {}
        for name, p in model.named_parameters():
            scale = self.lr_scale(name, p, model.cfg.d_model)
            decay = weight_decay if p.dim() >= 2 else 0.0
            group = groups.setdefault((scale, decay), {"params": [], "weight_decay": decay, "lr": lr * scale,
                                                      "lr_scale": scale, "names": []})
            group["params"].append(p)
            group["names"].append(name)
        return list(groups.values())


class MuParam(StandardParam):
    """Maximal-update parameterisation (Tensor Programs V; nanoGPT-muP, Kalra 2025), relative to a base width.

    With m = width / base_width: hidden matrices are initialised with variance proportional to 1/width
    (std 0.02 / sqrt(m); residual output projections also / sqrt(2 L)) and trained with Adam learning rate lr / m;
    the readout (tied to the embedding) is scaled down by m in the forward pass; attention scores use 1/d_head
    instead of 1/sqrt(d_head) (normalised to agree with SP at the base head size); the embedding and vector-like
    parameters (LayerNorm gains) keep the base learning rate and initialisation, as Tensor Programs V prescribes
    for input weights and biases under Adam. At width = base_width the model and its updates are exactly SP's, so
    a learning rate tuned at the base width transfers.
    """

    name = "mup"

    def __init__(self, base_width: int = 128):
        self.base_width = int(base_width)

    def _mult(self, width: int) -> float:
        return width / self.base_width

    def initialise(self, model: GPT, generator: torch.Generator) -> None:
        m, n_layer = self._mult(model.cfg.d_model), model.cfg.n_layer
        for name, p in model.named_parameters():
            if p.dim() < 2:
                nn.init.ones_(p)
            elif name == "wte.weight":
                nn.init.normal_(p, 0.0, self.std, generator=generator)  # input-like: O(1) whatever the width
            elif name.endswith("proj.weight"):
                nn.init.normal_(p, 0.0, self.std / math.sqrt(m * 2 * n_layer), generator=generator)
            else:
                nn.init.normal_(p, 0.0, self.std / math.sqrt(m), generator=generator)
        self.configure(model)

    def configure(self, model: GPT) -> None:
        m = self._mult(model.cfg.d_model)
        model.readout_scale = 1.0 / m
        base_head = GPTConfig(vocab_size=2, d_model=self.base_width).d_head
        for block in model.blocks:
            block.attn.attn_scale = math.sqrt(base_head) / model.cfg.d_head  # = 1/sqrt(d_head) at the base

    def lr_scale(self, name: str, p: torch.Tensor, width: int) -> float:
        if p.dim() >= 2 and name != "wte.weight":
            return 1.0 / self._mult(width)  # matrix-like hidden weights
        return 1.0


PARAMETERISATIONS = {"sp": StandardParam, "mup": MuParam}
assert set(PARAMETERISATIONS) == set(PARAM_NAMES)


def get_parameterisation(name: str, base_width: int = 128):
    from scalingkit.errors import UserError

    if name not in PARAMETERISATIONS:
        raise UserError(f"unknown parameterisation {name!r} (known: {', '.join(PARAMETERISATIONS)})")
    return MuParam(base_width) if name == "mup" else StandardParam()


def build_model(cfg: GPTConfig, param: str, seed: int, base_width: int = 128) -> tuple[GPT, object]:
    """A freshly initialised GPT; deterministic for a seed (its own generator, so global RNG state is irrelevant)."""
    parameterisation = get_parameterisation(param, base_width)
    model = GPT(cfg)
    generator = torch.Generator().manual_seed(int(seed))
    parameterisation.initialise(model, generator)
    parameterisation.configure(model)
    return model, parameterisation
