"""The muP coordinate check: after a few Adam steps, how much has each layer's output moved, across widths?

Under muP the size of the change is flat in width (each layer learns at the same rate whatever its size); under SP
it grows with width, which is why SP's best learning rate shrinks as models grow. The test suite asserts both, and
`scalingkit coord-check` draws the figure.
"""
from __future__ import annotations

import numpy as np


def coordinate_check(param: str, widths=(64, 128, 256, 512), steps: int = 4, lr: float = 1e-2, base_width: int = 64,
                     n_layer: int = 2, vocab: int = 64, context: int = 16, batch: int = 16, seed: int = 0) -> dict:
    """{layer: [RMS change of that layer's output after `steps` steps, one per width]} on one fixed random batch."""
    import torch
    import torch.nn.functional as F

    from scalingkit.model.gpt import GPTConfig, build_model

    x = torch.randint(0, vocab, (batch, context + 1), generator=torch.Generator().manual_seed(seed))
    out: dict[str, list[float]] = {}
    for width in widths:
        model, parameterisation = build_model(GPTConfig(vocab_size=vocab, n_layer=n_layer, d_model=width,
                                                        context=context), param, seed, base_width)
        opt = torch.optim.AdamW(parameterisation.param_groups(model, lr, 0.0), lr=lr)
        acts: dict[str, torch.Tensor] = {}
        layers = {"embedding": model.wte, **{f"block {i}": b for i, b in enumerate(model.blocks)}}
        hooks = [m.register_forward_hook(lambda _m, _i, o, k=k: acts.__setitem__(k, o.detach()))
                 for k, m in layers.items()]
        with torch.no_grad():
            before = {**{k: v.clone() for k, v in (model(x[:, :-1]), acts)[1].items()}}
            before["logits"] = model(x[:, :-1]).detach()
        for _ in range(steps):
            loss = F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            after_logits = model(x[:, :-1]).detach()
        after = {**acts, "logits": after_logits}
        for h in hooks:
            h.remove()
        for k in before:
            out.setdefault(k, []).append(float((after[k] - before[k]).pow(2).mean().sqrt()))
    return out


def plot_coordinate_check(results: dict, widths, path) -> None:
    """results: {param: coordinate_check(...)}; one panel per parameterisation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), sharey=True)
    for ax, (param, layers) in zip(np.atleast_1d(axes), results.items()):
        for name, values in layers.items():
            ax.plot(widths, values, "o-", label=name)
        ax.set(xscale="log", yscale="log", xlabel="width", title=f"{param}: RMS change after training steps")
        ax.legend(fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("RMS of (output after - before)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
