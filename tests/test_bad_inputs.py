"""Bad input to every command: one line on stderr starting `error:`, exit code 2, the problem named, nothing written.

A table of cases (issue #14): sweep files with wrong types, zero, negative, NaN, infinite and huge values; bad flags
and values for every command's options; missing, damaged and read-only stores; CSVs that are empty, ragged,
non-numeric, repeated or that cannot identify a law; output paths under a file, in a place that cannot be written, a
folder where a file goes (or the reverse), a figure format matplotlib cannot write, a file the command would replace
that is not its own earlier output (issue 20), a store folder that is not a cube; sizes that cannot fit in memory; a
sweep that would run for days. Each case asserts the exit code, exactly one line on stderr starting with `error:`, a
fragment that names the problem, that the store it names is byte for byte what it was, and that nothing was written
where the command ran (a refused command leaves no file behind, and every file there keeps its bytes).

Fast: the cases run in this process through the command line's entry point (scalingkit.cli.main.main, exactly what
`scalingkit` runs, inside click's CliRunner isolation), with warnings printed to the captured stderr as a real run
prints them; a handful run as real subprocesses too (a C library writing to the file descriptor, or aborting, is
only seen there). One tiny real store (4 runs, seconds) serves the module.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import one_line_error, run_cli, tiny_sweep_text

# ------------------------------------------------------------------------------------------------ inputs

STORE = "{store}"  # the module's tiny store (4 finished runs): every case that names it must leave it unchanged


def sweep(fam=None, grid=None, training=None, extra="", top=""):
    """A sweep file's text: the tests' tiny ER sweep with one key replaced (None drops it)."""
    fam = fam if fam is not None else 'kind = "er"\nnodes = 64\nedges = 256\nseed = 1'
    g = {"widths": "[16]", "tokens": "[6400]", "lrs": "[1e-2]", "seeds": "[0]"}
    g.update(grid or {})
    t = {"batch": "16", "context": "20", "eval_points": "8", "eval_sequences": "32"}
    t.update(training or {})
    lines = [f'name = "bad"', top, "[families.er64]", fam, "[grid]"]
    lines += [f"{k} = {v}" for k, v in g.items() if v is not None]
    lines += ["[training]"] + [f"{k} = {v}" for k, v in t.items() if v is not None] + [extra]
    return "\n".join(lines) + "\n"


def grid_csv(loss=lambda n, d: 1.7 + 400 / n**0.34 + 410 / d**0.28, ns=(1e6, 3e6, 1e7, 3e7, 1e8),
             ds=(1e8, 3e8, 1e9, 3e9)):
    return "N,D,loss\n" + "".join(f"{n:.0f},{d:.0f},{loss(n, d):.6f}\n" for n in ns for d in ds)


GOOD = grid_csv()
CSV = {
    "good": GOOD,
    "empty": "",
    "header": "N,D,loss\n",
    "onerow": "N,D,loss\n1e6,1e8,3.0\n",
    "tworows": "N,D,loss\n1e6,1e8,3.0\n1e7,1e9,2.5\n",
    "nonnum": GOOD.replace("1000000,100000000,", "abc,100000000,", 1),
    "nan": GOOD + "2e6,2e8,nan\n",
    "blank": GOOD + "2e6,2e8,\n",
    "negloss": GOOD + "2e6,2e8,-1.0\n",
    "zeroloss": GOOD + "2e6,2e8,0\n",
    "zeroN": GOOD + "0,2e8,3.0\n",
    "negD": GOOD + "2e6,-2e8,3.0\n",
    "infD": GOOD + "2e6,inf,3.0\n",
    "hugeN": GOOD + "1e400,1e8,3.0\n",
    "nocols": "a,b,c\n1,2,3\n",
    "binary": "\x00\x01\x02garbage\xff",
    "ragged": "N,D,loss\n1,2\n3,4,5,6\n",
    "onepoint": "N,D,loss\n" + "1e6,1e8,3.0\n" * 20,
    "constant": grid_csv(lambda n, d: 3.0),
    "repeated": GOOD + "".join(GOOD.splitlines(True)[1:4]),
    "oneN": grid_csv(ns=(1e6,), ds=(1e8, 3e8, 1e9, 3e9, 1e10, 3e10)),
    "oneD": grid_csv(ns=(1e6, 3e6, 1e7, 3e7, 1e8, 3e8), ds=(1e9,)),
    "twoN": grid_csv(ns=(1e6, 1e7), ds=(1e8, 3e8, 1e9, 3e9, 1e10)),
    "compute": "N,C,loss\n" + "".join(f"{n:.0f},{6 * n * d:.6g},{2 + 9 / n**0.3 + 9 / d**0.3:.6f}\n"
                                       for n in (1e6, 3e6, 1e7, 3e7) for d in (1e8, 1e9, 1e10)),
}


def csv_args(name, *cols):
    """--csv FILE and the columns of the `name` table, as a case's files and arguments."""
    return {"t.csv": CSV[name]}, ["--csv", "{d}/t.csv", *(cols or ("--n-col", "N", "--d-col", "D"))]


def case(cid, args, fragment, files=None, code=2, setup=None, subprocess=False, needs=None):
    return pytest.param(args, fragment, files or {}, code, setup, subprocess, needs, id=cid)


# ------------------------------------------------------------------------------------------------ the table

CASES = []


def add(*a, **k):
    CASES.append(case(*a, **k))


# train: the sweep file -----------------------------------------------------------------------------------------
def train_sweep(cid, text, fragment, *flags, **k):
    add(cid, ["train", "{d}/sw.toml", "--fill-missing", "--store", "{d}/new/cube.zarr", "--workers", "0",
              "--no-progress", *flags], fragment, files={"sw.toml": text}, **k)


add("train-sweep-missing", ["train", "{d}/nope.toml", "--fill-missing"], "sweep file")
add("train-sweep-is-folder", ["train", "{d}", "--fill-missing"], "is a directory")
train_sweep("toml-syntax", "this is = = not toml", "is not valid TOML")
train_sweep("toml-binary", b"\xff\xfe\x00\x01binary", "is not a text file")
train_sweep("toml-empty", "", "needs [families.NAME] tables")
train_sweep("toml-unknown-top-key", sweep(top="bogus = 1"), "unknown key 'bogus'")
train_sweep("toml-no-grid", 'name = "x"\n[families.a]\nkind = "er"\nnodes = 64\nedges = 256\n', "needs a [grid] table")
train_sweep("toml-families-not-table", 'name = "x"\nfamilies = 3\n[grid]\nwidths = [16]\n', "needs [families.NAME]")
train_sweep("toml-training-not-table", 'name = "x"\ntraining = 3\n[families.a]\nkind = "er"\nnodes = 64\nedges = 256\n'
            '[grid]\nwidths = [16]\ntokens = [6400]\nlrs = [0.01]\n', "[training] must be a table")
