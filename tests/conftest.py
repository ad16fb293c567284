"""Shared helpers: tiny real sweeps (seconds on 2 CPU cores) and a way to run the real CLI."""
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

# One intra-op thread, as the workers use: on a shared 2-core machine a second spinning thread slows small models
# by an order of magnitude, and the tests' tiny models gain nothing from it.
torch.set_num_threads(1)

# Run in the background (`make test &`), the shell starts pytest with SIGINT ignored, and every process the tests
# start would inherit that and shrug off the Ctrl-C they are sent: restore Python's own handler (reset to the
# default in each child at exec).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# `make test` runs the suite in two passes: everything else on two pytest-xdist workers, then these modules alone.
# They time what real processes do (a killed coordinator's workers gone within 2 s, two coordinators racing for the
# same cells, SLURM jobs and dask workers on the machine's 2 CPUs, one private SLURM cluster per session), which a
# second test process competing for the CPUs would slow past their limits.
SERIAL = {"test_executors.py", "test_slurm_cluster.py", "test_dask_cluster.py", "test_orphans.py", "test_claims.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SERIAL:
            item.add_marker(pytest.mark.serial)


@pytest.fixture(autouse=True)
def _close_figures():
    """The figure functions hand their figures to the caller, who closes them; in a test the test is the caller,
    and figures left open pile up in the worker (matplotlib warns past 20)."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


REPO = Path(__file__).resolve().parents[1]
SCALINGKIT = [sys.executable, "-m", "scalingkit.cli.main"]


def tiny_sweep_text(name="tiny", widths=(16, 32), tokens=(6400, 12800), lrs=(1e-2,), seeds=(0,), extra_training=""):
    return textwrap.dedent(f"""\
        name = "{name}"
        [families.er64]
        kind = "er"
        nodes = 64
        edges = 256
        seed = 1
        [grid]
        widths = {list(widths)}
        tokens = {list(tokens)}
        lrs = {list(lrs)}
        seeds = {list(seeds)}
        [training]
        batch = 16
        context = 20
        eval_points = 8
        eval_sequences = 32
        {extra_training}
        """)


def write_random_words(folder, seed: int, vocabulary: int, documents: int, words_each: int):
    """A corpus folder of `documents` .txt files of random words w0..w{vocabulary-1} (fixed by `seed`)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lexicon = np.array([f"w{i}" for i in range(vocabulary)])
    for i in range(documents):
        (folder / f"{i:02d}.txt").write_text(" ".join(rng.choice(lexicon, words_each)))
    return folder


@pytest.fixture(scope="session")
def synthetic_cube(tmp_path_factory):
    """(path, law): the default synthetic sweep of scalingkit.run.synthetic (10 widths x 8 budgets x 2 learning
    rates, 16 points a curve, noise seed 0), written once through RunWriter and read by every compute-optimal
    test module that wants it (building it takes 7-14 s). Read it; never write to it."""
    from scalingkit.run.synthetic import chinchilla_cube

    return chinchilla_cube(tmp_path_factory.mktemp("synthetic") / "cube.zarr", seed=0)


@pytest.fixture(scope="session")
def synthetic_inputs(synthetic_cube):
    """The compute-optimal inputs of synthetic_cube (optimal.from_cube), shared likewise: read, never change."""
    from scalingkit.optimal import from_cube

    (inputs,) = from_cube(synthetic_cube[0])
    return inputs


@pytest.fixture(scope="module")
def private_cache(tmp_path_factory):
    """Token, tokenizer and generator caches under pytest's temporary folder, for a module that names it with
    `pytestmark = pytest.mark.usefixtures("private_cache")`: fixtures a mark names are set up before the module's
    other fixtures of the same scope, which build families and so must already see the private cache."""
    from scalingkit.families import embedded

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCALINGKIT_CORPUS", str(embedded.corpus_dir()))  # before the cache root moves
        mp.setenv("SCALINGKIT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        yield


@pytest.fixture
def write_sweep(tmp_path):
    def write(text, name="sweep.toml"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def run_cli(*args, cwd=None, timeout=300, **popen):
    env = dict(popen.pop("env", os.environ), PYTHONUNBUFFERED="1")
    return subprocess.run([*SCALINGKIT, *map(str, args)], capture_output=True, text=True, cwd=cwd or REPO,
                          timeout=timeout, env=env, **popen)


def one_line_error(proc):
    """The CLI's contract for bad input: exit code 2, one line on stderr starting with 'error:', no traceback."""
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    return err


def assert_estimates_inside_intervals(res, laws=("a", "b", "kN", "kD"), tag=None):
    """A compute-optimal result's laws and first budget's values each lie strictly inside their own interval."""
    for name in laws:
        lo, hi = res.intervals[name]
        assert lo < res[name] < hi, (tag, name)
    row = res.budgets[0]
    for name in ("N_opt", "D_opt", "tokens_per_param"):
        lo, hi = row["intervals"][name]
        assert lo < row["values"][name] < hi, (tag, name)


def process_alive(pid: int) -> bool:
    """The process runs (a zombie has ended; only its exit status waits to be collected)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return out
