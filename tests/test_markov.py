"""The generic Markov-chain family: exact quantities against brute force, and the sampler against P and M."""
import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

from scalingkit.families import build_family
from scalingkit.families.markov import MarkovChainFamily, alias_table


def directed_chain(n=30, seed=0):
    """A random strongly connected, non-reversible, weighted directed chain (a cycle keeps it irreducible)."""
    rng = np.random.default_rng(seed)
    W = sp.random(n, n, density=0.15, random_state=rng, data_rvs=lambda k: rng.pareto(1.5, k) + 0.1).tolil()
    for u in range(n):
        W[u, (u + 1) % n] = 1.0 + rng.random()
    return W.tocsr()


def dense_effective(fam):
    """P_eff as a dense matrix (empty rows replaced by M): the brute-force reference."""
    P = fam.P.toarray()
    P[P.sum(axis=1) == 0] = fam.M
    return P


def test_alias_tables_reproduce_every_row():
    rng = np.random.default_rng(1)
    deg = rng.integers(0, 40, 3000)
    deg[:50] = 1
    indptr = np.r_[0, np.cumsum(deg)]
    rows = np.repeat(np.arange(len(deg)), deg)
    for data in (np.ones(indptr[-1]), rng.integers(1, 101, indptr[-1]).astype(float),
                 rng.pareto(0.5, indptr[-1]) + 1e-9, np.full(indptr[-1], 0.7)):  # 0.7: round-off puts every q of many rows just below 1
        prob, alias = alias_table(indptr, data)
        assert np.all(rows[alias] == rows) and np.all((prob >= 0) & (prob <= 1))
        got = np.zeros(len(data))
        np.add.at(got, np.arange(len(data)), prob / deg[rows])
        np.add.at(got, alias, (1 - prob) / deg[rows])
        want = data / np.bincount(rows, weights=data)[rows]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)


def test_stationary_of_non_reversible_chain():
    fam = MarkovChainFamily("d", directed_chain(), {"kind": "test"})
    assert not fam.reversible_from_M
    pi = fam.stationary()
    np.testing.assert_allclose(pi @ fam.P.toarray(), pi, atol=1e-12)
    assert pi.sum() == pytest.approx(1.0) and pi.min() > 0


def test_stationary_periodic_and_reducible_chains_start_from_M():
    cycle = sp.csr_matrix(np.roll(np.eye(3), 1, axis=1))  # period 3: plain power iteration would oscillate
    np.testing.assert_allclose(MarkovChainFamily("c", cycle, {}).stationary(), np.full(3, 1 / 3), atol=1e-12)
    # 0 is transient, {1, 2} closed and periodic, {3, 4} closed: the mass splits as absorption from M says
    W = np.zeros((5, 5))
    W[0, 1], W[0, 3], W[1, 2], W[2, 1], W[3, 4], W[4, 3] = 3, 1, 1, 1, 1, 1
    fam = MarkovChainFamily("r", sp.csr_matrix(W), {})
    pi = fam.stationary()
    assert pi[0] == 0 and fam.spec()["recurrent_states"] == 4
    # M = (4, 1, 1, 1, 1)/8: node 0's 1/2 goes 3/8 to {1, 2} and 1/8 to {3, 4}
    np.testing.assert_allclose(pi, [0, 5 / 16, 5 / 16, 3 / 16, 3 / 16], atol=1e-12)


def test_empty_rows_restart_from_M():
    W = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 3], [0, 0, 0.0]]))  # node 2 has no successor
    fam = MarkovChainFamily("e", W, {})
    assert fam.spec()["empty_rows"] == 1
    pi = fam.stationary()
    np.testing.assert_allclose(pi @ dense_effective(fam), pi, atol=1e-12)
    seqs = fam.sample(4000, 20, np.random.default_rng(0))
    after_two = seqs[:, 1:][seqs[:, :-1] == 2]
    counts = np.bincount(after_two, minlength=3)
    assert counts[2] == 0
    assert stats.chisquare(counts[:2], len(after_two) * fam.M[:2]).pvalue > 1e-3
    h = pi[1] * stats.entropy([1, 3]) + pi[2] * stats.entropy(fam.M)  # row 0 is deterministic
    assert fam.entropy_rate() == pytest.approx(h, rel=1e-12)