train_sweep("family-kind-missing", sweep(fam="nodes = 64\nedges = 256"), "missing key 'kind'")
train_sweep("family-kind-unknown", sweep(fam='kind = "xyz"\nnodes = 64'), "unknown kind 'xyz'")
for key, value, fragment in [
        ("widths", "[]", "grid.widths must be a non-empty list"), ("widths", "16", "grid.widths must be a non-empty"),
        ("widths", '["a"]', "grid.widths must be a list of int"), ("widths", "[0]", "grid.widths must be positive"),
        ("widths", "[-16]", "grid.widths must be positive"), ("widths", "[16.5]", "grid.widths must be a list of int"),
        ("widths", "[true]", "grid.widths must be a list of int"), ("widths", "[nan]", "grid.widths must be a list"),
        ("widths", "[inf]", "grid.widths must be a list of int"), ("widths", "[16, 16]", "grid.widths has repeated"),
        ("widths", "[18]", "width 18: needs width divisible by its 4 heads"),
        ("widths", "[10_000_000]", "of memory, most of it for weights, gradients and Adam moments"),
        ("layers", "[0]", "grid.layers must be positive"), ("layers", "[-1]", "grid.layers must be positive"),
        ("layers", "[10_000_000]", "width 16, 10,000,000 layers"),
        ("tokens", "[0]", "grid.tokens must be positive"), ("tokens", "[-6400]", "grid.tokens must be positive"),
        ("tokens", "[1e30]", "a token budget must be at most 2^53"), ("tokens", "[nan]", "grid.tokens must be a list"),
        ("tokens", "[inf]", "grid.tokens must be a list of int"), ("tokens", "[100]", "is less than one step"),
        ("lrs", "[0]", "grid.lrs must be positive"), ("lrs", "[-0.1]", "grid.lrs must be positive"),
        ("lrs", "[nan]", "grid.lrs has nan: every learning rate must be finite"), ("lrs", "[inf]", "grid.lrs has inf"),
        ("lrs", "[1e300]", "grid.lrs has 1e+300"), ("lrs", "[1e-320]", "grid.lrs has 1e-320"),
        ("lrs", "[1e11]", "from 1e-09 to 1e+10"), ("lrs", '["x"]', "grid.lrs must be a list of float"),
        ("lrs", "[0.01, 0.01]", "grid.lrs has repeated"),
        ("seeds", "[-1]", "grid.seeds has -1: a seed must be a whole number"), ("seeds", "[1.5]", "grid.seeds must be"),
        ("seeds", "[1e30]", "a seed must be a whole number from 0 to 2^63 - 1"), ("seeds", "[nan]", "grid.seeds must"),
        ("params", '["xx"]', "unknown parameterisation 'xx'"), ("params", "[1]", "grid.params must be a list of str"),
        ("bogus", "[1]", "unknown key grid.bogus"), ("tokens", None, "grid.tokens is required")]:
    train_sweep(f"grid-{key}-{value}", sweep(grid={key: value}), fragment)
for key, value, fragment in [
        ("context", "0", "training.context = 0 must be at least 1"), ("context", "-1", "training.context = -1"),
        ("context", "nan", "training.context = nan is not a valid int"),
        ("context", "100_000_000", "less than one step"), ("batch", "0", "training.batch = 0 must be at least 1"),
        ("batch", "1.5", "training.batch = 1.5 is not a valid int"), ("batch", '"a"', "training.batch = 'a'"),
        ("batch", "1_000_000_000", "less than one step"),
        ("weight_decay", "nan", "training.weight_decay = nan must be a finite number >= 0"),
        ("weight_decay", "-1.0", "training.weight_decay = -1.0"),
        ("weight_decay", "inf", "training.weight_decay = inf"),
        ("warmup_fraction", "nan", "training.warmup_fraction = nan must be in [0, 1)"),
        ("warmup_fraction", "1.5", "training.warmup_fraction = 1.5"), ("warmup_fraction", "-0.1", "warmup_fraction"),
        ("betas", "[nan, 0.9]", "training.betas = (nan, 0.9) must be two numbers in [0, 1)"),
        ("betas", "[1.5, 0.9]", "training.betas = (1.5, 0.9)"), ("betas", "[-0.1, 0.9]", "training.betas = (-0.1"),
        ("betas", "[0.9]", "training.betas = (0.9,) is not a valid tuple"), ("betas", '["a", 0.9]', "training.betas"),
        ("eps", "0.0", "training.eps = 0.0 must be a finite number > 0"), ("eps", "nan", "training.eps = nan"),
        ("eps", "-1e-8", "training.eps = -1e-08"), ("eps", "inf", "training.eps = inf"),
        ("grad_clip", "nan", "training.grad_clip = nan must be a finite number >= 0 (0 turns clipping off)"),
        ("grad_clip", "-1.0", "training.grad_clip = -1.0"), ("grad_clip", "inf", "training.grad_clip = inf"),
        ("eval_points", "0", "training.eval_points = 0 must be at least 1"),
        ("eval_points", "1_000_000_000_000", "most of it for the curves (training.eval_points)"),
        ("eval_sequences", "0", "training.eval_sequences = 0 must be at least 1"),
        ("eval_sequences", "1_000_000_000_000", "most of it for the held-out set (training.eval_sequences)"),
        ("eval_seed", "-1", "training.eval_seed = -1 must be a whole number"),
        ("device", '"tpu"', "training.device must be auto, cpu or cuda"), ("device", "3", "training.device"),
        ("checkpoint_seconds", "nan", "training.checkpoint_seconds = nan"),
        ("checkpoint_seconds", "-1.0", "training.checkpoint_seconds = -1.0"),
        ("checkpoint_seconds", "inf", "training.checkpoint_seconds = inf"),
        ("checkpoint_minutes", "nan", "training.checkpoint_minutes = nan"),
        ("checkpoint_minutes", "-5.0", "training.checkpoint_minutes = -5.0"),
        ("mup_base_width", "0", "training.mup_base_width = 0 must be at least 1"),
        ("mup_base_width", "18", "width 18: needs width divisible"), ("bogus", "1", "unknown key training.bogus")]:
    train_sweep(f"training-{key}-{value}", sweep(training={key: value}), fragment)
for cid, fam, fragment in [
        ("nodes-0", 'kind = "er"\nnodes = 0\nedges = 1', "key 'nodes' must be an integer >= 1 (got 0)"),
        ("nodes-text", 'kind = "er"\nnodes = "a"\nedges = 256', "key 'nodes' must be an integer >= 1 (got 'a')"),
        ("nodes-float", 'kind = "er"\nnodes = 64.5\nedges = 256', "key 'nodes' must be an integer"),
        ("nodes-huge", 'kind = "er"\nnodes = 10_000_000_000_000\nedges = 256', "a walk on 10,000,000,000,000 nodes"),
        ("edges-too-many", 'kind = "er"\nnodes = 64\nedges = 3000', "key 'edges' (3000) exceeds n(n-1)/2 = 2016"),
        ("edges-huge", 'kind = "er"\nnodes = 10_000_000\nedges = 1_000_000_000_000', "of memory; this machine has"),
        ("edges-missing", 'kind = "er"\nnodes = 64', "missing key 'edges'"),
        ("kappa-nan", 'kind = "er"\nnodes = 64\nedges = 256\nkappa = nan', "key 'kappa' must be a real number >= 0"),
        ("kappa-neg", 'kind = "er"\nnodes = 64\nedges = 256\nkappa = -1.0', "key 'kappa' must be a real number"),
        ("kappa-inf", 'kind = "er"\nnodes = 64\nedges = 256\nkappa = inf', "key 'kappa' must be a real number"),
        ("kmin-0", 'kind = "er"\nnodes = 64\nedges = 256\nkappa = 1.0\nk_min = 0', "key 'k_min' must be an integer"),
        ("kmin-above-kmax", 'kind = "er"\nnodes = 64\nedges = 256\nk_min = 50\nk_max = 10', "must be <= k_max"),
        ("seed-neg", 'kind = "er"\nnodes = 64\nedges = 256\nseed = -1', "key 'seed' must be an integer >= 0"),
        ("symmetric-text", 'kind = "er"\nnodes = 64\nedges = 256\nsymmetric = "yes"', "key 'symmetric' must be"),
        ("unknown-key", 'kind = "er"\nnodes = 64\nedges = 256\nfoo = 1', "unknown key 'foo'"),
        ("ba-m-too-big", 'kind = "ba"\nnodes = 64\nm = 64', "key 'm' (64) must be < nodes (64)"),
        ("ba-huge", 'kind = "ba"\nnodes = 1_000_000_000_000\nm = 3', "a walk on 1,000,000,000,000 nodes"),
        ("bigram-prune-neg", 'kind = "bigram"\ntokenizer = {bpe = 1024}\nprune = -1', "key 'prune' must be"),
        ("bpe-huge", 'kind = "bigram"\ntokenizer = {bpe = 1_000_000_000}', "with an integer V from 257"),
        ("bpe-small", 'kind = "text"\ntokenizer = {bpe = 100}', "with an integer V from 257"),
        ("text-held-out-nan", 'kind = "text"\ntokenizer = {bpe = 1024}\nheld_out = nan', "key 'held_out' must be"),
        ("text-held-out-1", 'kind = "text"\ntokenizer = {bpe = 1024}\nheld_out = 1.0', "strictly between 0 and 1"),
        ("text-corpus-missing", 'kind = "text"\ncorpus = "/nonexistent/x.txt"', "no such file or folder"),
        ("generated-width-huge", 'kind = "generated"\ntokenizer = {bpe = 1024}\nwidth = 10_000_000',
         "most of it for keys 'layers' and 'width'"),
        ("generated-pool-huge", 'kind = "generated"\ntokenizer = {bpe = 1024}\npool_tokens = 1_000_000_000_000_000',
         "most of it for key 'pool_tokens'"),
        ("generated-lr-nan", 'kind = "generated"\ntokenizer = {bpe = 1024}\nlr = nan',
         "key 'lr' must be a real number")]:
    train_sweep(f"family-{cid}", sweep(fam=fam), fragment)
