"""K learning-rate/seed variants of one shape, trained together in one process: engine.train for a stack.

The variants share the family, parameterisation, shape, token budget and training settings; each keeps its own peak
learning rate (so its own schedule), its own initialisation (build_model with its seed), its own data (the Batches
stream a single run with its seed reads) and its own evaluation curve. A variant whose loss stops being finite is
finished as `diverged` exactly where engine.train would stop it, and dropped from the stack; the others go on.
Each variant's RunResult is what engine.train returns for it alone, up to float rounding, except `wall_seconds`
and `eval_seconds`: a variant is charged its share of the batch's time (each interval split among the variants
still training), so the shares add up to the batch's wall time.

Given a CheckpointSpec the batch checkpoints as a whole (checkpoint.py): the stack's parameters, the stacked AdamW's
state, every variant's data stream, partial curve and clock share, which variants are still live and how the others
ended; it resumes only as the same variants in the same order.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch

from scalingkit.config import RunConfig
from scalingkit.device import resolve_device
from scalingkit.model.gpt import GPTConfig, build_model
from scalingkit.train.checkpoint import (CheckpointSpec, Checkpointer, pack_record, restore_stream, stream_state,
                                        unpack_record)
from scalingkit.train.engine import (Batches, RunResult, _result, autocast_for, eval_chunk, eval_steps, family_spec,
                                     learning_rate, new_record, record_point)
from scalingkit.train.evaluation import HeldOut
from scalingkit.train.memory import CPU_LOGITS_BYTES
from scalingkit.train.stacked import StackedGPT
from scalingkit.train.stacked_adamw import StackedAdamW, clip_grad_norms


def check_batchable(cfgs: list[RunConfig]) -> None:
    """Variants of one batch may differ only in learning rate and seed."""
    if not cfgs:
        raise ValueError("a batch needs at least one variant")
    shape = _shape_key(cfgs[0])
    for cfg in cfgs[1:]:
        if _shape_key(cfg) != shape:
            raise ValueError(f"cannot batch {cfg} with {cfgs[0]}: only lr and seed may differ")


def _shape_key(cfg: RunConfig) -> tuple:
    return (cfg.family, cfg.param, cfg.n_layer, cfg.d_model, cfg.tokens, cfg.settings)


def build_stack(cfgs: list[RunConfig], vocab_size: int, device: torch.device):
    """The stacked model and its optimiser, every variant initialised exactly as engine.train initialises it."""
    s = cfgs[0].settings
    model_cfg = GPTConfig(vocab_size=vocab_size, n_layer=cfgs[0].n_layer, d_model=cfgs[0].d_model, context=s.context)
    built = [build_model(model_cfg, cfg.param, cfg.seed, s.mup_base_width) for cfg in cfgs]
    parameterisation = built[0][1]
    groups = {name: (g["lr_scale"], g["weight_decay"])
              for g in parameterisation.param_groups(built[0][0], 1.0, s.weight_decay) for name in g["names"]}
    stack = StackedGPT([model for model, _ in built], device)
    return stack, StackedAdamW(stack.params, groups, tuple(s.betas), s.eps)


def rows_per_chunk(k: int, tokens: int, vocab: int, device: torch.device) -> int:
    """How many variants' logits to take at once: all on a GPU; on the CPU as many as fit in ~4 MB of cache."""
    if device.type == "cuda":
        return k
    return max(1, min(k, CPU_LOGITS_BYTES // (4 * tokens * vocab)))



class _Clock:
    """Charges each interval of the batch's time equally to the variants training during it."""

    def __init__(self, k: int):
        self.wall, self.eval = np.zeros(k), np.zeros(k)
        self.last = time.perf_counter()

    def charge(self, live: list[int]) -> None:
        now = time.perf_counter()
        self.wall[live] += (now - self.last) / len(live)
        self.last = now

    def charge_eval(self, live: list[int], seconds: float) -> None:
        self.eval[live] += seconds / len(live)


def train_batch(cfgs: list[RunConfig], family, on_point: Callable[[int, RunResult], None] | None = None,
                checkpoint: CheckpointSpec | None = None) -> list[RunResult]:
    """Train the variants together; results in the order of `cfgs`. `on_point(i, partial)` is called for every
    variant still training after each evaluation (for partial-curve saving). `checkpoint`: save the whole batch
    there every so often, and go on from it if it exists and is this batch's (the same variants, in this order)."""
    check_batchable(cfgs)
    s, total_steps = cfgs[0].settings, cfgs[0].steps
    if total_steps < 1:
        from scalingkit.errors import UserError

        raise UserError(f"token budget {cfgs[0].tokens} is smaller than one step of {s.batch} x {s.context} tokens")
    device = resolve_device(s.device)
    autocast = autocast_for(device)
    held_out = HeldOut(family, s, device, eval_chunk(s))
    points = eval_steps(total_steps, s.eval_points)
    tokens_per_step = s.batch * s.context

    def fresh():
        stack, optimiser = build_stack(cfgs, family.vocab_size, device)
        streams = [Batches(family, s.batch, s.context, cfg.seed, device) for cfg in cfgs]
        live = list(range(len(cfgs)))  # indices into cfgs of the variants still in the stack
        ends: list[tuple[str, str] | None] = [None] * len(cfgs)  # (status, message) once a variant is finished
        return (stack, optimiser, streams, live, ends, [new_record() for _ in cfgs], _Clock(len(cfgs)),
                torch.zeros(len(live), device=device), 0, 0, 0, ())

    (stack, optimiser, streams, live, ends, recs, clock, running, since_last, next_point, first_step,
     resumed_at) = fresh()
    saver = None
    if checkpoint is not None:
        saver = Checkpointer(checkpoint, "batch", [cfg.config_hash(family_spec(family)) for cfg in cfgs])
        state = saver.load(device)
        if state is not None:
            try:
                for stream, saved in zip(streams, state["streams"], strict=True):
                    restore_stream(stream, saved)
                live = [int(i) for i in state["live"]]
                stack.load(state["params"], len(live))
                optimiser.load_state_dict(state["optimiser"], stack.params)
                torch.set_rng_state(state["torch_rng"].cpu())
                ends = [tuple(e) if e is not None else None for e in state["ends"]]
                recs = [unpack_record(r) for r in state["records"]]
                clock.wall, clock.eval = np.array(state["clock_wall"]), np.array(state["clock_eval"])
                running, since_last = state["running"].to(device), int(state["since_last"])
                first_step, next_point = int(state["step"]), int(state["next_point"])
                resumed_at = (*state["resumed_at"], first_step)
                if len(ends) != len(cfgs) or len(recs) != len(cfgs) or len(running) != len(live):
                    raise ValueError("its variants do not add up")
            except Exception as exc:  # noqa: BLE001 - a checkpoint that does not fit is ignored, never half-used
                saver.ignore(f"it does not fit this batch ({type(exc).__name__}: {exc})")
                (stack, optimiser, streams, live, ends, recs, clock, running, since_last, next_point, first_step,
                 resumed_at) = fresh()

    def finish(rows: list[int], message: Callable[[int], str]) -> None:
        """Finish the stack rows as diverged and drop them (a frozen variant costs nothing more)."""
        nonlocal running, live
        clock.charge(live)
        for r in rows:
            ends[live[r]] = ("diverged", message(r))
        keep = [r for r in range(len(live)) if r not in rows]
        if keep:
            stack.keep(keep)
            optimiser.keep(stack.params, keep)
            running = running[keep]
        live = [live[r] for r in keep]

    clock.last = time.perf_counter()
    for step in range(first_step, total_steps):
        lr_now = np.array([learning_rate(step, total_steps, cfgs[i].lr, s.warmup_fraction) for i in live])
        seqs = torch.from_numpy(np.stack([streams[i].sample() for i in live])).to(device, non_blocking=True)
        x, y = seqs[:, :, :-1], seqs[:, :, 1:]
        chunk = rows_per_chunk(len(live), s.batch * s.context, family.vocab_size, device)
        losses = stack.token_losses(x, y, autocast, chunk).mean(1)  # each variant's own mean, as engine.train's
        optimiser.zero_grad()
        losses.sum().backward()  # variants share no parameter, so each gets exactly its own gradient
        if s.grad_clip > 0:
            clip_grad_norms(stack.params, s.grad_clip)
        optimiser.step(lr_now)
        running += losses.detach()
        since_last += 1
        done_steps = step + 1
        at_point = next_point < len(points) and done_steps == points[next_point]
        if at_point or done_steps % 100 == 0:
            mean_train = (running / since_last).tolist()  # one device sync per point, not per step
            bad = [r for r, v in enumerate(mean_train) if not math.isfinite(v)]
            if bad:
                finish(bad, lambda r: f"training loss became {mean_train[r]} at step {done_steps}")
                mean_train = [v for r, v in enumerate(mean_train) if r not in bad]
                if not live:
                    break
        if at_point:
            t_eval = time.perf_counter()
            scores = held_out.evaluate_stack(stack, autocast,
                                             lambda k, tokens, vocab: rows_per_chunk(k, tokens, vocab, device))
            clock.charge_eval(live, time.perf_counter() - t_eval)
            for r, i in enumerate(live):
                record_point(recs[i], done_steps, mean_train[r], float(lr_now[r]), scores[r])
            running, since_last = torch.zeros(len(live), device=device), 0
            next_point += 1
            bad = [r for r, sc in enumerate(scores) if not math.isfinite(sc.eval_loss)]
            if bad:
                finish(bad, lambda r: f"evaluation loss became {scores[r].eval_loss} at step {done_steps}")
                if not live:
                    break
            if on_point is not None:
                clock.charge(live)
                for i in live:
                    on_point(i, _result(recs[i], tokens_per_step, "running", clock.wall[i], "", clock.eval[i],
                                        resumed_at))
        if saver is not None and done_steps < total_steps and saver.due():
            clock.charge(live)
            saver.save(done_steps, {
                "params": {n: p.detach() for n, p in stack.params.items()},
                "optimiser": optimiser.state_dict(), "live": list(live), "ends": list(ends),
                "records": [pack_record(r) for r in recs], "streams": [stream_state(b) for b in streams],
                "running": running.detach(), "since_last": since_last, "next_point": next_point,
                "clock_wall": clock.wall.tolist(), "clock_eval": clock.eval.tolist(),
                "torch_rng": torch.get_rng_state(), "resumed_at": list(resumed_at)})
    if live:
        clock.charge(live)
    out = []
    for i in range(len(cfgs)):
        status, message = ends[i] or ("done", "")
        out.append(_result(recs[i], tokens_per_step, status, clock.wall[i], message, clock.eval[i], resumed_at))
    return out
