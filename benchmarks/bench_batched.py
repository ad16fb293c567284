"""Batched variants against training them one after another: K = 14 learning-rate/seed variants of one shape.

The CPU demo preset's graph and training settings (sweeps/er_cpu_demo.toml: ER 256 nodes / 1,536 edges, batch 32,
context 50, 16 evaluations of 192 sequences), 2-layer SP models of width 16, 32, 64 and 128, one token budget
(--steps, default 200 = 320K tokens, one of the demo's budgets). For each width and torch thread count, alternating,
best of --repeats:
- sequential: the 14 runs one after another with engine.train (what `--batch-variants 1` does);
- batched: the 14 runs in one batched.train_batch;
- auto: what `--batch-variants auto` does for this group of 14 cells: batchplan.plan_tasks with its real timing
  probe (run here, its seconds counted), then the time of the path it chose, taken from this repeat's
  measurement of that path (the same code runs either way).
Ratios are sequential time / candidate time (> 1: faster than sequential). Targets (issue 5): auto >= 0.95 at every
width, and >= 2 on the tiny shapes where per-step overhead dominates. Which shapes those are is measured too: the
share of a sequential step that is fixed per-step cost (overhead_share).
Memory: peak resident memory a batch of 14 adds (each width in a fresh process, the kernel's high-water mark reset
just before training), the modelled figure batchplan uses, and the batch size `auto` allows on this machine (one
worker).

    .venv/bin/python benchmarks/bench_batched.py [--widths 16,32,64,128] [--threads 1,2] [--steps 200]
                                                 [--batch 32] [--repeats 3] [--memory-only] [--json FILE]
    .venv/bin/python benchmarks/bench_batched.py --concurrent 2   # 2 processes x 1 thread at once, as --workers 2
    .venv/bin/python benchmarks/bench_batched.py --gpu [--peak-tflops 989]   # widths 128-1024, batch 100, K = 14
GPU figures (>= 10x at width 128; FLOP/s against the card's bf16 peak at width 1024): not yet measured (no GPU has
been available); `--gpu --device cpu --widths 16 --steps 4 --repeats 1` runs that mode's code on the CPU.
"""
import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from scalingkit.config import RunConfig, TrainSettings
from scalingkit.device import resolve_device
from scalingkit.families import build_family
from scalingkit.model.counts import train_flops_per_token
from scalingkit.store import Cell
from scalingkit.sweep import batching as batchplan
from scalingkit.train import engine, memory
from scalingkit.train.batched import train_batch
from scalingkit.train.probe import fastest_sequential_step, probe

FAMILY = {"kind": "er", "nodes": 256, "edges": 1536, "seed": 0}  # the demo's graph
SETTINGS = TrainSettings(context=50, batch=32, eval_points=16, eval_sequences=192)  # the demo's [training]
GPU_FAMILY = {"kind": "er", "nodes": 1024, "edges": 5120, "seed": 0}  # sweeps/er1k_gpu.toml
GPU_SETTINGS = TrainSettings(context=50, batch=100, eval_points=32, eval_sequences=1000, device="cuda")
K = 14
LRS = np.geomspace(1e-3, 3e-2, K)  # a spread of non-diverging learning rates, as a sweep's grid would have


def configs(width: int, steps: int, batch: int = 32, settings: TrainSettings = SETTINGS) -> list[RunConfig]:
    settings = replace(settings, batch=batch)
    return [RunConfig("er", "sp", 2, width, tokens=steps * batch * settings.context, lr=float(lr), seed=k,
                      settings=settings) for k, lr in enumerate(LRS)]


def sequential(cfgs, family) -> float:
    start = time.perf_counter()
    for cfg in cfgs:
        engine.train(cfg, family)
    return time.perf_counter() - start


def batched(cfgs, family) -> float:
    start = time.perf_counter()
    train_batch(cfgs, family)
    return time.perf_counter() - start


def auto_choice(cfgs, family) -> tuple[int, float, str]:
    """(batch size auto picks, seconds its probe took, its reason) for this group of cells, via the real planner."""
    items = [(Cell("er", "sp", 0, c.tokens, c.lr, c.seed), c, {}) for c in cfgs]
    spent = []

    def decide(sample, k):
        result = probe([c for _, c, _ in sample], family)
        spent.append(result.seconds)
        return result

    device = resolve_device(cfgs[0].settings.device).type
    tasks, (choice,) = batchplan.plan_tasks(items, "auto", 1, device, {"er": family.vocab_size}, decide)
    return max(len(t.cells) for t in tasks), sum(spent), choice.reason


