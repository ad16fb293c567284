"""K GPTs of one shape held as stacked parameters, run together with batched matrix products.

Variant k's weights are slice k of every tensor (K, ...). The forward pass is model.GPT.forward written once for a
stack: every nn.Linear becomes a bmm over the K weight slices, the K embeddings are one table indexed with per-variant
offsets, and attention folds K into the batch so the fused kernel runs once. Variants never mix, so each one computes
what the plain module computes on its slice (up to float rounding: tests/test_batched.py states the tolerance).

Why not torch.func.vmap over functional_call: on the CPU vmap has no batching rule for the fused attention kernel
and loops over the K variants there; a prototype of it ran 0.7-0.9x as fast as this file at widths 16-128 (K = 14,
one thread). The price is that this file restates GPT.forward; `check_template` refuses a model whose parameters are
not the ones this forward uses, and the batched-equals-unbatched test catches any other drift. Two CPU-minded
changes of form, same arithmetic: the rotary rotation is one complex product, and the readout and loss are taken a
few variants at a time so their logits stay in cache.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from scalingkit.model.gpt import GPT

BLOCK_PARAMS = ("ln_1.weight", "attn.qkv.weight", "attn.proj.weight", "ln_2.weight", "mlp.fc.weight",
                "mlp.proj.weight")


def expected_params(n_layer: int) -> set[str]:
    return {"wte.weight", "ln_f.weight"} | {f"blocks.{i}.{p}" for i in range(n_layer) for p in BLOCK_PARAMS}


def check_template(model: GPT) -> None:
    names = {n for n, _ in model.named_parameters()}
    want = expected_params(model.cfg.n_layer)
    eps = {m.eps for m in model.modules() if isinstance(m, torch.nn.LayerNorm)}
    if names != want or eps != {1e-5}:
        raise RuntimeError(f"stacked forward does not know the model's parameters {sorted(names ^ want)}: update "
                           "scalingkit/train/stacked.py to match model.gpt.GPT")


class StackedGPT:
    """Parameters of K variants as one dict of leaf tensors (K, ...) and a forward over all of them at once.

    `template` is one of the variants' modules: it supplies the shape, the parameterisation's forward multipliers
    (readout_scale, attn_scale) and the rotary tables; its own weights are not used."""

    def __init__(self, models: list[GPT], device: torch.device):
        self.template = models[0].to(device)
        check_template(self.template)
        names = [n for n, _ in self.template.named_parameters()]
        per_model = [dict(m.named_parameters()) for m in models]
        self.params = {n: torch.stack([pm[n].detach().to(device) for pm in per_model]).requires_grad_()
                       for n in names}
        self.rotation = torch.complex(self.template.rope_cos, self.template.rope_sin)  # e^(i angle), (T, d_head / 2)

    def _rotate(self, x: torch.Tensor) -> torch.Tensor:
        """model.apply_rotary as one complex product per coordinate pair (one kernel instead of six: measured 4x
        faster on the CPU). Computed in float32 and cast back, as apply_rotary does."""
        t = x.shape[-2]
        pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
        return torch.view_as_real(pairs * self.rotation[:t]).flatten(-2).type_as(x)

    @property
    def k(self) -> int:
        return next(iter(self.params.values())).shape[0]

    def keep(self, rows: list[int]) -> None:
        """Drop every variant not in `rows` (a frozen variant stops costing compute)."""
        self.params = {n: p.detach()[rows].requires_grad_() for n, p in self.params.items()}

    def load(self, params: dict[str, torch.Tensor], k: int) -> None:
        """Take the K = k variants' parameters `params` (a checkpoint's): the same names and shapes, any K."""
        device = next(iter(self.params.values())).device
        if set(params) != set(self.params):
            raise ValueError(f"parameters {sorted(set(params) ^ set(self.params))} do not match the stack's")
        for n, p in params.items():
            if tuple(p.shape) != (k, *self.params[n].shape[1:]):
                raise ValueError(f"{n} has shape {tuple(p.shape)}, the stack wants {(k, *self.params[n].shape[1:])}")
        self.params = {n: params[n].detach().to(device).contiguous().requires_grad_() for n in self.params}

    def variant(self, k: int) -> dict[str, torch.Tensor]:
        """Variant k's weights, named as in the module (for tests and inspection)."""
        return {n: p.detach()[k] for n, p in self.params.items()}

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (K, B, T) token ids -> logits (K, B, T, V)."""
        K, B, T = idx.shape
        return self.readout(self.features(idx), slice(None)).view(K, B, T, -1)

    def readout(self, x: torch.Tensor, rows: slice) -> torch.Tensor:
        """Tied readout of the final features x (k, M, d) of the variants `rows` -> logits (k, M, V)."""
        logits = _linear(x, self.params["wte.weight"][rows])
        scale = self.template.readout_scale
        return logits if scale == 1.0 else logits * scale

    def token_losses(self, idx: torch.Tensor, targets: torch.Tensor, autocast, rows_per_chunk: int):
        """Per-token cross-entropy (K, B * T) in float32, the readout and loss taken a few variants at a time.

        Why chunks: on the CPU the logits of all K variants at once fall out of the cache and the softmax becomes
        memory-bound (measured 5x slower than K separate ones); a chunk of a few MB stays in it."""
        K = idx.shape[0]
        targets = targets.reshape(K, -1)
        out = [F.cross_entropy(logits.float().flatten(0, 1), targets[rows].flatten(), reduction="none")
               for rows, logits in self.logit_chunks(idx, autocast, rows_per_chunk)]
        return torch.cat(out).view(K, -1)

    def logit_chunks(self, idx: torch.Tensor, autocast, rows_per_chunk: int):
        """(rows, logits (k, B * T, V)) for the variants a few at a time (see token_losses for why)."""
        K = idx.shape[0]
        with autocast():
            x = self.features(idx)
        for start in range(0, K, rows_per_chunk):
            rows = slice(start, start + rows_per_chunk)
            with autocast():
                logits = self.readout(x[rows], rows)
            yield rows, logits

    def features(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (K, B, T) token ids -> final normalised features (K, B * T, d), the readout's input."""
        p, cfg = self.params, self.template.cfg
        K, B, T = idx.shape
        d, V = cfg.d_model, cfg.vocab_size
        wte = p["wte.weight"]
        offsets = torch.arange(K, device=idx.device).view(K, 1, 1) * V
        x = F.embedding(idx + offsets, wte.reshape(K * V, d)).view(K, B * T, d)
        for i, block in enumerate(self.template.blocks):
            pre = f"blocks.{i}."
            x = x + self._attention(block.attn, _norm(x, p[pre + "ln_1.weight"]), pre, B, T)
            h = _linear(_norm(x, p[pre + "ln_2.weight"]), p[pre + "mlp.fc.weight"])
            x = x + _linear(F.gelu(h), p[pre + "mlp.proj.weight"])
        return _norm(x, p["ln_f.weight"])

    def _attention(self, attn, x: torch.Tensor, pre: str, B: int, T: int) -> torch.Tensor:
        K, _, d = x.shape
        h, dh = attn.n_head, attn.d_head
        q, k, v = _linear(x, self.params[pre + "attn.qkv.weight"]).split(d, dim=2)
        q, k, v = (z.reshape(K * B, T, h, dh).transpose(1, 2) for z in (q, k, v))
        q, k = self._rotate(q), self._rotate(k)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=attn.attn_scale)
        return _linear(y.transpose(1, 2).reshape(K, B * T, d), self.params[pre + "attn.proj.weight"])


def _linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """nn.Linear without bias for K variants: x (K, M, in), w (K, out, in) -> (K, M, out)."""
    return torch.bmm(x, w.transpose(1, 2))


def _norm(x: torch.Tensor, gain: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """nn.LayerNorm(bias=False) for K variants (its default eps): gain (K, d) broadcast over each variant's tokens."""
    return F.layer_norm(x, x.shape[-1:], eps=eps) * gain[:, None, :]