for cid, extra, fragment in [
        ("start-off-grid", "[lr_search]\nstart = [0.5]", "lr_search.start 0.5 is not in grid.lrs"),
        ("rounds-neg", "[lr_search]\nmax_rounds = -1", "lr_search.max_rounds must be a whole number >= 0"),
        ("beyond-11", "[lr_search]\nbeyond = 11", "lr_search.beyond must be a whole number from 0 to 10"),
        ("lr-min-nan", "[lr_search]\nlr_min = nan", "lr_search.lr_min must be a number positive"),
        ("lr-max-low", "[lr_search]\nlr_max = 0.001", "lr_search.lr_max must be a number above")]:
    train_sweep(f"lr-search-{cid}", sweep(grid={"lrs": "[1e-2, 3e-2]"}, extra=extra), fragment)
# a sweep that would run for ages: its estimate, and a request for --yes
train_sweep("days-of-compute", sweep(grid={"widths": "[256]", "tokens": "[9_000_000_000_000_000]"}),
            "that is more than 24 hours: add --yes to train it anyway")
# train: flags
OK = sweep()
train_sweep("workers-negative", OK, "--workers", "--workers", "-1")
train_sweep("workers-text", OK, "'abc' is not a valid integer", "--workers", "abc")
train_sweep("workers-huge", OK, "1,000,000 worker processes needs about", "--workers", "1000000")
train_sweep("batch-variants-0", OK, "--batch-variants must be auto or a whole number >= 1", "--batch-variants", "0")
train_sweep("batch-variants-text", OK, "--batch-variants must be auto", "--batch-variants", "x")
train_sweep("device-tpu", OK, "'tpu' is not one of", "--device", "tpu")
train_sweep("executor-unknown", OK, "Invalid value for '--executor'", "--executor", "pbs")
add("train-nothing-to-do", ["train", "{d}/sw.toml"], "say --fill-missing", files={"sw.toml": OK})
add("train-redo-unknown-key", ["train", "--redo", "nonsense=1", "--store", STORE, "--workers", "0"],
    "unknown key 'nonsense'")
add("train-redo-not-a-number", ["train", "--redo", "D=abc", "--store", STORE, "--workers", "0"], "is not a number")
add("train-redo-no-such-label", ["train", "--redo", "D=999", "--store", STORE, "--workers", "0"],
    "no D 999 in the cube")
add("train-no-store-no-sweep", ["train", "--fill-missing", "--store", "{d}/none/cube.zarr"], "no cube at")
add("train-store-under-a-file", ["train", "{d}/sw.toml", "--fill-missing", "--store", "{d}/afile/cube.zarr",
                                 "--workers", "0"], "afile is a file, not a folder",
    files={"sw.toml": OK, "afile": "x"})
add("train-store-is-a-file", ["train", "{d}/sw.toml", "--fill-missing", "--store", "{d}/afile", "--workers", "0"],
    "is a file, not a cube", files={"sw.toml": OK, "afile": "x"})
add("train-store-folder-not-a-cube", ["train", "{d}/sw.toml", "--fill-missing", "--store", "{d}/mine", "--workers",
                                     "0"], "--store {d}/mine: is a folder but not a cube (no zarr.json; it holds 1",
    files={"sw.toml": OK, "mine/notes.txt": "mine"})
add("train-store-empty-folder", ["train", "{d}/sw.toml", "--fill-missing", "--store", "{d}/empty", "--workers", "0"],
    "is a folder but not a cube (no zarr.json; it is empty)", files={"sw.toml": OK, "empty/": ""})
add("train-redo-store-is-a-file", ["train", "--redo", "D=6400", "--store", "{d}/afile", "--workers", "0"],
    "is a file, not a cube", files={"afile": "x"})
add("train-lock-cannot-be-made", ["train", "{d}/sw.toml", "--fill-missing", "--store", "{unwritable}/sk/cube.zarr",
                                  "--workers", "0"], "cannot create its lock file", files={"sw.toml": OK},
    needs="unwritable")
add("train-lock-read-only-store", ["train", "--fill-missing", "--store", "{readonly_store}", "--workers", "0"],
    "Permission denied", needs="readonly_store")
add("train-other-settings", ["train", "{d}/sw.toml", "--fill-missing", "--store", STORE, "--workers", "0"],
    "trains with batch = 8 but the store", files={"sw.toml": tiny_sweep_text().replace("batch = 16", "batch = 8")})
add("train-damaged-store", ["train", "{d}/sw.toml", "--fill-missing", "--store", "{copy}", "--workers", "0"],
    "is corrupted", files={"sw.toml": OK}, setup="json")


# status, table, plot ------------------------------------------------------------------------------------------
for cmd in ("status", "table"):
    add(f"{cmd}-no-store", [cmd, "--store", "{d}/none/cube.zarr"], "no cube at")
    add(f"{cmd}-store-is-a-file", [cmd, "--store", "{d}/afile"], "no cube at", files={"afile": "x"})
    add(f"{cmd}-empty-folder", [cmd, "--store", "{d}"], "no cube at")
    add(f"{cmd}-metadata-not-json", [cmd, "--store", "{copy}"], "is corrupted: JSONDecodeError", setup="json")
    add(f"{cmd}-newer-schema", [cmd, "--store", "{copy}"], "has schema version 99", setup="schema")
    add(f"{cmd}-array-missing", [cmd, "--store", "{copy}"], "is corrupted: missing arrays status", setup="array")
    add(f"{cmd}-status-chunk-garbage", [cmd, "--store", "{copy}"], "is corrupted", setup="chunk")
    add(f"{cmd}-n-convention", [cmd, "--store", STORE, "--n-convention", "xx"], "'xx' is not one of")
add("status-unknown-option", ["status", "--store", STORE, "--bogus"], "No such option '--bogus'")
add("table-loss", ["table", "--store", STORE, "--loss", "xx"], "Invalid value for '--loss'")
add("plot-no-store", ["plot", "--store", "{d}/none/cube.zarr", "--no-ranks"], "no cube at")
add("plot-out-under-a-file", ["plot", "--store", STORE, "--out", "{d}/afile/figs", "--no-ranks"],
    "afile is a file, not a folder", files={"afile": "x"})
