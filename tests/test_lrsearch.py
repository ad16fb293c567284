"""Learning-rate search: the rule on synthetic losses (on the grid and past its ends), the sweep keys, a real small
search that brackets the optimum the full grid finds, and a real search that grows the cube's lr labels past a grid
whose learning rates are all too small."""
import json
import math
import tomllib

import numpy as np
import pytest

from conftest import one_line_error, run_cli, tiny_sweep_text
from scalingkit import store
from scalingkit.cli import tables
from scalingkit.errors import UserError
from scalingkit.run import runner
from scalingkit.sweep import lrsearch, plan
from scalingkit.sweep import spec as sweep

GRID = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]


def bowl(best):
    """A loss convex in log lr with its minimum at `best`."""
    return lambda lr: (math.log10(lr) - math.log10(best)) ** 2 + 1.0


def run_search(loss, start, max_rounds=10, grid=GRID, **past):
    """Replay the search with every wanted lr finished immediately (what rounds of training converge to)."""
    for _ in range(len(grid) + 2 * past.get("beyond", 0) + 2):
        result = lrsearch.search(grid, start, lambda lr: loss(lr) if lr in trained else None, max_rounds, **past)
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


HALF_DECADES = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]  # a factor 3 at the top, 10/3 at the bottom


def test_steps_past_the_grid_go_by_its_ratio_at_each_end_and_stay_tidy():
    below, above = lrsearch.steps_past(HALF_DECADES, 2)
    assert above == [0.9, 2.7]  # 0.3 x 3, 0.3 x 9, not 0.8999999999999999
    assert below == [3.33333333333e-4, 1.11111111111e-4]  # 1e-3 / 3, 1e-3 / 9 (12 significant digits)
    assert lrsearch.steps_past([3e-3, 1e-2, 3e-2], 2)[0] == [9e-4, 2.7e-4]  # the ratio at the low end is 10/3
    assert lrsearch.steps_past(HALF_DECADES, 3, lr_max=2.7, lr_min=2e-4) == ([3.33333333333e-4], [0.9, 2.7])
    assert lrsearch.steps_past(HALF_DECADES, 0) == ([], [])


def test_search_steps_past_the_top_by_the_grid_ratio_then_brackets():
    loss = bowl(1.0)  # the optimum lies past the grid's top, 0.3: nearest to 0.9
    trained.update([1e-2, 3e-2, 1e-1, 3e-1])  # rounds so far walked up to the top of the grid
    step = lrsearch.search(HALF_DECADES, [3e-2], lambda lr: loss(lr) if lr in trained else None, 10, beyond=2)
    assert step.state == "searching" and step.wanted[-1] == 0.9 and step.beyond == (0.9,)
    trained.add(0.9)
    step = lrsearch.search(HALF_DECADES, [3e-2], lambda lr: loss(lr) if lr in trained else None, 10, beyond=2)
    assert step.state == "searching" and step.beyond == (0.9, 2.7)  # 0.9 is best: its upper neighbour next
    result = run_search(loss, [3e-2], grid=HALF_DECADES, beyond=2)
    assert result.state == "bracketed beyond the grid" and result.best_lr == 0.9
    assert result.beyond == (0.9, 2.7) and result.limit is None
    assert max(result.wanted) == 2.7 and 1e-3 not in result.wanted


def test_search_steps_past_the_bottom_by_the_grid_ratio_then_brackets():
    grid = [3e-3, 1e-2, 3e-2, 1e-1, 3e-1]
    result = run_search(bowl(1e-3), [1e-2], grid=grid, beyond=2)
    assert result.state == "bracketed beyond the grid" and result.best_lr == 9e-4
    assert result.beyond == (2.7e-4, 9e-4) and result.wanted[:3] == (2.7e-4, 9e-4, 3e-3)
    # the same optimum with beyond = 0 is today's bound at the grid's end
    assert run_search(bowl(1e-3), [1e-2], grid=grid).state == "low bound"


def test_the_bound_past_the_grid_stops_the_search_and_says_what_set_it():
    result = run_search(bowl(100.0), [3e-2], grid=HALF_DECADES, beyond=2)
    assert (result.state, result.best_lr, result.limit) == ("high bound", 2.7, "beyond = 2")
    assert result.beyond == (0.9, 2.7)
    capped = run_search(bowl(100.0), [3e-2], grid=HALF_DECADES, beyond=2, lr_max=1.0)
    assert (capped.state, capped.best_lr, capped.limit) == ("high bound", 0.9, "lr_max = 1")
    assert 2.7 not in capped.wanted
    at_grid = run_search(bowl(100.0), [3e-2], grid=HALF_DECADES, beyond=2, lr_max=0.5)
    assert (at_grid.state, at_grid.best_lr, at_grid.limit, at_grid.beyond) == ("high bound", 0.3, "lr_max = 0.5", ())
    low = run_search(bowl(1e-9), [3e-2], grid=HALF_DECADES, beyond=3, lr_min=2e-4)
    assert (low.state, low.best_lr, low.limit) == ("low bound", 3.33333333333e-4, "lr_min = 0.0002")
    assert run_search(bowl(1e-9), [3e-2], grid=HALF_DECADES).limit == "grid"
    rounds = run_search(bowl(100.0), [3e-2], grid=HALF_DECADES, beyond=2, max_rounds=3)
    assert (rounds.state, rounds.best_lr, rounds.beyond) == ("max rounds", 0.9, (0.9,))


