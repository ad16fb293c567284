"""One training run, from its configuration to its whole loss curve.

The engine knows nothing about stores or sweeps: it takes a RunConfig and a data family, trains one epoch of fresh
sequences, evaluates on a fixed held-out set at a fixed log-spaced set of steps (the sampled loss, and the exact
excess loss where the family knows its next-token law: evaluation.py), and returns a RunResult. A callback sees
every evaluated point, so a caller can save partial curves while a long run is going. Given a CheckpointSpec, a run
saves a checkpoint every so often and resumes from a matching one (checkpoint.py).
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from scalingkit.config import RunConfig, TrainSettings  # noqa: F401 - re-exported for callers
from scalingkit.device import resolve_device
from scalingkit.model.counts import total_params, train_flops_per_token
from scalingkit.model.gpt import GPTConfig, build_model
from scalingkit.train.checkpoint import (CheckpointSpec, Checkpointer, pack_record, restore_stream, stream_state,
                                        unpack_record)
from scalingkit.train.memory import EVAL_CHUNK_SEQUENCES
from scalingkit.train.evaluation import TRAIN_STREAM, HeldOut, Scores, held_out_set  # noqa: F401 - re-exported


@dataclass
class RunResult:
    status: str  # done | diverged
    steps: np.ndarray  # steps at which the curve was evaluated
    tokens: np.ndarray
    train_loss: np.ndarray  # mean training loss over the steps since the previous point
    eval_loss: np.ndarray  # sampled: cross-entropy of the held-out sequences' own next tokens
    lr_now: np.ndarray
    wall_seconds: float
    message: str = ""
    eval_seconds: float = 0.0  # part of wall_seconds spent on the held-out set
    eval_loss_se: np.ndarray | None = None  # standard errors over held-out sequences
    excess_loss: np.ndarray | None = None  # mean KL from the family's true law (nan: law unknown)
    exact_loss: np.ndarray | None = None  # the family's loss floor + excess_loss
    exact_loss_se: np.ndarray | None = None  # also the excess's (the floor is a constant)
    resumed_at: tuple[int, ...] = ()  # steps at which the run went on from a checkpoint (none: trained in one go)

    def final(self, name: str) -> float:
        """The last point of curve `name` of a finished run (nan for a run that did not finish, or not measured)."""
        values = getattr(self, name)
        return float(values[-1]) if self.status == "done" and values is not None and len(values) else math.nan

    @property
    def final_eval_loss(self) -> float:
        return self.final("eval_loss")


def eval_steps(total_steps: int, n_points: int) -> np.ndarray:
    """A fixed log-spaced grid of n_points steps from 1 to total_steps (the last step always included).

    Rounding a geometric grid repeats the small steps, so each step is at least one past the previous one (and
    leaves room for the rest): exactly n_points points whenever the run has that many steps, all of them otherwise.
    """
    n = min(n_points, total_steps)
    grid = np.geomspace(1, total_steps, n) if n > 1 else np.array([float(total_steps)])
    steps = np.empty(n, dtype=np.int64)
    prev = 0
    for i, g in enumerate(grid):
        steps[i] = min(max(prev + 1, round(g)), total_steps - (n - 1 - i))
        prev = steps[i]
    return steps


def learning_rate(step: int, total_steps: int, peak: float, warmup_fraction: float) -> float:
    """Linear warm-up over the first warmup_fraction of steps, then cosine decay to 0 at the last step."""
    warmup = max(1, round(warmup_fraction * total_steps))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def run_facts(cfg: RunConfig, vocab_size: int) -> dict:
    """Per-run numbers that follow from the configuration alone: parameter counts and FLOPs."""
    s = cfg.settings
    tokens_trained = cfg.steps * s.batch * s.context
    n_total = total_params(cfg.n_layer, cfg.d_model, vocab_size)
    return {
        "tokens_trained": tokens_trained,
        "n_params_total": n_total,
        "flops_6nd": 6.0 * n_total * tokens_trained,
        "flops_exact": train_flops_per_token(cfg.n_layer, cfg.d_model, vocab_size, s.context) * tokens_trained,
    }


class Batches:
    """Fresh training sequences for one run: one epoch, every sequence new (the family samples them)."""

    def __init__(self, family, batch: int, context: int, seed: int, device: torch.device):
        self.family, self.batch, self.context, self.device = family, batch, context, device
        self.rng = np.random.default_rng([TRAIN_STREAM, int(seed)])
        self.drawn = 0  # batches sampled so far (a checkpoint's stream position)

    def sample(self) -> np.ndarray:
        """The next (batch, context + 1) token ids, on the host (a batched trainer stacks several streams)."""
        self.drawn += 1
        return self.family.sample(self.batch, self.context + 1, self.rng)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = torch.from_numpy(self.sample()).to(self.device, non_blocking=True)
        return seqs[:, :-1], seqs[:, 1:]


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA; on the CPU full fp32 and no autocast machinery at all."""
    return (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else nullcontext


def new_record() -> dict:
    """What a run accumulates per evaluated point (engine.train and every variant of batched.train_batch)."""
    return {"steps": [], "train": [], "lr": [], "scores": []}


def record_point(rec: dict, step: int, mean_train: float, lr_now: float, scores: Scores) -> None:
    rec["steps"].append(step)
    rec["train"].append(mean_train)
    rec["lr"].append(lr_now)
    rec["scores"].append(scores)


def train(cfg: RunConfig, family, on_point: Callable[[RunResult], None] | None = None,
          checkpoint: CheckpointSpec | None = None) -> RunResult:
    """Train one run. `on_point(partial_result)` is called after each evaluation (for partial-curve saving).
    `checkpoint`: save a checkpoint there every so often, and go on from it if it exists and is this run's."""
    s = cfg.settings
    if cfg.steps < 1:
        from scalingkit.errors import UserError

        raise UserError(
            f"token budget {cfg.tokens} is smaller than one step of {s.batch} x {s.context} tokens"
        )
    device = resolve_device(s.device)
    model, optimiser, batches = _fresh(cfg, family, device)
    autocast = autocast_for(device)
    held_out = HeldOut(family, s, device, eval_chunk(s))
    points = eval_steps(cfg.steps, s.eval_points)
    tokens_per_step = s.batch * s.context

    rec = new_record()
    running, since_last = torch.zeros((), device=device), 0
    status, message = "done", ""
    first_step, next_point, eval_seconds, elapsed, resumed_at = 0, 0, 0.0, 0.0, ()
    saver = None
    if checkpoint is not None:
        saver = Checkpointer(checkpoint, "run", [cfg.config_hash(family_spec(family))])
        state = saver.load(device)
        if state is not None:
            try:
                restore_stream(batches, state["stream"])
                model.load_state_dict(state["model"])
                optimiser.load_state_dict(state["optimiser"])
                torch.set_rng_state(state["torch_rng"].cpu())
                rec = unpack_record(state["record"])
                running, since_last = state["running"].to(device), int(state["since_last"])
                first_step, next_point = int(state["step"]), int(state["next_point"])
                eval_seconds, elapsed = float(state["eval_seconds"]), float(state["elapsed"])
                resumed_at = (*state["resumed_at"], first_step)
            except Exception as exc:  # noqa: BLE001 - a checkpoint that does not fit is ignored, never half-used
                saver.ignore(f"it does not fit this run ({type(exc).__name__}: {exc})")
                model, optimiser, batches = _fresh(cfg, family, device)
                rec, running, since_last = new_record(), torch.zeros((), device=device), 0
                first_step, next_point, eval_seconds, elapsed, resumed_at = 0, 0, 0.0, 0.0, ()
    start = time.perf_counter() - elapsed
    for step in range(first_step, cfg.steps):
        lr_now = learning_rate(step, cfg.steps, cfg.lr, s.warmup_fraction)
        for group in optimiser.param_groups:
            group["lr"] = lr_now * group.get("lr_scale", 1.0)
        x, y = batches.next()
        with autocast():
            logits = model(x)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if s.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
        optimiser.step()
        running += loss.detach()
        since_last += 1
        done_steps = step + 1
        at_point = next_point < len(points) and done_steps == points[next_point]
        if at_point or done_steps % 100 == 0:
            mean_train = (running / since_last).item()  # one device sync per point, not per step
            if not math.isfinite(mean_train):
                status, message = "diverged", f"training loss became {mean_train} at step {done_steps}"
                break
        if at_point:
            t_eval = time.perf_counter()
            scores = held_out.evaluate(model, autocast)
            eval_seconds += time.perf_counter() - t_eval
            record_point(rec, done_steps, mean_train, lr_now, scores)
            running, since_last = torch.zeros((), device=device), 0
            next_point += 1
            if not math.isfinite(scores.eval_loss):
                status, message = "diverged", f"evaluation loss became {scores.eval_loss} at step {done_steps}"
                break
            if on_point is not None:
                on_point(_result(rec, tokens_per_step, "running", time.perf_counter() - start, "", eval_seconds,
                                 resumed_at))
        if saver is not None and done_steps < cfg.steps and saver.due():
            saver.save(done_steps, {
                "model": model.state_dict(), "optimiser": optimiser.state_dict(), "running": running.detach(),
                "since_last": since_last, "next_point": next_point, "record": pack_record(rec),
                "stream": stream_state(batches), "torch_rng": torch.get_rng_state(),
                "elapsed": time.perf_counter() - start, "eval_seconds": eval_seconds,
                "resumed_at": list(resumed_at)})
    return _result(rec, tokens_per_step, status, time.perf_counter() - start, message, eval_seconds, resumed_at)


def _fresh(cfg: RunConfig, family, device: torch.device):
    """A run's model, optimiser and data stream at step 0."""
    s = cfg.settings
    torch.manual_seed(cfg.seed)  # nothing should draw from the global generator, but keep runs reproducible anyway
    model_cfg = GPTConfig(vocab_size=family.vocab_size, n_layer=cfg.n_layer, d_model=cfg.d_model, context=s.context)
    model, parameterisation = build_model(model_cfg, cfg.param, cfg.seed, s.mup_base_width)
    model.to(device)
    groups = parameterisation.param_groups(model, cfg.lr, s.weight_decay)
    optimiser = torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(s.betas), eps=s.eps,
                                  fused=device.type == "cuda")
    return model, optimiser, Batches(family, s.batch, s.context, cfg.seed, device)