add("plot-out-is-a-file", ["plot", "--store", STORE, "--out", "{d}/afile", "--no-ranks"], "is a file, not a folder",
    files={"afile": "x"})
add("plot-out-unwritable", ["plot", "--store", STORE, "--out", "{unwritable}/figs", "--no-ranks"], "cannot write in",
    needs="unwritable")
add("plot-figures-folder-is-a-file", ["plot", "--store", "{copy}", "--no-ranks"],
    "the figures folder (figures/ beside the store; --out DIR) {d}/copy/figures: is a file, not a folder",
    files={"copy/figures": "x"}, setup="none")
add("plot-n-convention", ["plot", "--store", STORE, "--n-convention", "x"], "'x' is not one of")

# coord-check ---------------------------------------------------------------------------------------------------
for cid, args, fragment in [
        ("widths-empty", ["--widths", ""], "--widths must be comma-separated integers"),
        ("widths-text", ["--widths", "a,b"], "--widths must be comma-separated integers"),
        ("widths-zero", ["--widths", "0,64"], "--widths: model shape 2 layers x width 0"),
        ("widths-negative", ["--widths", "-64,64"], "width -64 is not a valid GPT"),
        ("widths-odd", ["--widths", "18,64"], "--widths: width 18: needs width divisible"),
        ("widths-huge", ["--widths", "64,10000000"], "the model of width 10,000,000 needs about"),
        ("widths-one", ["--widths", "64"], "give at least two different widths"),
        ("widths-same", ["--widths", "64,64"], "give at least two different widths"),
        ("base-width-0", ["--base-width", "0"], "--base-width: model shape"),
        ("base-width-odd", ["--base-width", "18"], "--base-width: width 18"),
        ("steps-0", ["--steps", "0"], "--steps 0: from 1 to 1,000"),
        ("steps-negative", ["--steps", "-1"], "--steps -1: from 1 to 1,000"),
        ("steps-huge", ["--steps", "1000000000"], "--steps 1000000000: from 1 to 1,000"),
        ("lr-nan", ["--lr", "nan"], "--lr nan: a learning rate must be finite"),
        ("lr-inf", ["--lr", "inf"], "--lr inf"), ("lr-0", ["--lr", "0"], "--lr 0.0"),
        ("lr-neg", ["--lr", "-1"], "--lr -1.0"),
        ("lr-text", ["--lr", "fast"], "'fast' is not a valid float"),
        ("out-under-a-file", ["--out", "{d}/afile/x.png"], "afile is a file, not a folder"),
        ("out-is-a-folder", ["--out", "{d}"], "is a folder; give a file name"),
        ("out-unwritable", ["--out", "{unwritable}/x.png"], "cannot write in"),
        ("out-format-unknown", ["--out", "{d}/check.foo"],
         "--out {d}/check.foo: matplotlib cannot write '.foo' files (it writes .png, .pdf, .svg, "),
        ("out-format-html", ["--out", "{d}/check.html"], "matplotlib cannot write '.html' files"),
        ("out-no-extension", ["--out", "{d}/check"], "--out {d}/check: no extension to say the figure's format"),
        ("out-no-extension-dot", ["--out", "{d}/check."], "no extension to say the figure's format"),
        ("out-pgf-without-latex", ["--out", "{d}/check.pgf"], "cannot write '.pgf' files on this machine"),
        ("out-exists-not-a-figure", ["--out", "{d}/afile.png"],
         "--out {d}/afile.png: the file exists and is not a figure matplotlib wrote; add --force"),
        ("out-exists-not-a-figure-jpg", ["--out", "{d}/afile.jpg"], "is not a figure matplotlib wrote")]:
    add(f"coord-check-{cid}", ["coord-check", "--widths", "16,32", *args], fragment,
        files={"afile": "x", "afile.png": "my notes, not a figure", "afile.jpg": b"\xff\xd8\xff\xe0 a photo"},
        needs="unwritable" if "unwritable" in str(args) else "no_latex" if "pgf" in cid else None)

# fit: CSV tables ---------------------------------------------------------------------------------------------
for name, fragment in [
        ("empty", "cannot read"), ("header", "has no rows of data (only a header)"), ("onerow", "too few points"),
        ("nonnum", "column 'N' has non-numeric value(s) in row(s) 1"), ("nan", "column 'loss' has NaN"),
        ("blank", "column 'loss' has NaN/missing"), ("negloss", "column 'loss' must be positive and finite; row(s) 21"),
        ("zeroloss", "column 'loss' must be positive"), ("zeroN", "column 'N' must be positive and finite"),
        ("negD", "column 'D' must be positive"), ("infD", "column 'D' must be positive and finite"),
        ("hugeN", "column 'N' must be positive and finite"), ("nocols", "column 'N' is not in t.csv"),
        ("binary", "has no rows of data"), ("ragged", "cannot read"),
        ("onepoint", "repeat an earlier row exactly"), ("repeated", "row(s) 21, 22, 23 of t.csv repeat an earlier row"),
        ("constant", "not identifiable: the loss is 3 in every one of the 20 rows"),
        ("oneN", "not identifiable: 1 distinct N"), ("oneD", "not identifiable: 1 distinct D"),
        ("twoN", "not identifiable: 2 distinct N"), ("tworows", "too few points for chinchilla: 2 row(s)")]:
    files, args = csv_args(name)
    add(f"fit-csv-{name}", ["fit", "--form", "chinchilla", *args, "--bootstrap", "0", "--no-figures",
                            "--out", "{d}/fits"], fragment, files=files)
for name, form, extra, fragment in [
        ("constant", "powerlaw", [], "not identifiable for powerlaw: no slice can identify a law"),
        ("constant", "exponential", [], "not identifiable for exponential"),
        ("constant", "kaplan", [], "not identifiable: the loss is 3"),
        ("constant", "mlp", [], "not identifiable"),
        ("constant", "expr", ["--expr", "E + A*N**-alpha", "--guess", "E=1,A=10,alpha=0.3"], "not identifiable"),
        ("oneN", "kaplan", [], "not identifiable: 1 distinct N"),
        ("oneN", "expr", ["--expr", "E + A*N**-alpha", "--guess", "E=1,A=10,alpha=0.3"], "1 distinct N"),
        ("onepoint", "powerlaw", [], "repeat an earlier row exactly"),
        ("tworows", "powerlaw", [], "too few points for powerlaw")]:
    files, args = csv_args(name)
    add(f"fit-csv-{name}-{form}", ["fit", "--form", form, *args, *extra, "--bootstrap", "0", "--no-figures",
                                   "--out", "{d}/fits"], fragment, files=files)


def fit_good(cid, fragment, *flags, form="chinchilla"):
    files, args = csv_args("good")
    add(f"fit-{cid}", ["fit", "--form", form, *args, "--no-figures", "--out", "{d}/fits", *flags], fragment,
        files={**files, "afile": "x"}, needs="unwritable" if "{unwritable}" in flags else None)


fit_good("form-unknown", "'bogus' is not one of", form="bogus")
fit_good("bootstrap-negative", "'--bootstrap': -1 is not in the range", "--bootstrap", "-1")
fit_good("bootstrap-huge", "--bootstrap 1,000,000,000,000: at most 100,000 draws", "--bootstrap", "1000000000000")
fit_good("bootstrap-text", "'many' is not a valid integer", "--bootstrap", "many")
fit_good("powerlaw-bootstrap-huge", "at most 100,000 draws", "--bootstrap", "100001", form="powerlaw")
for value in ("0", "-1", "nan", "inf", "-inf"):
    fit_good(f"budget-{value}", "budgets must be positive, finite numbers of FLOPs", f"--budget={value}")