def time_width(width: int, threads: int, steps: int, repeats: int, family, batch: int,
               settings: TrainSettings = SETTINGS) -> dict:
    torch.set_num_threads(threads)
    cfgs = configs(width, steps, batch, settings)
    warm = configs(width, 2, batch, settings)
    sequential(warm[:1], family), batched(warm, family)  # first calls allocate and pick kernels
    seq, bat, autos = [], [], []
    for _ in range(repeats):  # alternate, so that a slow spell on the shared machine hits both
        seq.append(sequential(cfgs, family))
        bat.append(batched(cfgs, family))
        k, probe_s, reason = auto_choice(cfgs, family)
        autos.append(probe_s + (bat[-1] if k > 1 else seq[-1]))
    return {"width": width, "threads": threads, "sequential": seq, "batched": bat, "auto": autos, "auto_k": k,
            "auto_reason": reason, "probe_s": probe_s, "overhead": overhead_share(width, batch, family, settings)}


def overhead_share(width: int, batch: int, family, settings: TrainSettings = SETTINGS) -> dict:
    """How much of one sequential training step is fixed per-step cost (Python, kernel launches, optimiser loop)
    rather than work that grows with the batch: the fastest step at 1 and at `batch` sequences (batchprobe's timing),
    a line t = overhead + per_sequence * batch through the two. 1 / (1 - share) is the speed-up that removing that
    fixed part alone would give: a yardstick for the batched step's measured speed-up, not a bound (batched matrix
    products can also do the per-element work a little faster, or slower once it leaves the cache)."""
    if batch < 2:  # one point cannot separate the fixed cost from the per-sequence work
        step = fastest_sequential_step(configs(width, 8, 1, settings)[0], family)
        return {"step_1": step, "step_b": step, "share": float("nan"), "without_fixed": float("nan")}
    one, full = (fastest_sequential_step(configs(width, 8, b, settings)[0], family) for b in (1, batch))
    per_sequence = (full - one) / (batch - 1)
    overhead = max(0.0, one - per_sequence)
    return {"step_1": one, "step_b": full, "share": overhead / full, "without_fixed": full / (full - overhead)}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def batch_peak_bytes(width: int, steps: int, batch: int) -> int:
    """Peak resident memory a batch of 14 adds to this process (run in a fresh one: `--peak-of WIDTH`). The kernel's
    high-water mark is reset to the current size just before training (/proc/self/clear_refs = 5), so what the
    process touched before (imports, building the graph) does not hide the batch."""
    family = build_family("er", FAMILY)
    cfgs = configs(width, steps, batch)
    engine.held_out_set(family, SETTINGS)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kb("VmRSS")
    train_batch(cfgs, family)
    return (_status_kb("VmHWM") - before) * 1024


def peak_memory_child(width: int, steps: int, batch: int) -> int:
    argv = [sys.executable, __file__, "--peak-of", str(width), "--steps", str(steps), "--batch", str(batch)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def memory(width: int, family, batch: int) -> dict:
    cfg = configs(width, 10, batch)[0]
    vocab = family.vocab_size
    modelled = K * memory.variant_bytes(cfg, vocab, "cpu") + memory.fixed_bytes(cfg, vocab, "cpu")
    peak = peak_memory_child(width, 10, batch)
    available = memory.available_bytes("cpu")
    return {"width": width, "measured_mb": peak / 2**20, "modelled_mb": modelled / 2**20,
            "auto_k_memory": batchplan.memory_k(cfg, family.vocab_size, "cpu", 1, available),
            "available_gb": available / 2**30}


def concurrent(width: int, steps: int, batch: int, workers: int, mode: str) -> float:
    """Wall time of `workers` processes (1 thread each, as `--workers 2` gives them) each training 14 variants
    `mode` = sequential | batched at the same time: what a 2-worker sweep sees, memory bandwidth shared."""
    argv = [sys.executable, __file__, "--child", mode, "--widths", str(width), "--steps", str(steps),
            "--batch", str(batch)]
    start = time.perf_counter()
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(workers)]
    for proc in procs:
        proc.communicate()
    return time.perf_counter() - start


