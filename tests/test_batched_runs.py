"""Batched variants in `train --fill-missing`: the cube they leave, killed workers, and how batches are chosen."""
import json
import os
import signal
import subprocess
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import zarr

from conftest import REPO, SCALINGKIT, one_line_error, run_cli, tiny_sweep_text
from scalingkit import store
from scalingkit.run import runner
from scalingkit.sweep import batching as batchplan
from scalingkit.sweep import spec as sweep
from scalingkit.train import memory
from scalingkit.train.probe import Probe

RUN_VARS = ("status", "config_hash", "step", "tokens", "lr_now", "tokens_trained", "flops_6nd", "flops_exact",
            "message")


def _fill(tmp_path, name, batch_variants):
    sw = sweep.from_table(tomllib.loads(tiny_sweep_text(widths=(16,), tokens=(3200, 6400), lrs=(3e-3, 1e-2, 3e-2),
                                                        seeds=(0, 1))))
    path = tmp_path / name
    report = runner.fill_missing(path, sw, workers=0, progress=False, echo=lambda *a: None,
                                 batch_variants=batch_variants)
    assert report.counts["done"] == 12
    return path


def _metadata(path: Path) -> dict:
    """Every array's and the group's zarr.json, minus what records when and with what it was made."""
    out = {}
    for meta in sorted(path.rglob("zarr.json")):
        doc = json.loads(meta.read_text())
        for key in ("created_at", "versions"):
            doc.get("attributes", {}).pop(key, None)
        out[str(meta.relative_to(path))] = doc
    return out


def test_cube_after_a_batched_sweep_has_the_layout_of_one_written_run_by_run(tmp_path):
    one_by_one = _fill(tmp_path, "single.zarr", 1)
    together = _fill(tmp_path, "batched.zarr", 6)  # two batches of 6: one per token budget
    assert _metadata(together) == _metadata(one_by_one)  # same arrays, shapes, chunks, dtypes, attributes
    a = zarr.open_group(str(one_by_one), mode="r")
    b = zarr.open_group(str(together), mode="r")
    for name in RUN_VARS:
        assert np.array_equal(a[name][:], b[name][:], equal_nan=True), name
    for name in ("train_loss", "eval_loss", "final_eval_loss", "final_train_loss"):
        np.testing.assert_allclose(b[name][:], a[name][:], rtol=0, atol=1e-4, err_msg=name)
    assert (b["wall_seconds"][:] > 0).all() and all(b["finished_at"][:].ravel())
    # the chunk files on disk: one per run per variable, the same set
    files = lambda p: sorted(str(f.relative_to(p)) for f in p.rglob("c/*") if f.is_file())  # noqa: E731
    assert files(together) == files(one_by_one)


def _children(pid):
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and "resource_tracker" not in Path(stat.parent, "cmdline").read_text():
                out.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return out