fit_good("workers-0", "'--workers': 0 is not in the range", "--workers", "0")
fit_good("workers-huge", "--workers 1,000,000: from 1 to", "--workers", "1000000")
fit_good("seed-negative", "--seed -1: a seed must be a whole number", "--seed", "-1")
fit_good("drop-top-negative", "--drop-top must be >= 0, got -1", "--drop-top", "-1")
fit_good("drop-top-all", "--drop-top 20 would drop all 20 rows", "--drop-top", "20")
fit_good("drop-top-huge", "would drop all 20 rows", "--drop-top", "1" + "0" * 25)
fit_good("interval-unknown", "'--interval': 'xx' is not one of", "--interval", "xx")
fit_good("solver-unknown", "'--solver': 'newton' is not one of", "--solver", "newton")
fit_good("offset-floor-csv", "--offset floor needs the cube's exact loss floors", "--offset", "floor")
fit_good("out-under-a-file", "afile is a file, not a folder", "--out", "{d}/afile/fits")
fit_good("out-unwritable", "cannot write in", "--out", "{unwritable}/fits")
fit_good("out-is-a-file", "Directory '{d}/afile' is a file", "--out", "{d}/afile")
files, args = csv_args("good")
add("fit-figures-folder-is-a-file", ["fit", "--form", "chinchilla", *args, "--bootstrap", "0", "--out", "{d}/fits"],
    "the figures folder (figures/ beside fits/; --no-figures) {d}/figures: is a file", files={**files, "figures": "x"})
fit_good("loss-column-missing", "column 'nope' is not in t.csv", "--loss-col", "nope")
fit_good("group-column-missing", "column 'nope' is not in t.csv", "--group-col", "nope")
fit_good("family-with-csv", "--family/--param/--loss select from the cube", "--family", "er64")
fit_good("loss-with-csv", "--family/--param/--loss select from the cube", "--loss", "exact")
fit_good("expr-flags-with-chinchilla", "--expr goes with --form expr", "--expr", "E")
fit_good("c-col-and-d-col", "give either --d-col (tokens) or --c-col", "--c-col", "D")
fit_good("starts-0", "'--starts': 0 is not in the range", "--starts", "0", form="expr")
files, args = csv_args("compute", "--c-col", "C")
add("fit-c-col-without-n-col", ["fit", "--form", "chinchilla", *args, "--bootstrap", "0", "--no-figures"],
    "--c-col needs --n-col", files=files)
add("fit-csv-no-columns-named", ["fit", "--form", "chinchilla", "--csv", "{d}/t.csv", "--no-figures"],
    "say which columns hold N and D", files={"t.csv": GOOD})
add("fit-csv-missing-file", ["fit", "--form", "chinchilla", "--csv", "{d}/nope.csv", "--n-col", "N", "--d-col", "D"],
    "no such CSV file")
for cid, extra, fragment in [
        ("empty", ["--expr", "", "--guess", "E=1"], "no expression given"),
        ("syntax", ["--expr", "E + A*N**", "--guess", "E=1,A=1"], "cannot parse 'E + A*N**'"),
        ("no-guess", ["--expr", "E + A*N**-alpha"], "neither N, D nor a parameter with a guess"),
        ("guess-nan", ["--expr", "E + A*N**-alpha", "--guess", "E=nan,A=1,alpha=0.3"], "guess E=nan is not a finite"),
        ("guess-inf", ["--expr", "E + A*N**-alpha", "--guess", "E=inf,A=1,alpha=0.3"], "guess E=inf is not a finite"),
        ("guess-text", ["--expr", "E + A*N**-alpha", "--guess", "E=abc,A=1,alpha=0.3"], "'abc' is not a number"),
        ("guess-no-equals", ["--expr", "E + A*N**-alpha", "--guess", "E"], "--guess"),
        ("bound-reversed", ["--expr", "E + A*N**-alpha", "--guess", "E=1,A=1,alpha=0.3", "--bound", "alpha=2:0"],
         "bound alpha=2:0 has lo > hi"),
        ("bound-nan", ["--expr", "E + A*N**-alpha", "--guess", "E=1,A=1,alpha=0.3", "--bound", "alpha=nan:1"],
         "bound for 'alpha' is NaN"),
        ("bound-no-colon", ["--expr", "E + A*N**-alpha", "--guess", "E=1,A=1,alpha=0.3", "--bound", "alpha=1"],
         "expected name=lo:hi"),
        ("guess-outside-bound", ["--expr", "E + A*N**-alpha", "--guess", "E=1,A=1,alpha=5", "--bound", "alpha=0:2"],
         "guess alpha=5 is outside its bound [0, 2]"),
        ("fix-nan", ["--expr", "E + A*N**-alpha", "--guess", "A=1,alpha=0.3", "--fix", "E=nan"], "fix E=nan"),
        ("no-variable", ["--expr", "E", "--guess", "E=1"], "uses neither N nor D"),
        ("code", ["--expr", "__import__('os').system('true')", "--guess", "E=1"], "uses neither N nor D"),
        ("starts-huge", ["--expr", "E + A*N**-alpha", "--guess", "E=1,A=1,alpha=0.3", "--starts", "1000000000"],
         "--starts 1,000,000,000: at most 10,000")]:
    fit_good(f"expr-{cid}", fragment, *extra, "--bootstrap", "0", form="expr")
# fit on the store
for cid, args, fragment in [
        ("family-unknown", ["--form", "powerlaw", "--family", "nope"], "family 'nope' is not in the cube (have: er64)"),
        ("param-unknown", ["--form", "powerlaw", "--param", "nope"], "param 'nope' is not in the cube"),
        ("csv-columns-without-csv", ["--form", "powerlaw", "--n-col", "N"], "describe a CSV: give --csv FILE"),
        ("chinchilla-too-few", ["--form", "chinchilla"], "too few points for chinchilla: 4 row(s)"),
        ("powerlaw-too-few", ["--form", "powerlaw"], "too few points for powerlaw"),
        ("drop-top-negative", ["--form", "powerlaw", "--drop-top", "-3"], "--drop-top must be >= 0"),
        ("loss-unknown", ["--form", "powerlaw", "--loss", "bogus"], "Invalid value for '--loss'"),
        ("offset-floor-kaplan", ["--form", "kaplan", "--offset", "floor"], "--offset floor fixes the offset of"),
        ("out-under-a-file", ["--form", "powerlaw", "--out", "{d}/afile/fits"], "afile is a file, not a folder")]:
    add(f"fit-store-{cid}", ["fit", "--store", STORE, "--bootstrap", "0", "--no-figures", "--out", "{d}/fits", *args],
        fragment, files={"afile": "x"})
add("fit-store-missing", ["fit", "--form", "powerlaw", "--store", "{d}/none/cube.zarr", "--out", "{d}/fits"],
    "no cube at")
add("fit-store-damaged", ["fit", "--form", "powerlaw", "--store", "{copy}", "--out", "{d}/fits"],
    "runs are damaged", setup="chunk-final")

# compare --------------------------------------------------------------------------------------------------------
for cid, extra, name, fragment in [
        ("forms-empty", ["--forms", ""], "good", "--forms is empty"),
        ("forms-unknown", ["--forms", "bogus"], "good", "unknown form 'bogus'"),
        ("forms-one-d", ["--forms", "powerlaw"], "good", "compare takes 2-d forms; 'powerlaw' is 1-d"),
        ("forms-expr", ["--forms", "expr"], "good", "compare takes named forms"),
        ("splits-0", ["--splits", "0"], "good", "'--splits': 0 is not in the range"),
        ("splits-huge", ["--splits", "1000000000"], "good", "--splits 1,000,000,000: at most 1,000"),
        ("seed-negative", ["--seed", "-1"], "good", "--seed -1: a seed must be"),
        ("workers-0", ["--workers", "0"], "good", "'--workers': 0 is not in the range"),
        ("workers-huge", ["--workers", "1000000"], "good", "--workers 1,000,000: from 1 to"),
        ("out-under-a-file", ["--out", "{d}/afile/x"], "good", "afile is a file, not a folder"),
        ("out-is-a-file", ["--out", "{d}/afile"], "good", "Directory '{d}/afile' is a file"),
        ("csv-one-point", [], "onepoint", "repeat an earlier row exactly"),
        ("csv-constant", [], "constant", "not identifiable: the loss is 3"),
        ("csv-one-N", [], "oneN", "not identifiable: 1 distinct N"),
        ("csv-nan", [], "nan", "column 'loss' has NaN")]:
    files, args = csv_args(name)
    add(f"compare-{cid}", ["compare", *args, "--out", "{d}/fits", *extra], fragment, files={**files, "afile": "x"})