def family_spec(family) -> dict:
    """What RunConfig.config_hash takes of the family (a duck-typed family without spec(): nothing)."""
    spec = getattr(family, "spec", None)
    return spec() if spec is not None else {}


def eval_chunk(settings: TrainSettings) -> int:
    """Held-out sequences evaluated at once (train/memory.py models the memory this takes)."""
    return max(settings.batch, EVAL_CHUNK_SEQUENCES)


def _result(rec: dict, tokens_per_step: int, status: str, wall: float, message: str, eval_s: float,
            resumed_at: tuple[int, ...] = ()) -> RunResult:
    steps = np.asarray(rec["steps"], dtype=np.int64)
    scores = rec["scores"]

    def column(name: str) -> np.ndarray:
        return np.array([getattr(sc, name) for sc in scores], dtype=np.float64)

    return RunResult(
        status=status,
        steps=steps,
        tokens=(steps * tokens_per_step).astype(np.float64),
        train_loss=np.asarray(rec["train"], dtype=np.float64),
        eval_loss=column("eval_loss"),
        lr_now=np.asarray(rec["lr"], dtype=np.float64),
        wall_seconds=wall,
        message=message,
        eval_seconds=eval_s,
        eval_loss_se=column("eval_loss_se"),
        excess_loss=column("excess_loss"),
        exact_loss=column("exact_loss"),
        exact_loss_se=column("excess_loss_se"),
        resumed_at=tuple(resumed_at),
    )