def test_killed_batch_worker_leaves_all_its_cells_missing(tmp_path, write_sweep):
    text = tiny_sweep_text(widths=(32,), tokens=(16 * 20 * 2000,), lrs=(3e-3, 1e-2),
                           extra_training="checkpoint_seconds = 0.0")
    cube = tmp_path / "cube.zarr"
    proc = subprocess.Popen([*SCALINGKIT, "train", str(write_sweep(text)), "--fill-missing", "--store", str(cube),
                             "--workers", "1", "--batch-variants", "2", "--no-progress"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:  # both variants have saved a partial curve: the batch is well under way
            tokens = zarr.open_group(str(cube), mode="r")["tokens"][0, 0, 0, 0, :, 0, :]
            if (np.isfinite(tokens).sum(axis=1) >= 3).all():
                break
        except Exception:
            pass  # the cube is not there yet
        time.sleep(0.2)
    else:
        proc.kill()
        raise AssertionError("the batch never saved partial curves")
    for worker in _children(proc.pid):
        os.kill(worker, signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "worker process died" in err and "Traceback" not in err
    ds = store.open_cube(cube)
    assert list(ds["status"].values.ravel()) == ["missing", "missing"]  # never a half-written `done`
    assert "missing: 2" in run_cli("status", "--store", cube).stdout


def test_bad_batch_variants_flag_is_a_one_line_error(tmp_path, write_sweep):
    for bad in ("0", "many"):
        err = one_line_error(run_cli("train", write_sweep(tiny_sweep_text()), "--fill-missing", "--store",
                                     tmp_path / "cube.zarr", "--batch-variants", bad))
        assert "--batch-variants" in err


# ---- choosing batches (plain data: no training) ----

def _items(n_lrs=14, seeds=(0,), tokens=(6400,), width=16):
    sw = sweep.from_table(tomllib.loads(tiny_sweep_text(widths=(width,), tokens=tokens,
                                                        lrs=tuple(1e-4 * 1.5 ** i for i in range(n_lrs)),
                                                        seeds=seeds)))
    return [(cell, sw.run_config(cell), sw.families["er64"]) for cell in sw.cells()]


def _plan(items, mode, workers=1, decide=None, available=64 << 30, device="cpu"):
    return batchplan.plan_tasks(items, mode, workers, device, {"er64": 64}, decide, available=available)


def _probe(speedup):
    return lambda items, k: Probe(k, speedup / k, 1.0, 0.0)


def test_cells_of_one_shape_and_budget_batch_together():
    items = _items(n_lrs=7, seeds=(0, 1), tokens=(3200, 6400))
    tasks, _ = _plan(items, 14)
    assert [len(t.cells) for t in tasks] == [14, 14]  # one batch per token budget
    assert all(len({c.D for c in t.cells}) == 1 for t in tasks)
    assert sorted(c for t in tasks for c in t.cells) == sorted(i[0] for i in items)
    tasks, _ = _plan(items, 6)
    assert [len(t.cells) for t in tasks] == [5, 5, 4, 5, 5, 4]  # balanced, never above the cap
    assert [len(t.cells) for t in _plan(items, 1)[0]] == [1] * 28


def test_auto_batches_only_where_the_probe_says_it_pays():
    items = _items(n_lrs=14, tokens=(16 * 20 * 5000,))  # enough work to repay a probe
    tasks, (choice,) = _plan(items, "auto", decide=_probe(2.0))
    assert [len(t.cells) for t in tasks] == [14] and "2.00x" in choice.reason
    tasks, (choice,) = _plan(items, "auto", decide=_probe(0.8))
    assert [len(t.cells) for t in tasks] == [1] * 14 and choice.k == 1


def test_auto_does_not_probe_shapes_with_little_work():
    def never(items, k):
        raise AssertionError("probed")

    tasks, (choice,) = _plan(_items(n_lrs=3), "auto", decide=never)  # 3 runs of 20 steps
    assert [len(t.cells) for t in tasks] == [1, 1, 1] and "little work" in choice.reason
    tasks, _ = _plan(_items(n_lrs=3), "auto", decide=never, device="cuda")  # on a GPU batching is the default
    assert [len(t.cells) for t in tasks] == [3]


def test_batch_size_is_bounded_by_memory():
    items = _items(n_lrs=14, width=64)
    per_variant = memory.variant_bytes(items[0][1], 64, "cpu")
    fixed = memory.fixed_bytes(items[0][1], 64)
    available = int((fixed + 5.5 * per_variant) / batchplan.MEMORY_SHARE["cpu"])
    tasks, (choice,) = _plan(items, 14, available=available)
    assert choice.memory_k == 5 and max(len(t.cells) for t in tasks) == 5
    tasks, (choice,) = _plan(items, 14, workers=5, available=available)  # five workers share that memory
    assert choice.memory_k == 1 and max(len(t.cells) for t in tasks) == 1


def test_memory_bound_counts_the_evaluation_chunk():
    """With a large vocabulary a batch holds at least one variant's whole evaluation chunk of logits and its
    log-softmax on the CPU (64 sequences x context x vocabulary, twice): less memory than that means no batching."""
    config = _items(n_lrs=2)[0][1]
    gpt2 = 50_257
    chunk = 2 * 4 * 64 * config.settings.context * gpt2
    assert memory.fixed_bytes(config, gpt2, "cpu") >= chunk
    available = int(0.9 * chunk / batchplan.MEMORY_SHARE["cpu"])
    assert batchplan.memory_k(config, gpt2, "cpu", 1, available) == 1
    roomy = 40 * chunk
    assert batchplan.memory_k(config, gpt2, "cpu", 1, roomy) > 1
    # the evaluation's forward pass is part of each variant's share (it set the measured peak at small batches)
    small = _items(n_lrs=2)[0][1]
    assert memory.variant_bytes(small, 256, "cpu") > 4 * 64 * small.settings.context * 20 * small.d_model


def test_batches_are_split_so_no_worker_idles():
    tasks, _ = _plan(_items(n_lrs=3), 3, workers=2)
    assert sorted(len(t.cells) for t in tasks) == [1, 2]


@pytest.mark.parametrize("n,k,sizes", [(14, 6, [5, 5, 4]), (14, 14, [14]), (3, 2, [2, 1]), (5, 1, [1] * 5)])
def test_split_is_balanced(n, k, sizes):
    assert [len(c) for c in batchplan.split(list(range(n)), k)] == sizes