add("compare-store-too-few", ["compare", "--store", STORE, "--forms", "chinchilla", "--splits", "2", "--out",
                              "{d}/fits"], "compare: not identifiable: 2 distinct N")
add("compare-store-missing", ["compare", "--store", "{d}/none/cube.zarr"], "no cube at")

# optimal -------------------------------------------------------------------------------------------------------
for cid, extra, name, fragment in [
        ("method-unknown", ["--method", "bogus"], "good", "unknown method 'bogus'"),
        ("budget-0", ["--budget", "0"], "good", "--budget 0.0: budgets must be positive"),
        ("budget-negative", ["--budget", "-5"], "good", "budgets must be positive"),
        ("budget-nan", ["--budget", "nan"], "good", "--budget nan: budgets must be positive, finite"),
        ("budget-inf", ["--budget", "inf"], "good", "--budget inf: budgets must be positive, finite"),
        ("budget-one-of-two-bad", ["--budget", "1e20", "--budget", "0"], "good", "--budget 0.0"),
        ("bootstrap-huge", ["--bootstrap", "1000000000000"], "good", "at most 100,000 draws"),
        ("bootstrap-negative", ["--bootstrap", "-1"], "good", "'--bootstrap': -1 is not in the range"),
        ("grid-small", ["--grid", "4"], "good", "'--grid': 4 is not in the range"),
        ("grid-huge", ["--method", "surrogate", "--grid", "100000000"], "good", "--grid 100,000,000: the surrogates"),
        ("mlp-hidden-huge", ["--method", "surrogate", "--surrogates", "mlp", "--mlp-hidden", "1000000000"], "good",
         "--mlp-hidden 1,000,000,000: the MLP surrogate"),
        ("mlp-epochs-huge", ["--mlp-epochs", "1000000000000"], "good", "--mlp-epochs 1,000,000,000,000: at most"),
        ("isoflop-slices-huge", ["--isoflop-slices", "1000000000"], "good", "--isoflop-slices 1,000,000,000: at most"),
        ("envelope-fraction-nan", ["--envelope-min-fraction", "nan"], "good", "--envelope-min-fraction nan: must be"),
        ("envelope-fraction-2", ["--envelope-min-fraction", "2"], "good", "'--envelope-min-fraction': 2.0 is not"),
        ("surrogates-unknown", ["--method", "surrogate", "--surrogates", "forest"], "good", "--surrogates takes"),
        ("seed-negative", ["--seed", "-1"], "good", "--seed -1: a seed must be"),
        ("workers-0", ["--workers", "0"], "good", "'--workers': 0 is not in the range"),
        ("workers-huge", ["--workers", "1000000"], "good", "--workers 1,000,000: from 1 to"),
        ("flops-exact-csv", ["--flops", "exact"], "good", "--flops exact needs the cube"),
        ("drop-top-negative", ["--drop-top", "-1"], "good", "--drop-top must be >= 0"),
        ("family-with-csv", ["--family", "er64"], "good", "they do not apply to --csv"),
        ("out-under-a-file", ["--out", "{d}/afile/x"], "good", "afile is a file, not a folder"),
        ("out-unwritable", ["--out", "{unwritable}/x"], "good", "cannot write in"),
        ("csv-constant", [], "constant", "compute-optimal [t]: not identifiable: the loss is 3"),
        ("csv-one-N", [], "oneN", "compute-optimal [t]: not identifiable: 1 distinct N"),
        ("csv-one-D", [], "oneD", "compute-optimal [t]: not identifiable: 1 distinct D"),
        ("csv-one-point", [], "onepoint", "repeat an earlier row exactly"),
        ("csv-two-rows", [], "tworows", "not identifiable: 2 distinct N"),
        ("csv-negative-loss", [], "negloss", "column 'loss' must be positive")]:
    files, args = csv_args(name)
    add(f"optimal-{cid}", ["optimal", *args, "--no-figures", "--out", "{d}/fits", *extra], fragment,
        files={**files, "afile": "x"}, needs="unwritable" if "{unwritable}" in extra else None)
for cid, args, fragment in [
        ("family-unknown", ["--family", "nope"], "family 'nope' is not in the cube"),
        ("csv-columns-without-csv", ["--n-col", "N"], "describe a CSV: give --csv FILE"),
        ("budget-0", ["--budget", "0"], "budgets must be positive"),
        ("too-few", [], "not identifiable: 2 distinct N")]:
    add(f"optimal-store-{cid}", ["optimal", "--store", STORE, "--no-figures", "--out", "{d}/fits", *args], fragment)
add("optimal-out-is-a-file", ["optimal", *csv_args("good")[1], "--out", "{d}/afile"], "Directory '{d}/afile' is a file",
    files={**csv_args("good")[0], "afile": "x"})
add("optimal-figures-folder-is-a-file", ["optimal", *csv_args("good")[1], "--store", "{d}/none/cube.zarr"],
    "the figures folder (figures/ beside the store; --out, --no-figures) {d}/none/figures: is a file",
    files={**csv_args("good")[0], "none/figures": "x"})
add("optimal-results-folder-is-a-file", ["optimal", *csv_args("good")[1], "--store", "{d}/none/cube.zarr"],
    "the results folder (fits/ beside the store; --out) {d}/none/fits: is a file",
    files={**csv_args("good")[0], "none/fits": "x"})
add("optimal-store-damaged", ["optimal", "--store", "{copy}", "--no-figures", "--out", "{d}/fits"], "is corrupted",
    setup="json")

# report and results --------------------------------------------------------------------------------------------
for cid, args, fragment in [
        ("out-under-a-file", ["--out", "{d}/afile/r.html"], "--out {d}/afile/r.html: {d}/afile is a file"),
        ("out-is-a-folder", ["--out", "{d}"], "is a directory"),
        ("out-unwritable", ["--out", "{unwritable}/r.html"], "cannot write in"),
        ("markdown-under-a-file", ["--markdown", "{d}/afile/r.md"], "--markdown {d}/afile/r.md"),
        ("fits-is-a-file", ["--fits", "{d}/afile"], "Directory '{d}/afile' is a file"),
        ("forms-unknown", ["--forms", "bogus"], "unknown form 'bogus'"),
        ("forms-empty", ["--forms", ""], "--forms is empty"),
        ("forms-one-d", ["--forms", "powerlaw"], "--forms takes named 2-d forms"),
        ("method-unknown", ["--method", "bogus"], "unknown method 'bogus'"),
        ("budget-0", ["--budget", "0"], "--budget 0.0: budgets must be positive"),
        ("budget-nan", ["--budget", "nan"], "--budget nan"),
        ("bootstrap-huge", ["--bootstrap", "1000000000000"], "--bootstrap 1,000,000,000,000: at most"),
        ("bootstrap-2d-huge", ["--bootstrap-2d", "1000000000000"], "--bootstrap-2d 1,000,000,000,000"),
        ("optimal-bootstrap-huge", ["--optimal-bootstrap", "1000000000000"], "--optimal-bootstrap 1,000,000,000,000"),
        ("splits-huge", ["--splits", "1000000000"], "--splits 1,000,000,000: at most 1,000"),
        ("seed-negative", ["--seed", "-1"], "--seed -1"),
        ("workers-huge", ["--workers", "1000000"], "--workers 1,000,000")]:
    add(f"report-{cid}", ["report", "--store", STORE, "--no-ranks", "--fits", "{d}/fits", *args], fragment,
        files={"afile": "x"}, needs="unwritable" if "unwritable" in str(args) else None)
