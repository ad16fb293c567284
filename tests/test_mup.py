"""muP: the coordinate check (flat in width under muP, growing under SP), equality with SP at the base width, and
the per-group learning rates."""
import numpy as np
import pytest
import torch

from scalingkit.model.coordcheck import coordinate_check
from scalingkit.model.gpt import GPTConfig, build_model

WIDTHS = (64, 128, 256, 512)


@pytest.fixture(scope="module")
def checks():
    return {p: coordinate_check(p, WIDTHS, base_width=64) for p in ("sp", "mup")}


def test_mup_activations_stay_flat_across_widths(checks):
    for layer, values in checks["mup"].items():
        values = np.asarray(values)
        assert values.max() / values.min() < 2.5, (layer, values)


def test_sp_activations_grow_with_width(checks):
    for layer in ("block 0", "block 1", "logits"):
        values = np.asarray(checks["sp"][layer])
        assert values[-1] / values[0] > 3, (layer, values)  # 8x the width, several times the update
        assert np.all(np.diff(values) > 0), (layer, values)


def test_mup_equals_sp_at_the_base_width():
    cfg = GPTConfig(vocab_size=50, n_layer=2, d_model=64, context=10)
    sp, sp_param = build_model(cfg, "sp", 1)
    mup, mup_param = build_model(cfg, "mup", 1, base_width=64)
    x = torch.randint(0, 50, (3, 10))
    with torch.no_grad():
        assert torch.allclose(sp(x), mup(x), atol=1e-5)
    assert all(g["lr"] == 1e-3 for g in mup_param.param_groups(mup, 1e-3, 0.01))


def test_mup_learning_rates_and_init_scale_with_width():
    cfg = GPTConfig(vocab_size=50, n_layer=2, d_model=256, context=10)
    model, param = build_model(cfg, "mup", 0, base_width=64)
    groups = param.param_groups(model, 1e-2, 0.01)
    by_name = {n: g for g in groups for n in g["names"]}
    assert by_name["blocks.0.attn.qkv.weight"]["lr"] == pytest.approx(1e-2 / 4)  # hidden: lr / (width / base)
    assert by_name["wte.weight"]["lr"] == pytest.approx(1e-2)  # embedding: unscaled
    assert by_name["blocks.0.ln_1.weight"]["lr"] == pytest.approx(1e-2) and by_name["blocks.0.ln_1.weight"][
        "weight_decay"] == 0.0
    assert model.readout_scale == pytest.approx(1 / 4)
    assert model.blocks[0].mlp.fc.weight.std().item() == pytest.approx(0.02 / 2, rel=0.05)  # variance ~ 1/width
    assert model.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)