def test_a_diverged_step_past_the_grid_brackets_the_grid_top():
    loss = lambda lr: math.inf if lr > 0.5 else bowl(1.0)(lr)  # noqa: E731 - past the top it diverges
    result = run_search(loss, [3e-2], grid=HALF_DECADES, beyond=2)
    assert (result.state, result.best_lr, result.beyond) == ("bracketed", 0.3, (0.9,))


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
    # default start: the middle three; default beyond: 2 steps past each end
    assert sw.lr_search == {"start": [1e-3, 1e-2, 1e-1], "max_rounds": 3, "beyond": 2}
    sw = sweep.from_table(tomllib.loads(base + "[lr_search]\nbeyond = 1\nlr_max = 5\nlr_min = 1e-5\n"))
    # default max_rounds: enough to walk every lr the search may try (3 on the grid, 1 past each end)
    assert sw.lr_search == {"start": [1e-3, 1e-2, 1e-1], "max_rounds": 5, "beyond": 1, "lr_min": 1e-5, "lr_max": 5.0}
    for extra, expected in (("start = [5e-3]", "not in grid.lrs"), ("stat = [1e-2]", "lr_search.stat"),
                            ("max_rounds = -1", "max_rounds"), ("start = []", "lr_search.start")):
        err = one_line_error(run_cli("train", write_sweep(base + f"[lr_search]\n{extra}\n"), "--fill-missing",
                                     "--store", tmp_path / "cube.zarr"))
        assert expected in err


def test_bad_beyond_and_limits_give_one_line_errors(tmp_path, write_sweep):
    base = tiny_sweep_text(lrs=(1e-3, 1e-2, 1e-1))
    # through the CLI: exit code 2, one line naming the key
    for extra in ("beyond = -1", "beyond = 1.5", "beyond = 11"):
        err = one_line_error(run_cli("train", write_sweep(base + f"[lr_search]\n{extra}\n"), "--fill-missing",
                                     "--store", tmp_path / "cube.zarr"))
        assert "lr_search.beyond must be a whole number from 0 to 10" in err, err
    assert not (tmp_path / "cube.zarr").exists()  # nothing was created
    # every other bad value: the same UserError (what the CLI prints), one line, naming the key
    for extra, expected in (("beyond = true", "lr_search.beyond must be"), ('beyond = "2"', "lr_search.beyond must be"),
                            ("beyond = [2]", "lr_search.beyond must be"),
                            ("lr_max = 0.1", "lr_search.lr_max must be a number above the grid's top learning rate"),
                            ("lr_max = 0.05", "lr_search.lr_max must be"), ('lr_max = "inf"', "lr_search.lr_max"),
                            ("lr_max = inf", "lr_search.lr_max"), ("lr_max = true", "lr_search.lr_max"),
                            ("lr_min = 0", "lr_search.lr_min must be a number positive and below"),
                            ("lr_min = 1e-3", "lr_search.lr_min must be"), ("lr_min = -1e-4", "lr_search.lr_min"),
                            ("lr_min = nan", "lr_search.lr_min")):
        with pytest.raises(UserError) as info:
            sweep.from_table(tomllib.loads(base + f"[lr_search]\n{extra}\n"))
        assert expected in str(info.value) and "\n" not in str(info.value), (extra, str(info.value))
    one_lr = tiny_sweep_text(lrs=(1e-2,))
    with pytest.raises(UserError, match="lr_search.beyond = 1 needs at least two grid.lrs"):
        sweep.from_table(tomllib.loads(one_lr + "[lr_search]\nbeyond = 1\n"))
    # a grid of one learning rate has no ratio to step by: by default the search stays on it
    assert sweep.from_table(tomllib.loads(one_lr + "[lr_search]\n")).lr_search["beyond"] == 0


def test_search_on_a_small_case_brackets_the_optimum_of_the_full_grid(tmp_path):
    """Real training: the search starts at the smallest lr, climbs the grid, and stops with the best bracketed; the
    full grid, trained into another cube, has its minimum at the same lr. `status` says it is bracketed."""
    lrs = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
    text = tiny_sweep_text(widths=(16,), tokens=(6400,), lrs=lrs)
    searched = tmp_path / "search.zarr"
    sw = sweep.from_table(tomllib.loads(text + "[lr_search]\nstart = [1e-3]\n"))
    report = runner.fill_missing(searched, sw, workers=0, progress=False, echo=lambda *a: None)
    (row,) = plan.lr_optima(searched, [sw])
    assert row["state"] == "bracketed", row
    assert report.planned == row["tried"] < len(lrs)  # the search trained less than the grid
    assert "; learning-rate search: 1 bracketed" in report.summary()  # said on the summary line

    full = tmp_path / "full.zarr"
    runner.fill_missing(full, sweep.from_table(tomllib.loads(text)), workers=0, progress=False, echo=lambda *a: None)
    grid_loss = store.open_cube(full)["final_eval_loss"].squeeze()
    assert float(grid_loss["lr"][int(np.argmin(grid_loss.values))]) == pytest.approx(row["best_lr"])
    searched_loss = store.open_cube(searched)["final_eval_loss"].squeeze()
    # the start is the grid's lowest lr, so the search also tried one step below the grid (1e-3 / 3)
    assert row["beyond"] == [pytest.approx(1e-3 / 3)]
    assert float(searched_loss["lr"][0]) == pytest.approx(1e-3 / 3)
    tried = searched_loss.sel(lr=list(lrs)).dropna("lr")  # the tried lrs of the grid
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


