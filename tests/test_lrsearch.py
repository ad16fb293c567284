"""Learning-rate search: the rule on synthetic losses, the sweep key, and a real small search that brackets the
optimum the full grid finds."""
import json
import math
import tomllib

import numpy as np
import pytest

from conftest import one_line_error, run_cli, tiny_sweep_text
from scalingkit import store
from scalingkit.run import runner
from scalingkit.sweep import lrsearch, plan
from scalingkit.sweep import spec as sweep

GRID = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]


def bowl(best):
    """A loss convex in log lr with its minimum at `best`."""
    return lambda lr: (math.log10(lr) - math.log10(best)) ** 2 + 1.0


def run_search(loss, start, max_rounds=10, grid=GRID):
    """Replay the search with every wanted lr finished immediately (what rounds of training converge to)."""
    for _ in range(len(grid) + 2):
        result = lrsearch.search(grid, start, lambda lr: loss(lr) if lr in trained else None, max_rounds)
        if result.state != "searching":
            return result
        trained.update(result.wanted)
    raise AssertionError("the search did not end")


@pytest.fixture(autouse=True)
def _fresh_trained():
    global trained
    trained = set()


@pytest.mark.parametrize("start", [[1e-4], [1e-1], [1e-3, 3e-3], [1e-4, 1e-1]])
def test_search_brackets_an_interior_optimum_from_any_start(start):
    result = run_search(bowl(3e-2), start)
    assert result.state == "bracketed" and result.best_lr == 3e-2
    assert {1e-2, 3e-2, 1e-1} <= set(result.wanted)


def test_search_tries_only_what_it_needs():
    result = run_search(bowl(1e-3), [1e-3])
    assert result.wanted == (3e-4, 1e-3, 3e-3) and result.rounds == 1


def test_optimum_beyond_the_grid_is_a_reported_bound():
    assert run_search(bowl(1.0), [1e-3]).state == "high bound"
    low = run_search(bowl(1e-6), [1e-2])
    assert low.state == "low bound" and low.best_lr == 1e-4


def test_max_rounds_stops_the_search():
    result = run_search(bowl(1e-1), [1e-4], max_rounds=2)
    assert result.state == "max rounds" and len(result.wanted) == 3


def test_diverged_counts_as_worst_and_waiting_as_unknown():
    loss = lambda lr: math.inf if lr >= 1e-2 else bowl(1e-1)(lr)  # noqa: E731 - best lr diverges: step back
    result = run_search(loss, [1e-3])
    assert result.state == "bracketed" and result.best_lr == 3e-3
    waiting = lrsearch.search(GRID, [1e-3, 3e-3], {1e-3: 1.0, 3e-3: None}.get, 5)
    assert waiting.state == "searching" and waiting.best_lr is None


def test_seed_losses_reduce_to_the_best_finished_seed():
    done, diverged = 1, 2
    codes = np.array([[1, 1], [1, 2], [2, 2], [1, 0]])
    losses = np.array([[2.0, 1.5], [1.2, np.nan], [np.nan, np.nan], [1.0, np.nan]])
    assert lrsearch.lr_losses(codes, losses, done, diverged) == [1.5, 1.2, math.inf, None]


def test_sweep_key_is_validated(tmp_path, write_sweep):
    base = tiny_sweep_text(lrs=(1e-3, 1e-2, 1e-1))
    sw = sweep.from_table(tomllib.loads(base + "[lr_search]\nmax_rounds = 3\n"))
    assert sw.lr_search == {"start": [1e-3, 1e-2, 1e-1], "max_rounds": 3}  # default start: the middle three
    for extra, expected in (("start = [5e-3]", "not in grid.lrs"), ("stat = [1e-2]", "lr_search.stat"),
                            ("max_rounds = -1", "max_rounds"), ("start = []", "lr_search.start")):
        err = one_line_error(run_cli("train", write_sweep(base + f"[lr_search]\n{extra}\n"), "--fill-missing",
                                     "--store", tmp_path / "cube.zarr"))
        assert expected in err


def test_search_on_a_small_case_brackets_the_optimum_of_the_full_grid(tmp_path):
    """Real training: the search starts at the smallest lr, climbs the grid, and stops with the best bracketed; the
    full grid, trained into another cube, has its minimum at the same lr. `status` says it is bracketed."""
    lrs = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
    text = tiny_sweep_text(widths=(16,), tokens=(6400,), lrs=lrs)
    searched = tmp_path / "search.zarr"
    sw = sweep.from_table(tomllib.loads(text + "[lr_search]\nstart = [1e-3]\n"))
    lines = []
    report = runner.fill_missing(searched, sw, workers=0, progress=False, echo=lines.append)
    (row,) = plan.lr_optima(searched, [sw])
    assert row["state"] == "bracketed", row
    assert report.planned == row["tried"] < len(lrs)  # the search trained less than the grid
    assert any("1 bracketed" in line for line in lines)

    full = tmp_path / "full.zarr"
    runner.fill_missing(full, sweep.from_table(tomllib.loads(text)), workers=0, progress=False, echo=lambda *a: None)
    grid_loss = store.open_cube(full)["final_eval_loss"].squeeze()
    assert float(grid_loss["lr"][int(np.argmin(grid_loss.values))]) == pytest.approx(row["best_lr"])
    searched_loss = store.open_cube(searched)["final_eval_loss"].squeeze()
    tried = searched_loss.dropna("lr")
    np.testing.assert_allclose(tried.values, grid_loss.sel(lr=tried["lr"]).values, rtol=0, atol=1e-4)

    status = run_cli("status", "--store", searched)
    assert status.returncode == 0 and "1 bracketed" in status.stdout and " ok " in status.stdout, status.stdout
    assert f"planned runs: {row['tried']}" in status.stdout  # untried lrs are not planned, nor counted as left
    as_json = json.loads(run_cli("status", "--store", searched, "--json").stdout)
    assert as_json["lr_optima"][0]["state"] == "bracketed"
    grid_status = run_cli("status", "--store", full, "--brackets")
    assert "1 bracketed" in grid_status.stdout, grid_status.stdout
    again = runner.fill_missing(searched, None, workers=0, progress=False, echo=lambda *a: None)
    assert again.planned == 0  # the search is finished: nothing more to train
