"""The Chinchilla bootstrap refitted all at once (batched Newton, fit/newton2d.py) against the per-draw L-BFGS-B path.

Tolerance: the batch converges each draw to a relative gradient of ~1e-12 (at most ~1e-8), while L-BFGS-B stops
on its ftol/gtol tests a little earlier; on the Epoch table all but ~1 in 1,000 of their draws and jackknife
fits differ by at most ~5e-7 relative. 1e-5 leaves room for that and still fails on a refit that ended at
another point. Where they differ by more, the batched refit must have reached the lower objective: L-BFGS-B
sometimes stops early (most often in the jackknife, whose refits start at the estimate itself), up to 2e-4 away
from the minimum the batch finds, its objective ~3e-9 relative higher (benchmarks/bench_fit_chinchilla.py).
"""
from pathlib import Path

import numpy as np
import pytest

from scalingkit.fit import Chinchilla, bootstrap as bs, logfit, newton2d, read_csv_table
from scalingkit.fit.chinchilla import batch_jacobian, batch_logpred, batch_newton, logpred
from scalingkit.fit.form2d import refit_rows, refit_weighted

EPOCH_CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chinchilla_epoch.csv"
needs_epoch = pytest.mark.skipif(not EPOCH_CSV.is_file(), reason=f"reference table {EPOCH_CSV} is absent")
RTOL = 1e-5


def synthetic(seed=0, sigma=0.01, nN=8, nD=6):
    rng = np.random.default_rng(seed)
    N = np.repeat(np.geomspace(1e6, 1e11, nN), nD)
    D = np.tile(np.geomspace(1e8, 1e13, nD), nN)
    L = (1.7 + 400.0 * N**-0.34 + 2000.0 * D**-0.37) * np.exp(rng.normal(0, sigma, len(N)))
    return N, D, L


def assert_agree_or_lower(new, old):
    """Rows (public vector + objective): same parameters within RTOL, or the batched refit's objective is lower."""
    assert np.all(np.isfinite(new)) and np.all(np.isfinite(old))
    rel = np.max(np.abs(new[:, :5] - old[:, :5]) / np.abs(old[:, :5]), axis=1)
    f_new, f_old = new[:, -1], old[:, -1]
    assert np.all(f_new <= f_old * (1 + 1e-12)), "a batched refit ended above the per-draw L-BFGS-B objective"
    apart = rel > RTOL
    assert np.all(f_new[apart] < f_old[apart] * (1 - 1e-12)), rel[apart]
    return rel