for cid, args, files, fragment in [
        ("out-format", ["--out", "{d}/r.pdf"], {}, "--out {d}/r.pdf: the report writes an HTML page there; name it "
         ".html or .htm"),
        ("out-no-extension", ["--out", "{d}/report"], {}, "name it .html or .htm"),
        ("markdown-format", ["--markdown", "{d}/r.txt"], {}, "--markdown {d}/r.txt: the report writes Markdown "
         "there; name it .md or .markdown"),
        ("markdown-is-a-folder", ["--markdown", "{d}/m.md"], {"m.md/": ""}, "is a directory"),
        ("markdown-unwritable", ["--markdown", "{unwritable}/r.md"], {}, "cannot write in"),
        ("out-exists-not-a-report", ["--out", "{d}/r.html"], {"r.html": "<html><title>mine</title></html>"},
         "--out {d}/r.html: the file exists and is not a page scalingkit report wrote; add --force to replace it"),
        ("markdown-exists-not-a-report", ["--markdown", "{d}/notes.md"], {"notes.md": "# my notes\n"},
         "--markdown {d}/notes.md: the file exists and is not a Markdown file scalingkit report wrote; add --force"),
        ("markdown-figures-folder-is-a-file", ["--markdown", "{d}/r.md"], {"r-figures": "x"},
         "--markdown (its figures folder) {d}/r-figures: is a file, not a folder")]:
    add(f"report-{cid}", ["report", "--store", STORE, "--no-ranks", "--fits", "{d}/fits", "--out", "{d}/page.html",
                          *args], fragment, files=files, needs="unwritable" if "unwritable" in str(args) else None)
add("report-default-page-not-a-report", ["report", "--store", "{copy}", "--no-ranks", "--no-compute"],
    "the report (report.html beside the store; --out FILE) {d}/copy/report.html: the file exists and is not a page",
    files={"copy/report.html": "my page"}, setup="none")
add("report-store-missing", ["report", "--store", "{d}/none/cube.zarr", "--out", "{d}/r.html"], "no store at")
add("results-fits-is-a-file", ["results", "--fits", "{d}/afile"], "is a file", files={"afile": "x"})
add("results-fits-missing", ["results", "--fits", "{d}/nope"], "no results folder at")
add("results-index-damaged", ["results", "--fits", "{d}/fits"], "the results index", files={
    "fits/index.csv": 'time,kind\n"unterminated'})
add("unknown-command", ["bogus-command"], "No such command 'bogus-command'")
add("no-such-option", ["fit", "--form", "powerlaw", "--bogus"], "No such option '--bogus'")

# a few through a real process: what C libraries print to the descriptor, or an abort, is only seen there
SUBPROCESS = {"family-bpe-huge", "training-grad_clip-nan", "fit-csv-constant", "optimal-budget-0",
              "coord-check-lr-nan", "train-lock-cannot-be-made", "status-status-chunk-garbage",
              "coord-check-out-format-unknown"}
CASES = [pytest.param(*p.values[:5], p.id in SUBPROCESS, p.values[6], id=p.id) for p in CASES]


# ------------------------------------------------------------------------------------------------ fixtures

def tree_hash(folder: Path) -> str:
    """Every file under `folder`: its path and bytes."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def listing(folder: Path) -> set:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The module's tiny store (trained once, in this process), the folders the cases use, and the places nothing
    can be written (a folder with no write permission; as root, which ignores permissions, /sys)."""
    base = tmp_path_factory.mktemp("bad_inputs")
    sweep_file = base / "tiny.toml"
    sweep_file.write_text(tiny_sweep_text())
    store = base / "store" / "cube.zarr"
    code, out, err = invoke(["train", str(sweep_file), "--fill-missing", "--store", str(store), "--workers", "0",
                             "--no-progress"])
    assert code == 0, (out, err)
    unwritable = base / "no-write"
    unwritable.mkdir()
    unwritable.chmod(0o555)
    if _writable(unwritable):  # root: permissions do not stop it
        unwritable = Path("/sys") if Path("/sys").is_dir() and not _writable(Path("/sys")) else None
    readonly_store = None
    if os.geteuid() != 0:  # a store in a folder nobody can write: its lock cannot be made
        folder = base / "read-only"
        folder.mkdir()
        shutil.copytree(store, folder / "cube.zarr")
        folder.chmod(0o555)
        readonly_store = folder / "cube.zarr"
    no_latex = None if shutil.which(matplotlib_rc("pgf.texsystem")) else "no LaTeX"
    yield {"base": base, "store": store, "unwritable": unwritable, "readonly_store": readonly_store,
           "no_latex": no_latex}
    for folder in (base / "no-write", base / "read-only"):
        if folder.exists():
            folder.chmod(0o755)


def matplotlib_rc(key: str):
    import matplotlib

    return matplotlib.rcParams[key]


