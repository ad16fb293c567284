"""Real cubes of synthetic runs drawn from a known Chinchilla law: the ground truth the methods are tested against.

`chinchilla_cube` plans a sweep like a real one (an ER family, a grid of widths x token budgets x learning
rates) with `scalingkit.sweep.plan.prepare`, then writes every run through `scalingkit.store.RunWriter` as the
workers do, with a curve whose every logged point is the law at (N, tokens so far), a learning-rate penalty
(so the best over learning rates is the law) and multiplicative Gaussian noise. The law is in the total
parameter count (the paper's default N), so with n_convention="total" the methods should recover
a = beta/(alpha+beta) and b = alpha/(alpha+beta). Used by the tests and benchmarks; no torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


@dataclass(frozen=True)
class Law:
    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def __call__(self, N, D):
        return self.E + self.A * np.asarray(N, float) ** -self.alpha + self.B * np.asarray(D, float) ** -self.beta

    @property
    def a(self) -> float:
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @property
    def gamma(self) -> float:
        return self.alpha * self.beta / (self.alpha + self.beta)

    def N_opt(self, C):
        G = (self.alpha * self.A / (self.beta * self.B)) ** (1 / (self.alpha + self.beta))
        return G * (np.asarray(C, float) / 6) ** self.a

    @classmethod
    def centred(cls, N_range, D_range, alpha=0.5, beta=0.3, E=2.5, term=0.5) -> "Law":
        """A law whose compute-optimal path passes through the geometric centre of the (N, D) box, where the
        N term equals `term`: the optima then lie inside the sampled grid, as a well-designed sweep wants."""
        Nc, Dc = np.sqrt(np.prod(N_range)), np.sqrt(np.prod(D_range))
        a = beta / (alpha + beta)
        G = Nc ** (1 - a) / Dc ** a  # N_opt(6 Nc Dc) = Nc
        A = term * Nc ** alpha
        B = alpha * A / (beta * G ** (alpha + beta))
        return cls(E, A, B, alpha, beta)


class _Curve(NamedTuple):  # what RunWriter.write_curve reads (engine.RunResult without importing torch)
    steps: np.ndarray
    tokens: np.ndarray
    train_loss: np.ndarray
    eval_loss: np.ndarray
    lr_now: np.ndarray


WIDTHS = (16, 24, 32, 40, 48, 64, 80, 96, 112, 128)
TOKENS = (100_000, 200_000, 400_000, 800_000, 1_600_000, 3_200_000, 6_400_000, 12_800_000)
LRS = (0.01, 0.03)


def sweep_table(widths=WIDTHS, tokens=TOKENS, lrs=LRS, points: int = 16, nodes: int = 64, name="synthetic",
                families: dict | None = None) -> dict:
    return {
        "name": name,
        "families": families or {"er64": {"kind": "er", "nodes": nodes, "edges": 4 * nodes, "seed": 1}},
        "grid": {"widths": list(widths), "tokens": list(tokens), "lrs": list(lrs), "seeds": [0]},
        "training": {"batch": 16, "context": 20, "eval_points": int(points), "eval_sequences": 32},
    }


def chinchilla_cube(path, law: Law | None = None, *, widths=WIDTHS, tokens=TOKENS, lrs=LRS, points: int = 16,
                    noise: float = 0.005, seed: int = 0, first_fraction: float = 0.02, families: dict | None = None):
    """Create the cube at `path` and fill it; returns (path, law). `noise` is the relative s.d. of each point;
    each curve's points are log-spaced from first_fraction x D to D. `families`: label -> (family spec, Law) for
    a cube of several families, each following its own law (then the returned law is that dict of laws)."""
    from scalingkit.model.counts import train_flops_per_token
    from scalingkit.store import RunWriter, open_cube
    from scalingkit.sweep import plan
    from scalingkit.sweep import spec as sweep

    specs = {label: spec for label, (spec, _) in families.items()} if families else None
    sw = sweep.from_table(sweep_table(widths, tokens, lrs, points, families=specs))
    plan.prepare(path, sw)
    ds = open_cube(path)
    n_total = {f: {int(n): float(v) for n, v in zip(ds["N"].values, ds["n_params"].sel(family=f).values)}
               for f in ds["family"].values}
    vocab = {f: int(ds.attrs["families"][f]["vocab_size"]) for f in ds["family"].values}
    if families:
        law = {label: family_law for label, (_, family_law) in families.items()}
    elif law is None:
        n_range = (min(n_total["er64"].values()), max(n_total["er64"].values()))
        law = Law.centred(n_range, (min(tokens), max(tokens)))
    rng = np.random.default_rng(seed)
    best_lr = lrs[0]
    writer = RunWriter(path)
    done = []
    settings = sw.settings
    for cell in sw.cells():
        n_layer, width = sw.shapes[cell.N]
        N = n_total[cell.family][cell.N]
        t = np.geomspace(first_fraction * cell.D, cell.D, points)
        penalty = 1 + 0.05 * np.log10(cell.lr / best_lr) ** 2
        loss = (law[cell.family] if families else law)(N, t) * penalty * (1 + noise * rng.standard_normal(points))
        steps = np.round(t / (settings.batch * settings.context))
        writer.write_curve(cell, _Curve(steps, t, loss, loss, np.full(points, cell.lr)))
        per_token = train_flops_per_token(n_layer, width, vocab[cell.family], settings.context)
        writer.write_run_values(cell, {"final_eval_loss": loss[-1], "final_train_loss": loss[-1],
                                       "tokens_trained": float(cell.D), "flops_6nd": 6.0 * N * cell.D,
                                       "flops_exact": per_token * cell.D, "wall_seconds": 0.0})
        done.append((cell, "done"))
    writer.write_status(done)
    return path, law
