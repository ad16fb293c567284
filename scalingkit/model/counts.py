"""Parameter and FLOP counts: pure functions of a model shape (no torch), tested against the module."""
from __future__ import annotations


def n_heads(d_model: int) -> int:
    """The paper's rule: heads = max(4, width / 64)."""
    return max(4, d_model // 64)


def check_shape(n_layer: int, d_model: int) -> None:
    from scalingkit.errors import UserError

    h = n_heads(d_model)
    if n_layer < 1 or d_model < 1:
        raise UserError(f"model shape {n_layer} layers x width {d_model} is not a valid GPT")
    if d_model % h or (d_model // h) % 2:
        raise UserError(f"width {d_model}: needs width divisible by its {h} heads with an even head size "
                        "(rotary embeddings rotate pairs of coordinates)")


def nonembedding_params(n_layer: int, d_model: int, mlp_ratio: int = 4) -> int:
    """Parameters outside the (tied) embedding: attention 4d^2, MLP 2*ratio*d^2, two LayerNorm gains per layer,
    plus the final LayerNorm. Independent of the vocabulary, so it labels a model shape across families."""
    per_layer = 4 * d_model * d_model + 2 * mlp_ratio * d_model * d_model + 2 * d_model
    return n_layer * per_layer + d_model


def total_params(n_layer: int, d_model: int, vocab_size: int, mlp_ratio: int = 4) -> int:
    """All parameters, the tied embedding counted once (the paper's default N)."""
    return nonembedding_params(n_layer, d_model, mlp_ratio) + vocab_size * d_model


def train_flops_per_token(n_layer: int, d_model: int, vocab_size: int, context: int, mlp_ratio: int = 4) -> float:
    """Exact matrix-multiply FLOPs of one training token (forward + backward = 3x forward).

    Forward per token: 2 FLOPs per weight of every matmul (QKV, output projection, MLP, readout), plus the attention
    scores and the weighted sum, 2 * 2 * context * d per layer (computed over the full context, as the kernels do).
    Norms, softmax and the embedding lookup are lower order and left out, as in Kaplan et al. (2020).
    """
    matmul_weights = n_layer * (4 + 2 * mlp_ratio) * d_model * d_model + vocab_size * d_model
    attention = n_layer * 4 * context * d_model
    return 3.0 * (2.0 * matmul_weights + attention)


def training_bytes(n_layer: int, d_model: int, vocab_size: int, tokens_per_step: int) -> int:
    """Memory to train one GPT of this shape, as train/memory.py models it: fp32 weights, gradients and two Adam
    moments (16 bytes per parameter), and what the backward pass keeps per training token (~40 values per layer and
    width unit, 8 more per width unit, two per vocabulary entry). Python ints: a shape too large for any machine
    still has a size to print."""
    per_token = n_layer * 40 * d_model + 8 * d_model + 2 * vocab_size
    return 16 * total_params(n_layer, d_model, vocab_size) + 4 * tokens_per_step * per_token