def test_train_grows_the_lr_labels_past_a_grid_of_too_small_learning_rates(tmp_path, write_sweep):
    """Real training of a tiny sweep whose grid (1e-3, 3e-3) lies far below its optimum (about 3e-2): `train
    --fill-missing` adds 9e-3 to the cube's lr labels and stops at that bound (beyond = 1); the same sweep with
    beyond = 3, recorded in the store, is continued from the cube's results alone: status counts the run it wants
    at a label the cube lacks, train adds 2.7e-2 and 8.1e-2 and brackets the optimum past the grid, and every run
    trained before is untouched."""
    base = tiny_sweep_text(widths=(16,), tokens=(6400,), lrs=(1e-3, 3e-3))
    path = tmp_path / "cube.zarr"
    flags = ("--fill-missing", "--store", path, "--workers", "0", "--no-progress", "--batch-variants", "1")
    first = run_cli("train", write_sweep(base + "[lr_search]\nbeyond = 1\n"), *flags)
    assert first.returncode == 0, first.stderr
    assert ("trained 3/3 runs: 3 done" in first.stdout and "; learning-rate search: 1 high bound, the cube grew lr +1 "
            "past the grid (0.009)" in first.stdout), first.stdout
    ds = store.open_cube(path)
    assert list(ds["lr"].values) == [1e-3, 3e-3, 9e-3] and (ds["status"].values == "done").all()
    before = ds["eval_loss"].values.copy()
    status = json.loads(run_cli("status", "--store", path, "--json").stdout)
    (row,) = status["lr_optima"]
    assert (row["state"], row["best_lr"], row["beyond"], row["limit"]) == ("high bound", 9e-3, [9e-3], "beyond = 1")
    text = tables.format_status(status)  # what `scalingkit status` prints
    assert "high 0.009*/2+1" in text and "1 at the high bound, set by beyond = 1" in text, text

    wide = sweep.from_table(tomllib.loads(base + "[lr_search]\nbeyond = 3\n"))
    assert plan.prepare(path, wide)["replaced"] == "tiny"  # recorded, nothing trained
    waiting = tables.status_summary(path)
    assert waiting["lr_optima"][0]["state"] == "searching" and waiting["runs_awaiting_lr_labels"] == 1
    assert waiting["runs_planned"] == 4 and waiting["by_status"]["missing"] == 1 and waiting["tokens_left"] == 6400
    assert "1 of the missing runs are at learning rates past a sweep's grid" in tables.format_status(waiting)

    second = run_cli("train", *flags)  # no sweep file: the store's sweeps, replayed from its results
    assert second.returncode == 0, second.stderr
    assert "the cube grew lr +2 past the grid (0.027, 0.081)" in second.stdout, second.stdout
    assert "trained 2/2 runs: 2 done" in second.stdout and "1 bracketed beyond the grid" in second.stdout
    ds = store.open_cube(path)
    assert list(ds["lr"].values) == [1e-3, 3e-3, 9e-3, 2.7e-2, 8.1e-2] and (ds["status"].values == "done").all()
    np.testing.assert_array_equal(ds["eval_loss"].sel(lr=[1e-3, 3e-3, 9e-3]).values, before)  # untouched
    losses = ds["final_eval_loss"].squeeze()
    assert float(losses["lr"][int(np.argmin(losses.values))]) == 2.7e-2
    shown = run_cli("status", "--store", path, "--brackets")
    assert "1 bracketed beyond the grid" in shown.stdout and "ok 0.027*/2+3" in shown.stdout, shown.stdout
    assert "past the grid (tried or wanted): 0.009, 0.027, 0.081" in shown.stdout
    status = tables.status_summary(path, brackets=True)
    (row,) = status["lr_optima"]
    assert (row["state"], row["best_lr"], row["tried"]) == ("bracketed beyond the grid", 2.7e-2, 5)
    assert row["beyond"] == [9e-3, 2.7e-2, 8.1e-2] and status["runs_planned"] == 5
    assert status["by_status"]["done"] == 5 and status["runs_awaiting_lr_labels"] == 0
    again = runner.fill_missing(path, None, workers=0, progress=False, echo=lambda *a: None)
    assert again.planned == 0  # the search is finished
