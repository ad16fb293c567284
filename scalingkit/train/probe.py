"""Does batching pay for this shape on this machine? Time a few steps both ways and compare.

On a GPU a batch of small models is much faster than the same models one after another; on the CPU it depends on
the shape (tiny models are bound by per-step overhead and gain, larger ones are bound by memory traffic and lose),
on the thread count and on the machine, so `--batch-variants auto` measures instead of guessing: a few steps of
engine.train (one variant) and of batched.train_batch (k variants), each timed step by step, the fastest step of
each compared (model construction, the first step and steps slowed by other processes drop out).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

PAYS = 1.1  # batch only when measured this much faster: a margin against timing noise on a shared machine


@dataclass(frozen=True)
class Probe:
    k: int
    sequential_step: float  # seconds per step of one variant trained alone
    batched_step: float  # seconds per step of the k variants together
    seconds: float  # what the probe itself cost

    @property
    def speedup(self) -> float:
        return self.k * self.sequential_step / self.batched_step

    @property
    def pays(self) -> bool:
        return self.speedup >= PAYS


def _short(cfg, steps: int):
    """The same run cut to `steps` steps and evaluated after every one of them, on a single sequence (so that each
    step's end is seen, for next to nothing)."""
    s = cfg.settings
    settings = replace(s, eval_points=steps, eval_sequences=1, checkpoint_seconds=0.0)
    return replace(cfg, tokens=steps * s.batch * s.context, settings=settings)


def _fastest_step(run) -> float:
    """The shortest interval between two consecutive steps' ends: the first step (allocation, kernel choice) and
    any step slowed by another process on a shared machine drop out."""
    marks = {}
    run(lambda *args: marks.setdefault(len(args[-1].steps), time.perf_counter()))
    ends = [marks[i] for i in sorted(marks)]
    return min(b - a for a, b in zip(ends, ends[1:]))


def fastest_sequential_step(cfg, family, steps: int = 8) -> float:
    """Seconds of one step of `cfg` trained alone (engine.train), the fastest of `steps`."""
    from scalingkit.train import engine

    return _fastest_step(lambda cb: engine.train(_short(cfg, steps), family, on_point=cb))


def probe(cfgs: list, family, seq_steps: int = 8, batch_steps: int = 5) -> Probe:
    """Time `cfgs` (one batch's configurations) both ways. Every variant gets the smallest learning rate of the
    batch, so that no variant diverges during the probe and drops out of the stack."""
    from scalingkit.train.batched import train_batch

    start = time.perf_counter()
    lr = min(c.lr for c in cfgs)
    many = [_short(replace(c, lr=lr), batch_steps) for c in cfgs]
    seq = fastest_sequential_step(replace(cfgs[0], lr=lr), family, seq_steps)
    bat = _fastest_step(lambda cb: train_batch(many, family, on_point=cb))
    return Probe(len(cfgs), seq, bat, time.perf_counter() - start)


def probe_cost_steps(k: int, seq_steps: int = 8, batch_steps: int = 5) -> float:
    """What a probe costs, in steps of one variant (a batched step of k variants counted as k steps)."""
    return seq_steps + k * batch_steps