@pytest.mark.parametrize("make", [
    lambda: MarkovChainFamily("directed", directed_chain(), {}),
    lambda: build_family("er_unbiased", {"kind": "er", "nodes": 40, "edges": 120}),  # the no-coin fast path
], ids=["weighted-directed", "unbiased"])
def test_sampler_matches_P_and_M_by_chi_square(make):
    fam = make()
    seqs = fam.sample(5000, 40, np.random.default_rng(7))
    assert seqs.dtype == np.int64 and seqs.shape == (5000, 40)
    first = np.bincount(seqs[:, 0], minlength=fam.vocab_size)
    assert stats.chisquare(first[fam.M > 0], 5000 * fam.M[fam.M > 0]).pvalue > 1e-3
    src, dst = seqs[:, :-1].ravel(), seqs[:, 1:].ravel()
    for u in np.argsort(np.bincount(src))[-5:]:
        row = fam.P[u].toarray().ravel()
        seen = np.bincount(dst[src == u], minlength=fam.vocab_size)
        assert seen[row == 0].sum() == 0
        assert stats.chisquare(seen[row > 0], seen.sum() * row[row > 0]).pvalue > 1e-3


def brute_force_entropy(fam, rng, n_seq=2000, length=300, burn_in=100):
    """Mean -log P[x_t, x_t+1] along simulated walks (after burn-in), with a standard error across walks."""
    seqs = fam.sample(n_seq, length, rng)[:, burn_in:]
    logp = np.log(np.asarray(fam.P[seqs[:, :-1].ravel(), seqs[:, 1:].ravel()]).reshape(n_seq, -1))
    per_walk = -logp.mean(axis=1)
    return per_walk.mean(), per_walk.std(ddof=1) / np.sqrt(n_seq)


@pytest.mark.parametrize("make", [
    lambda: build_family("er_k1", {"kind": "er", "nodes": 300, "edges": 1500, "kappa": 1.0}),
    lambda: build_family("ba_asym", {"kind": "ba", "nodes": 300, "m": 3, "kappa": 1.0, "symmetric": False}),
    lambda: MarkovChainFamily("directed", directed_chain(), {}),
], ids=["er-kappa1", "ba-kappa1-asymmetric", "random-directed"])
def test_entropy_rate_of_biased_walks_against_simulation(make):
    fam = make()
    estimate, se = brute_force_entropy(fam, np.random.default_rng(3))
    assert abs(estimate - fam.entropy_rate()) < 4 * se, (estimate, se, fam.entropy_rate())


def test_loss_floor_of_directed_chain_against_brute_force():
    fam = MarkovChainFamily("d", directed_chain(), {})
    P = dense_effective(fam)
    H = -np.sum(np.where(P > 0, P * np.log(np.where(P > 0, P, 1)), 0), axis=1)
    laws = [fam.M @ np.linalg.matrix_power(P, t) for t in range(10)]
    assert fam.loss_floor(10) == pytest.approx(np.mean([p @ H for p in laws]), rel=1e-12)
    assert fam.loss_floor(10) != pytest.approx(fam.entropy_rate(), rel=1e-3)  # M is not stationary here
    # and the definition: the ideal predictor's loss on sampled sequences of context + 1 tokens
    seqs = fam.sample(20000, 11, np.random.default_rng(5))
    nll = -np.log(np.asarray(fam.P[seqs[:, :-1].ravel(), seqs[:, 1:].ravel()]).reshape(20000, 10)).mean(axis=1)
    assert abs(nll.mean() - fam.loss_floor(10)) < 4 * nll.std() / np.sqrt(len(nll))


def test_loss_floor_equals_entropy_rate_when_undirected():
    fam = build_family("er", {"kind": "er", "nodes": 200, "edges": 600, "kappa": 1.0})
    assert fam.reversible_from_M
    assert fam.loss_floor(50) == fam.entropy_rate() == fam.loss_floor(1)


