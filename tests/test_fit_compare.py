"""Model comparison by repeated random 80/20 splits: the right form wins on its own data, a surrogate wins where
the Chinchilla form is wrong, and the splits and numbers are reproducible and independent of the worker count."""
import json

import numpy as np
import pytest

from scalingkit.errors import UserError
from scalingkit.fit.compare import compare_forms, draw_splits
from scalingkit.fit.surrogates import KernelSurrogate, MLPSurrogate

SIGMA = 0.01  # noise of the synthetic runs, loss units


def chinchilla_law(N, D):
    return 1.69 + 406.4 / N**0.34 + 410.7 / D**0.28


def interaction_law(N, D):
    # Not a Chinchilla law: a product term couples N and D (1.6 at the smallest corner, 0.02 at the largest).
    return chinchilla_law(N, D) + 3e4 / (N**0.34 * D**0.28)


def grid(law, seed=0, sigma=SIGMA):
    rng = np.random.default_rng(seed)
    NN, DD = np.meshgrid(np.logspace(6, 9, 8), np.logspace(8, 11, 8), indexing="ij")
    N, D = NN.ravel(), DD.ravel()
    return N, D, law(N, D) + sigma * rng.normal(size=N.size)


# A small MLP: enough to take part in a comparison within the test budget (the defaults cost ~3 s a fit here).
def small_mlp():
    return MLPSurrogate(hidden=32, max_epochs=800)


def test_chinchilla_form_wins_on_chinchilla_data():
    N, D, y = grid(chinchilla_law)
    forms = {"chinchilla": "chinchilla", "kaplan": "kaplan", "mlp": small_mlp(), "kernel": "kernel"}
    res = compare_forms(N, D, y, forms=forms, splits=10, seed=0)
    s = res.summary()
    assert res.forms == ["chinchilla", "kaplan", "mlp", "kernel"]
    assert res.within_noise("chinchilla"), res.table()
    assert s["chinchilla"]["n_failed"] == 0
    # the true form's validation error is the noise, nothing more: E[MSE] = sigma^2 plus a small fit error
    assert 0.5 * SIGMA**2 < s["chinchilla"]["val_mse_mean"] < 2 * SIGMA**2, res.table()
    for f in res.forms:  # validation is harder than training for every form that fitted
        if s[f]["n_ok"]:
            assert s[f]["val_mse_mean"] > s[f]["train_mse_mean"]


def test_a_surrogate_beats_chinchilla_when_the_law_is_not_chinchilla():
    N, D, y = grid(interaction_law)
    res = compare_forms(N, D, y, forms={"chinchilla": "chinchilla", "mlp": small_mlp(), "kernel": "kernel"},
                        splits=10, seed=0)
    s = res.summary()
    assert res.best() in ("mlp", "kernel"), res.table()
    best = res.best()
    assert s["chinchilla"]["val_mse_mean"] > 10 * s[best]["val_mse_mean"], res.table()
    i, j = res.forms.index("chinchilla"), res.forms.index(best)
    assert np.all(res.val_mse[j] < res.val_mse[i])  # on every split
    assert not res.within_noise("chinchilla")  # and beyond the corrected resampling noise
    diff, se = res.paired("chinchilla", best)
    assert diff > 2 * se > 0


def test_splits_are_seeded_partitions():
    a = draw_splits(64, 5, 0.8, seed=1)
    b = draw_splits(64, 5, 0.8, seed=1)
    c = draw_splits(64, 5, 0.8, seed=2)
    for (tr, va), (tr2, va2) in zip(a, b):
        assert np.array_equal(tr, tr2) and np.array_equal(va, va2)
        assert len(tr) == 51 and len(va) == 13
        assert np.array_equal(np.union1d(tr, va), np.arange(64)) and not np.intersect1d(tr, va).size
    assert not all(np.array_equal(x[1], y[1]) for x, y in zip(a, c))
    assert len({tuple(va) for _, va in a}) == 5  # the splits differ from each other


def test_comparison_is_reproducible_and_independent_of_workers():
    N, D, y = grid(chinchilla_law, seed=3)
    forms = {"kernel": KernelSurrogate(), "mlp": MLPSurrogate(hidden=16, max_epochs=150)}
    one = compare_forms(N, D, y, forms=forms, splits=4, seed=7, workers=1)
    two = compare_forms(N, D, y, forms=forms, splits=4, seed=7, workers=2)  # forked workers, torch included
    other = compare_forms(N, D, y, forms=forms, splits=4, seed=8, workers=1)
    assert np.array_equal(one.val_mse, two.val_mse) and np.array_equal(one.train_mse, two.train_mse)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(one.splits, two.splits))
    assert one.settings["workers"] == 1 and two.settings["workers"] == 2
    assert not np.array_equal(one.val_mse, other.val_mse)
    assert np.all(np.isfinite(one.val_mse))


def test_table_and_json():
    N, D, y = grid(chinchilla_law)
    res = compare_forms(N, D, y, forms=["chinchilla", "kernel"], splits=3, seed=0, workers=1)
    text = res.table()
    assert "chinchilla" in text and "kernel" in text and "best" in text and "3 random splits 51/13" in text
    doc = json.loads(json.dumps(res.to_dict()))
    assert doc["kind"] == "comparison" and doc["best"] == res.best()
    assert doc["settings"]["splits"] == 3 and len(doc["val_mse"][0]) == 3
    assert doc["summary"]["kernel"]["val_mse_mean"] == pytest.approx(np.mean(res.val_mse[1]))
    assert [sorted(v) for v in doc["validation_indices"]] == [list(va) for _, va in res.splits]


def test_a_failing_fit_is_recorded_not_fatal():
    # IRLS capped at one iteration cannot settle with outliers in the data: that fit reports converged=False.
    N, D, y = grid(chinchilla_law)
    y[[3, 20, 41]] += 0.5
    res = compare_forms(N, D, y, forms={"capped": KernelSurrogate(max_iter=1), "kernel": KernelSurrogate()},
                        splits=3, seed=0, workers=1)
    s = res.summary()
    assert s["capped"]["n_failed"] == 3 and np.all(np.isnan(res.val_mse[0]))
    assert "IRLS did not settle" in res.failures["capped"][0]
    assert s["kernel"]["n_failed"] == 0 and res.best() == "kernel"
    assert "capped failed on 3 split(s)" in res.table()


def test_bad_requests():
    N, D, y = grid(chinchilla_law)
    with pytest.raises(UserError, match="unknown form"):
        compare_forms(N, D, y, forms=["chinchila"])
    with pytest.raises(UserError, match="2-d"):
        compare_forms(N, D, y, forms=["powerlaw"])
    with pytest.raises(UserError, match="train_fraction"):
        compare_forms(N, D, y, forms=["kernel"], train_fraction=1.0)
    with pytest.raises(UserError, match="too few"):
        compare_forms(N[:9], D[:9], y[:9], forms=["kernel"])
    with pytest.raises(UserError, match="NaN"):
        compare_forms(N, D, np.where(np.arange(64) == 0, np.nan, y), forms=["kernel"])
    with pytest.raises(UserError, match="no form"):
        compare_forms(N, D, y, forms=["kernel"], splits=2, workers=1).paired("kernel", "mlp")