def _writable(folder: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def invoke(argv: list[str]) -> tuple[int, str, str]:
    """`scalingkit ARGV` in this process: the entry point the console script runs, its stdout and stderr captured,
    warnings printed to stderr as a real run prints them (Python's default filters)."""
    from scalingkit.cli.main import main

    runner = CliRunner()
    with runner.isolation(env={"SCALINGKIT_NO_PROGRESS": "1"}) as (out, err, _), warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.simplefilter("default")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        warnings.showwarning = lambda msg, cat, path, line, file=None, text=None: sys.stderr.write(
            warnings.formatwarning(msg, cat, path, line, text))
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue().decode(errors="replace"), err.getvalue().decode(errors="replace")


DAMAGE = {
    "none": lambda s: None,  # a copy as it is, for a file placed beside it
    "json": lambda s: (s / "zarr.json").write_text("{not json"),
    "schema": lambda s: (s / "zarr.json").write_text((s / "zarr.json").read_text().replace(
        '"schema_version": 4', '"schema_version": 99')),
    "array": lambda s: shutil.rmtree(s / "status"),
    "chunk": lambda s: [p.write_bytes(b"garbage") for p in (s / "status").rglob("*") if p.is_file() and
                        p.name != "zarr.json"],
    "chunk-final": lambda s: [p.write_bytes(b"garbage") for p in (s / "final_exact_loss").rglob("*")
                              if p.is_file() and p.name != "zarr.json"],
}


# ------------------------------------------------------------------------------------------------ the test

def test_the_table_has_every_command_and_enough_cases():
    commands = {p.values[0][0] for p in CASES}
    assert len(CASES) >= 150, len(CASES)
    assert {"train", "status", "table", "plot", "coord-check", "fit", "compare", "optimal", "report",
            "results"} <= commands
    assert len({p.id for p in CASES}) == len(CASES)


@pytest.mark.parametrize("args, fragment, files, code, setup, subprocess, needs", CASES)
def test_bad_input(env, tmp_path, monkeypatch, args, fragment, files, code, setup, subprocess, needs):
    if needs and env[needs] is None:
        pytest.skip("LaTeX is installed: .pgf figures can be written here" if needs == "no_latex" else
                    f"no {needs.replace('_', ' ')} place on this machine (root ignores permissions)")
    d = tmp_path
    for name, text in files.items():
        p = d / name
        if name.endswith("/"):  # an (empty) folder
            p.mkdir(parents=True, exist_ok=True)
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
    store = env["store"]
    copy = None
    if setup:
        copy = d / "copy" / "cube.zarr"
        shutil.copytree(store, copy)
        DAMAGE[setup](copy)
    values = {"d": str(d), "store": str(store), "copy": str(copy), "unwritable": str(env["unwritable"]),
              "readonly_store": str(env["readonly_store"])}
    argv = [a.format(**values) for a in args]
    fragment = fragment.format(**values)
    named = [Path(v) for k, v in values.items() if k in ("store", "copy", "readonly_store") and
             any(v in a for a in argv)]
    before = {p: tree_hash(p) for p in named}
    files_before, d_before = listing(d), tree_hash(d)
    monkeypatch.chdir(d)  # default paths (store/cube.zarr, fits/, figures/) land here, never in the repository
    if subprocess:
        proc = run_cli(*argv, cwd=d, env={**os.environ, "SCALINGKIT_NO_PROGRESS": "1"})
        err = one_line_error(proc) if code == 2 else proc.stderr.strip()
        rc, stderr = proc.returncode, proc.stderr
    else:
        rc, _, stderr = invoke(argv)
        err = stderr.strip()
    assert rc == code, (rc, stderr)
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    assert err.startswith("error:") and len(err.splitlines()) == 1, stderr
    assert fragment in err, (fragment, err)
    for p, digest in before.items():
        assert tree_hash(p) == digest, f"{p} changed"
    assert listing(d) == files_before, sorted(listing(d) - files_before)
    assert tree_hash(d) == d_before, "a file where the command ran changed"  # a refused overwrite included


# ------------------------------------------------------------------------------------------------ the --yes estimate

def test_a_sweep_of_days_asks_for_yes_and_says_its_estimate(tmp_path):
    """The estimate in `train`'s refusal: FLOPs and a lower bound on the time here; --yes prints it and goes on; a
    tiny sweep and the demo are far below the threshold (the demo is not even timed)."""
    import tomllib

    from scalingkit.errors import UserError
    from scalingkit.sweep import cost, spec

    huge = spec.from_table(tomllib.loads(sweep(grid={"widths": "[256]", "tokens": "[9_000_000_000_000_000]"})))
    with pytest.raises(UserError, match=r"1 run left, [0-9.e+]+ FLOPs: at least .* add --yes") as exc:
        cost.confirm(tmp_path / "cube.zarr", huge, workers=1)
    assert len(str(exc.value).splitlines()) == 1
    said = []
    est = cost.confirm(tmp_path / "cube.zarr", huge, workers=1, yes=True, echo=said.append)
    assert est.seconds > cost.THRESHOLD_SECONDS and est.flops > 1e22
    assert len(said) == 1 and "training it (--yes)" in said[0]
    tiny = spec.from_table(tomllib.loads(tiny_sweep_text()))
    assert cost.confirm(tmp_path / "cube.zarr", tiny, workers=1).seconds is None  # far below: not timed
    demo = spec.load(Path(__file__).resolve().parents[1] / "sweeps" / "er_cpu_demo.toml")
    est = cost.estimate(cost.runs_left(tmp_path / "cube.zarr", [demo]), workers=2, measure=True)
    assert est.seconds < cost.THRESHOLD_SECONDS / 50, est.text()
    # a sweep to a cluster is not timed on this machine
    assert cost.confirm(tmp_path / "cube.zarr", huge, workers=1, executor="slurm") is None


def test_runs_left_counts_only_what_the_store_has_not_finished(env):
    """The estimate counts the cells still missing: nothing for the module's store, whose runs are all done."""
    import tomllib

    from scalingkit.sweep import cost, spec

    sw = spec.from_table(tomllib.loads(tiny_sweep_text()))
    assert len(cost.runs_left(env["base"] / "none" / "cube.zarr", [sw])) == 4
    assert cost.runs_left(env["store"], [sw]) == []



# ------------------------------------------------------------------------------------------------ output files

def test_a_refused_overwrite_leaves_the_file_as_it_was_and_force_replaces_it(tmp_path):
    """coord-check replaces only a figure matplotlib wrote: another file at --out is refused before any model is
    trained, byte for byte as it was; --force replaces it, and the figure it wrote is then replaced without."""
    from scalingkit.cli.checks import written_by_matplotlib

    mine = tmp_path / "mine.png"
    mine.write_bytes(b"\x89PNG\r\n\x1a\n not matplotlib's, someone's")
    before = mine.read_bytes()
    args = ["coord-check", "--widths", "16,32", "--steps", "1", "--out", str(mine)]
    code, out, err = invoke(args)
    assert code == 2 and err.strip().startswith("error: --out") and "add --force" in err, err
    assert out == "" and mine.read_bytes() == before and listing(tmp_path) == {"mine.png"}
    code, out, err = invoke([*args, "--force"])
    assert code == 0, err
    assert mine.read_bytes().startswith(b"\x89PNG") and mine.read_bytes() != before and written_by_matplotlib(mine)
    code, out, err = invoke(args)  # its own figure: re-drawn in place
    assert code == 0 and f"wrote {mine}" in out, err


def test_report_re_writes_its_own_page_and_markdown_and_nothing_else(env, tmp_path):
    """`make demo` and `make reproduce-cpu` re-run `report` into the same files: an earlier report's page and
    Markdown are replaced; a file of anything else is refused unchanged, and replaced with --force."""
    page, md = tmp_path / "r.html", tmp_path / "r.md"
    args = ["report", "--store", str(env["store"]), "--no-compute", "--no-ranks", "--out", str(page), "--markdown",
            str(md)]
    for _ in range(2):
        code, out, err = invoke(args)
        assert code == 0 and out.strip() == str(page), err
    page.write_text("<html><title>my page</title></html>")
    md.write_text("# my notes\n")
    code, _, err = invoke(args)
    assert code == 2 and "is not a page scalingkit report wrote; add --force" in err, err
    assert page.read_text() == "<html><title>my page</title></html>" and md.read_text() == "# my notes\n"
    code, _, err = invoke(args + ["--out", str(tmp_path / "other.html")])  # the Markdown is refused too
    assert code == 2 and "--markdown" in err and "is not a Markdown file scalingkit report wrote" in err, err
    assert not (tmp_path / "other.html").exists()
    code, _, err = invoke(args + ["--force"])
    assert code == 0, err
    assert "<title>scalingkit report: " in page.read_text() and md.read_text().startswith("# scalingkit report: ")


def test_figure_formats_are_matplotlibs_own(tmp_path):
    """coord-check's --out takes every extension matplotlib lists (any case), or says why it cannot write it here;
    the figures it writes with metadata are recognised as its own."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backend_bases import FigureCanvasBase
    from matplotlib.figure import Figure

    from scalingkit.cli import checks
    from scalingkit.errors import UserError

    formats = FigureCanvasBase.get_supported_filetypes()
    assert {"png", "pdf", "svg"} <= set(formats)
    for ext in formats:
        for name in (f"f.{ext}", f"f.{ext.upper()}"):
            try:
                checks.figure_file(tmp_path / name, "--out")
            except UserError as exc:
                assert "on this machine" in str(exc), exc
    with pytest.raises(UserError, match=r"cannot write '\.foo' files \(it writes \.png, \.pdf, \.svg, .*\.webp"):
        checks.figure_file(tmp_path / "f.foo", "--out")
    fig = Figure()
    fig.add_subplot().plot([1, 2], [3, 4])
    for ext in ("png", "pdf", "svg", "svgz", "eps", "ps"):
        fig.savefig(tmp_path / f"g.{ext}")
        assert checks.written_by_matplotlib(tmp_path / f"g.{ext}"), ext
    assert listing(tmp_path) == {f"g.{ext}" for ext in ("png", "pdf", "svg", "svgz", "eps", "ps")}