@pytest.mark.parametrize("spec", [{"kind": "er", "nodes": 13, "edges": 30, "seed": 8},
                                  {"kind": "er", "nodes": 13, "edges": 30, "seed": 8, "kappa": 1.0, "k_max": 10}],
                         ids=["unbiased", "kappa1"])
def test_counting_learner_matches_counting_baseline(spec):
    """A literal bigram-count (maximum-likelihood) learner, averaged over many training sets.

    What the formula claims: E[test cross-entropy] - entropy = sum over visited rows of (k_u - 1)/(2 D) + O(D^-2),
    i.e. the delta-method expansion of E KL(P_u || P_hat_u) = (k_u - 1)/(2 N_u), valid when every transition is seen
    many times (then the MLE puts no zero on a possible transition). So: D large enough that the rarest
    transition is expected >= 50 times (the chance of an unseen one is ~e^-50, and the O(1/N) relative corrections
    are a few %), the test loss taken EXACTLY under the stationary law (M is stationary for undirected graphs) so the
    only noise is the training set's, and the mean excess over R training sets compared with the formula to within
    4 standard errors plus 5% for the neglected higher orders. Node count 13 with 30 edges (seed 8) leaves an isolated node,
    which must not count towards n (they are never visited).
    """
    fam = build_family("small", spec)
    pi, P = fam.stationary(), fam.P.toarray()
    rarest = (pi[:, None] * P)[P > 0].min()
    D = int(np.ceil(50 / rarest / 50)) * 50
    rng, excess = np.random.default_rng(11), []
    for _ in range(200):
        seqs = fam.sample(D // 50, 51, rng)        # D predicted positions: 50 per sequence of 51 tokens
        counts = np.zeros_like(P)
        np.add.at(counts, (seqs[:, :-1].ravel(), seqs[:, 1:].ravel()), 1)
        visits = counts.sum(axis=1, keepdims=True)
        P_hat = np.divide(counts, visits, out=np.zeros_like(P), where=visits > 0)
        assert np.all(P_hat[P > 0] > 0), "an unseen transition: D too small for the asymptotic formula"
        cross = -(pi[:, None] * P * np.log(np.where(P > 0, P_hat, 1))).sum()
        excess.append(cross - fam.entropy_rate())
    predicted = fam.counting_baseline(D) - fam.entropy_rate()
    assert fam.spec()["recurrent_states"] < 13 and predicted == pytest.approx(
        (np.count_nonzero(P[pi > 0]) - np.count_nonzero(pi)) / (2 * D))
    mean, se = np.mean(excess), np.std(excess, ddof=1) / np.sqrt(len(excess))
    assert abs(mean - predicted) < 4 * se + 0.05 * predicted, (mean, se, predicted)
    np.testing.assert_allclose(fam.counting_baseline([D, 2 * D]) - fam.entropy_rate(), [predicted, predicted / 2])


def test_rank_data_are_sorted_laws():
    fam = MarkovChainFamily("d", directed_chain(), {})
    uni, bi = fam.unigram_rank(), fam.bigram_rank()
    assert np.all(np.diff(uni) <= 0) and np.all(np.diff(bi) <= 0)
    assert uni.sum() == pytest.approx(1) and bi.sum() == pytest.approx(1)
    assert len(bi) == fam.P.nnz


def test_isolated_nodes_keep_the_unbiased_fast_path_and_never_appear():
    fam = build_family("sparse", {"kind": "er", "nodes": 300, "edges": 200, "seed": 4})
    isolated = np.flatnonzero(np.diff(fam.P.indptr) == 0)
    assert len(isolated) == fam.spec()["empty_rows"] == fam.spec()["isolated_nodes"] > 0
    assert fam._tables[-1] is True
    seqs = fam.sample(2000, 30, np.random.default_rng(0))
    assert not np.isin(seqs, isolated).any()
    assert np.all(np.asarray(fam.P[seqs[:, :-1].ravel(), seqs[:, 1:].ravel()]) > 0)  # every step is an edge