def test_newton_terms_match_finite_differences():
    rng = np.random.default_rng(0)
    lN, lD = rng.uniform(15, 25, 40), rng.uniform(18, 28, 40)
    T = np.array([[6.2, 7.6, 0.6, 0.35, 0.37], [4.0, 9.5, 0.2, 0.30, 0.45]])
    pred, aux = batch_logpred(T, lN, lD)
    J = batch_jacobian(aux, lN, lD)
    c, p = rng.uniform(0, 1, (2, 40)), rng.normal(size=(2, 40))
    g, H = batch_newton(aux, lN, lD, c, p)
    for b in range(2):
        ref_pred, ref_J = logpred(T[b], lN, lD)
        np.testing.assert_allclose(pred[b], ref_pred, rtol=1e-13)
        np.testing.assert_allclose(J[b], ref_J, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(g[b], p[b] @ ref_J, rtol=1e-10)
        d2 = np.empty((5, 5))  # d/dtheta of sum_i p_i J_i, by central differences
        for j in range(5):
            e = np.zeros(5)
            e[j] = 1e-6
            d2[:, j] = (p[b] @ logpred(T[b] + e, lN, lD)[1] - p[b] @ logpred(T[b] - e, lN, lD)[1]) / 2e-6
        np.testing.assert_allclose(H[b], (ref_J * c[b][:, None]).T @ ref_J + d2, rtol=1e-6, atol=1e-6)


@needs_epoch
def test_epoch_batched_refits_and_intervals_agree_with_per_draw_lbfgs():
    df = read_csv_table(EPOCH_CSV, n_col="Model Size", c_col="Training FLOP", loss_col="loss", drop_top=5)
    N, D, L = (df[c].to_numpy() for c in ("N", "D", "loss"))
    est = Chinchilla(workers=1)
    res = est.fit(N, D, L)
    data = logfit.LogData.of(N, D, L)
    counts = np.stack([np.bincount(ix, minlength=len(L)) for ix in bs.resample_indices(3, 200, len(L))])
    jack_w = 1.0 - np.eye(len(L))[::4]  # every fourth leave-one-out fit
    settings = {**est.settings, "budget": float(np.max(6 * N * D))}
    start = est.form.from_public(res.params)[None, :]
    rows = {}
    for name, W in (("draws", counts), ("jack", jack_w)):
        new = refit_rows(W, est.form, data, settings, start)
        assert not new[:, -1].any()  # the batch settles every refit of this table
        rows[name] = (new[:, :-2], refit_weighted(W, est.form, data, settings, start))
        rel = assert_agree_or_lower(new[:, :-1], rows[name][1])
        assert np.mean(rel < RTOL) > 0.9
    (d_new, d_old), (j_new, j_old) = rows["draws"], rows["jack"]
    d_old, j_old = d_old[:, :-1], j_old[:, :-1]
    # the intervals and standard errors that follow from them
    est_vec = np.array([*res.params.values(), *res.derived.values()])
    for new, old in zip(bs.percentile_interval(d_new), bs.percentile_interval(d_old)):
        np.testing.assert_allclose(new, old, rtol=RTOL)
    for new, old in zip(bs.bca_interval(est_vec, d_new, j_new), bs.bca_interval(est_vec, d_old, j_old)):
        np.testing.assert_allclose(new, old, rtol=1e-4)  # the jackknife's early L-BFGS-B stops move BCa a little
    np.testing.assert_allclose(bs.standard_error(d_new), bs.standard_error(d_old), rtol=RTOL)


def test_batched_bootstrap_matches_per_draw_path_on_synthetic_data_and_says_how_it_refitted():
    N, D, L = synthetic(5, sigma=0.01)
    new = Chinchilla(workers=1, bootstrap=80, seed=2).fit(N, D, L)
    old = Chinchilla(workers=1, bootstrap=80, seed=2, bootstrap_solver="lbfgs").fit(N, D, L)
    assert new.diagnostics["bootstrap_refit"] == "batched Newton"
    assert new.diagnostics["bootstrap_fallback"] + new.diagnostics["jackknife_fallback"] <= 2
    assert "bootstrap_refit" not in old.diagnostics
    assert new.diagnostics["bootstrap_failed"] == old.diagnostics["bootstrap_failed"] == 0
    for name in ("E", "A", "B", "alpha", "beta", "a", "G"):
        np.testing.assert_allclose(new.diagnostics["intervals_percentile"][name],
                                   old.diagnostics["intervals_percentile"][name], rtol=1e-4)
        assert new.diagnostics[f"se_{name}"] == pytest.approx(old.diagnostics[f"se_{name}"], rel=1e-4)


def test_draws_the_batch_does_not_settle_are_refitted_per_draw_and_counted(monkeypatch):
    N, D, L = synthetic(6)
    est = Chinchilla(workers=1)
    res = est.fit(N, D, L)
    data = logfit.LogData.of(N, D, L)
    counts = np.stack([np.bincount(ix, minlength=len(L)) for ix in bs.resample_indices(1, 12, len(L))]).astype(float)
    settings = {**est.settings, "budget": 1e21}
    start = est.form.from_public(res.params)[None, :]
    real = newton2d.newton_refits

    def failing(form, data, W, theta0, **kw):  # the batch "runs out of iterations" on rows 2 and 7
        T, f, rel, gnorm, stopped = real(form, data, W, theta0, **kw)
        stopped[[2, 7]] = False
        T[[2, 7]] = theta0  # and left them where it started
        return T, f, rel, gnorm, stopped

    monkeypatch.setattr(newton2d, "newton_refits", failing)
    out = refit_rows(counts, est.form, data, settings, start)
    assert list(np.flatnonzero(out[:, -1])) == [2, 7]
    per_draw = refit_weighted(counts[[2, 7]], est.form, data, settings, start)
    np.testing.assert_array_equal(out[[2, 7], :-1], per_draw)
    assert not np.allclose(per_draw[:, :5], est.form.public_vector(start[0], settings)[:5])
    boot = Chinchilla(workers=1, bootstrap=12, seed=1).fit(N, D, L)
    assert boot.diagnostics["bootstrap_fallback"] == 2 and boot.diagnostics["bootstrap_failed"] == 0


def test_a_row_refits_the_same_whatever_rows_share_its_batch():
    # What makes the result independent of how many worker processes split the draws.
    N, D, L = synthetic(7)
    est = Chinchilla(workers=1)
    res = est.fit(N, D, L)
    data = logfit.LogData.of(N, D, L)
    counts = np.stack([np.bincount(ix, minlength=len(L)) for ix in bs.resample_indices(2, 50, len(L))]).astype(float)
    settings = {**est.settings, "budget": 1e21}
    start = est.form.from_public(res.params)[None, :]
    whole = refit_rows(counts, est.form, data, settings, start)
    parts = np.vstack([refit_rows(counts[:17], est.form, data, settings, start),
                       refit_rows(counts[17:], est.form, data, settings, start)])
    np.testing.assert_array_equal(whole, parts)