def gpu(args) -> None:
    """The GPU figures of issue 5: widths 128-1024, context 50, batch 100, K = 14, the er1k GPU preset's graph;
    batched against sequential, auto's choice, the batch's achieved FLOP/s (exact matmul count) against the card's
    bf16 peak (--peak-tflops), and the batch's peak GPU memory against the model."""
    settings = replace(GPU_SETTINGS, device=args.device)
    family = build_family("er", GPU_FAMILY)
    widths = [int(w) for w in (args.widths if args.widths != "16,32,64,128" else "128,256,512,1024").split(",")]
    cuda = settings.device == "cuda"
    print(f"GPU: ER 1,024/5,120, batch 100 x context 50, K={K}, {args.steps} steps a run, best of {args.repeats}; "
          f"{torch.cuda.get_device_name() if cuda else 'CPU (smoke test of this mode)'}")
    for width in widths:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        r = time_width(width, torch.get_num_threads(), args.steps, args.repeats, family, 100, settings)
        s, b, a = min(r["sequential"]), min(r["batched"]), min(r["auto"])
        cfg = configs(width, args.steps, 100, settings)[0]
        flops = K * cfg.steps * 100 * 50 * train_flops_per_token(2, width, family.vocab_size, 50)
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
        modelled = (K * memory.variant_bytes(cfg, family.vocab_size, "cuda")) / 2**20
        print(f"width {width:>5}: sequential {s:7.1f} s  batched {b:7.1f} s (ratio {s / b:5.2f})  auto ratio "
              f"{s / a:5.2f} (chose {r['auto_k']}: {r['auto_reason']})  batched {flops / b / 1e12:6.1f} TFLOP/s "
              f"= {100 * flops / b / 1e12 / args.peak_tflops:4.1f}% of {args.peak_tflops:g}; peak memory "
              f"{peak:,.0f} MB (modelled {modelled:,.0f} MB)", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", default="16,32,64,128")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=32, help="sequences a step (the demo's 32; 8 for tiny shapes)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--memory-only", action="store_true")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    ap.add_argument("--peak-of", type=int, default=None, help=argparse.SUPPRESS)  # the memory probe's child
    ap.add_argument("--gpu", action="store_true", help="the GPU figures (widths 128-1024, batch 100)")
    ap.add_argument("--concurrent", type=int, default=0, help="N processes at once, 1 thread each (as --workers N)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one process of --concurrent
    ap.add_argument("--device", default="cuda", help="with --gpu: cpu runs the GPU mode as a smoke test")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="the card's dense bf16 peak (H100 SXM: 989)")
    args = ap.parse_args()
    if args.peak_of:
        print(batch_peak_bytes(args.peak_of, args.steps, args.batch))
        return
    if args.child:  # one process of --concurrent: build, warm up, then train
        torch.set_num_threads(1)
        family, width = build_family("er", FAMILY), int(args.widths)
        (sequential if args.child == "sequential" else batched)(configs(width, 2, args.batch), family)
        (sequential if args.child == "sequential" else batched)(configs(width, args.steps, args.batch), family)
        return
    if args.concurrent:
        for width in (int(w) for w in args.widths.split(",")):
            seq, bat = [], []
            for _ in range(args.repeats):
                seq.append(concurrent(width, args.steps, args.batch, args.concurrent, "sequential"))
                bat.append(concurrent(width, args.steps, args.batch, args.concurrent, "batched"))
            print(f"{args.concurrent} processes x 1 thread, width {width:>4}: sequential {min(seq):7.1f} s  batched "
                  f"{min(bat):7.1f} s (ratio {min(seq) / min(bat):4.2f}); all: {np.round(seq, 1)} {np.round(bat, 1)}",
                  flush=True)
        return
    if args.gpu:
        gpu(args)
        return
    widths = [int(w) for w in args.widths.split(",")]
    family = build_family("er", FAMILY)
    print(f"ER 256/1,536 (V={family.vocab_size}), batch {args.batch} x context 50, K={K}, {args.steps} steps a run; "
          f"machine: {torch.get_num_threads()} torch threads by default, best of {args.repeats}")
    rows = []
    if not args.memory_only:
        for threads in (int(t) for t in args.threads.split(",")):
            for width in widths:
                r = time_width(width, threads, args.steps, args.repeats, family, args.batch)
                rows.append(r)
                s, b, a = min(r["sequential"]), min(r["batched"]), min(r["auto"])
                print(f"threads {threads} width {width:>4}: sequential {s:7.1f} s  batched {b:7.1f} s "
                      f"(ratio {s / b:4.2f})  auto {a:7.1f} s (ratio {s / a:4.2f}; chose {r['auto_k']}: "
                      f"{r['auto_reason']}; probe {r['probe_s']:.1f} s)", flush=True)
                print("    all (s): sequential", np.round(r["sequential"], 1), "batched", np.round(r["batched"], 1),
                      "auto", np.round(r["auto"], 1), flush=True)
                o = r["overhead"]
                print(f"    sequential step {1e3 * o['step_b']:.2f} ms ({1e3 * o['step_1']:.2f} ms at 1 sequence): "
                      f"fixed per-step cost {100 * o['share']:.0f}% of it (removing it alone: "
                      f"{o['without_fixed']:.2f}x)", flush=True)
    mem = [memory(w, family, args.batch) for w in widths]
    for m in mem:
        print(f"memory width {m['width']:>4}: batch of {K} peak {m['measured_mb']:7.1f} MB measured, "
              f"{m['modelled_mb']:7.1f} MB modelled; auto allows {m['auto_k_memory']:,} variants "
              f"({m['available_gb']:.1f} GB available, one worker)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"timings": rows, "memory": mem}, f, indent=1)


if __name__ == "__main__":
    main()
