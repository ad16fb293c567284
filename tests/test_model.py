"""The GPT: parameter counts against the closed form, FLOPs, heads rule, rotary embeddings, determinism."""
import pytest
import torch

from scalingkit.errors import UserError
from scalingkit.model.gpt import (
    GPT,
    GPTConfig,
    apply_rotary,
    build_model,
    nonembedding_params,
    rotary_tables,
    total_params,
    train_flops_per_token,
)


@pytest.mark.parametrize("n_layer,width,vocab", [(1, 16, 10), (2, 32, 200), (2, 128, 1000), (4, 256, 50257)])
def test_parameter_counts_match_formula(n_layer, width, vocab):
    model = GPT(GPTConfig(vocab_size=vocab, n_layer=n_layer, d_model=width))
    # closed form: per layer 12 d^2 (attention 4 d^2, MLP 8 d^2) + 2 d (LayerNorm gains), final LayerNorm d,
    # tied embedding V d counted once
    expected_nonemb = n_layer * (12 * width**2 + 2 * width) + width
    assert nonembedding_params(n_layer, width) == expected_nonemb
    assert model.count_params(embedding=False) == expected_nonemb
    assert model.count_params() == total_params(n_layer, width, vocab) == expected_nonemb + vocab * width


def test_heads_rule_and_bad_width():
    assert GPTConfig(vocab_size=10, d_model=128).n_head == 4
    assert GPTConfig(vocab_size=10, d_model=512).n_head == 8
    assert GPTConfig(vocab_size=10, d_model=4096).n_head == 64
    with pytest.raises(UserError, match="heads"):
        GPTConfig(vocab_size=10, d_model=20).validate()  # 4 heads of 5: odd head size


def test_exact_flops_close_to_6n_for_wide_short_context():
    n_layer, width, vocab, context = 2, 1024, 1000, 50
    exact = train_flops_per_token(n_layer, width, vocab, context)
    six_n = 6 * total_params(n_layer, width, vocab)
    # attention over a 50-token context and the norms are small against the weights at this width
    assert 0.97 < exact / six_n < 1.03
    # and the attention term is what separates them: a longer context costs more per token
    assert train_flops_per_token(n_layer, width, vocab, 2048) > exact


def test_rotary_is_relative():
    # <R(p) q, R(p') k> depends only on p - p'
    cos, sin = rotary_tables(16, 8, 10_000.0)
    q, k = torch.randn(1, 1, 1, 8).expand(1, 1, 16, 8), torch.randn(1, 1, 1, 8).expand(1, 1, 16, 8)
    rq, rk = apply_rotary(q, cos, sin)[0, 0], apply_rotary(k, cos, sin)[0, 0]
    dots = rq @ rk.T
    assert torch.allclose(dots[5, 3], dots[12, 10], atol=1e-5)
    assert not torch.allclose(dots[5, 3], dots[5, 4], atol=1e-3)


def test_initialisation_is_deterministic_and_seed_dependent():
    cfg = GPTConfig(vocab_size=50, n_layer=2, d_model=32)
    a, _ = build_model(cfg, "sp", 3)
    b, _ = build_model(cfg, "sp", 3)
    c, _ = build_model(cfg, "sp", 4)
    for (_, pa), (_, pb), (_, pc) in zip(a.named_parameters(), b.named_parameters(), c.named_parameters()):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.wte.weight, c.wte.weight)
    # nanoGPT's residual-projection scaling
    assert abs(a.blocks[0].attn.proj.weight.std().item() - 0.02 / 2) < 0.003


def test_causal():
    model, _ = build_model(GPTConfig(vocab_size=30, n_layer=2, d_model=32, context=12), "sp", 0)
    x = torch.randint(0, 30, (2, 12))
    y = x.clone()
    y[:, 8:] = (y[:, 8:] + 1) % 30
    with torch.no_grad():
        assert torch.allclose(model(x)[:, :8], model(y)[:, :8], atol=1e-6)


def test_unknown_parameterisation():
    with pytest.raises(UserError, match="unknown parameterisation"):
        build_model(GPTConfig(vocab_size=10, d_model=16), "ntk", 0)
