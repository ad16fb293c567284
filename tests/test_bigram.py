"""The language bigram family: counts, pruning, traps, walks against the pruned frequencies, exact entropy rate."""
import collections
import shutil
import tomllib

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

from scalingkit.errors import UserError
from scalingkit.families import build_family, embedded
from scalingkit.families.bigram import bigram_counts, build_bigram, prune, traps
from scalingkit.families.token_cache import from_settings

PLAYS = ("hamlet", "macbeth", "tempest")  # a small slice of the embedded corpus: about 0.35 MB


@pytest.fixture(scope="module")
def plays(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plays")
    for play in PLAYS:
        shutil.copy(embedded.corpus_dir() / "shakespeare" / f"{play}.txt", folder)
    return folder


# Caches under pytest's temporary folder, set before any of this module's fixtures builds a family.
pytestmark = pytest.mark.usefixtures("private_cache")


@pytest.fixture(scope="module")
def small(plays):
    return build_bigram("small", {"kind": "bigram", "corpus": str(plays), "tokenizer": {"bpe": 300}, "prune": 5})


def test_counts_and_pruning():
    tokens = np.array([0, 1, 0, 1, 2, 0, 1, 1, 3, 0, 1], dtype=np.uint16)
    counts = bigram_counts(tokens, 4)
    assert dict(counts.todok().items()) == collections.Counter(zip(tokens[:-1].tolist(), tokens[1:].tolist()))
    kept = prune(counts, 1)
    assert dict(kept.todok().items()) == {(0, 1): 4}
    assert bigram_counts(tokens[:1], 4).nnz == 0


def test_traps_are_closed_classes_without_a_restart():
    # 0 <-> 1 -> 2 -> 2 (a self-loop it never leaves); 3 <-> 4 closed; 0 -> 5, which has no successor (restarts)
    W = sp.csr_matrix((np.ones(7), ([0, 1, 1, 2, 3, 4, 0], [1, 0, 2, 2, 4, 3, 5])), shape=(6, 6))
    assert traps(W).tolist() == [False, False, True, True, True, False]
    # no empty row: the heaviest closed class is kept, the lighter one restarts
    W = sp.csr_matrix(([5.0, 5.0, 1.0, 1.0, 1.0], ([0, 1, 2, 3, 2], [1, 0, 3, 2, 0])), shape=(4, 4))
    assert traps(W).tolist() == [False, False, False, False]
    W = sp.csr_matrix(([5.0, 5.0, 1.0, 1.0], ([0, 1, 2, 3], [1, 0, 3, 2])), shape=(4, 4))
    assert traps(W).tolist() == [False, False, True, True]


def test_spec_reports_pruning_and_traps(small, plays):
    spec = small.spec()
    assert spec["vocab_size"] == 300 and spec["prune"] == 5
    assert 0 < spec["kept_fraction"] < 1 and spec["emptied_by_pruning"] > 0
    assert spec["empty_rows"] >= spec["emptied_by_pruning"] + spec["traps"]
    everything = build_bigram("all", {"kind": "bigram", "corpus": str(plays), "tokenizer": {"bpe": 300}, "prune": 0})
    assert everything.spec()["kept_fraction"] == 1.0 and everything.spec()["emptied_by_pruning"] == 0
    assert everything.spec()["distinct_bigrams"] == spec["distinct_bigrams"] > spec["transitions"]


def pruned_weights(fam, settings):
    """The pruned counts, recomputed from the tokenised corpus, with the trap rows emptied as the family does."""
    tok, arrays = from_settings(settings, 0.05)
    counts = bigram_counts(arrays.train, tok.vocab_size) + bigram_counts(arrays.held_out, tok.vocab_size)
    kept = prune(counts, settings["prune"]).tolil()
    for u in np.flatnonzero(traps(kept.tocsr())):
        kept.rows[u], kept.data[u] = [], []
    return kept.tocsr()


def test_walks_reproduce_the_pruned_bigram_frequencies(small):
    settings = {k: small.spec()[k] for k in ("corpus", "text_field", "tokenizer", "prune")}
    W = pruned_weights(small, settings)
    np.testing.assert_allclose(small.P.toarray(), W.toarray() / np.maximum(W.sum(axis=1), 1), rtol=1e-12)
    walks = small.sample(3000, 80, np.random.default_rng(1))
    pairs = sp.csr_matrix((np.ones(walks[:, 1:].size), (walks[:, :-1].ravel(), walks[:, 1:].ravel())),
                          shape=W.shape)
    nonempty = np.diff(W.indptr) > 0
    outside = pairs.multiply(W > 0) - pairs
    assert abs(outside[nonempty]).sum() == 0  # a walk only takes kept bigrams (empty rows restart)
    visits = np.asarray(pairs.sum(axis=1)).ravel() * nonempty
    for u in np.argsort(visits)[::-1][:8]:  # the eight busiest rows, each a multinomial against the counts
        observed = pairs[u, W[u].indices].toarray().ravel()
        expected = W[u].data / W[u].data.sum() * observed.sum()
        assert stats.chisquare(observed, expected).pvalue > 1e-4, u


def test_entropy_rate_against_brute_force(small):
    P = small.P.toarray()
    P[P.sum(axis=1) == 0] = small.M  # the walk's rule: an empty row restarts from M
    values, vectors = np.linalg.eig(P.T)
    pi = np.real(vectors[:, np.argmin(abs(values - 1))])
    pi /= pi.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        H = -np.nansum(np.where(P > 0, P * np.log(P), 0.0), axis=1)
    assert small.entropy_rate() == pytest.approx(float(pi @ H), rel=1e-9)
    # and the plain Monte-Carlo estimate from long walks: mean surprisal after a burn-in
    walks = small.sample(400, 1200, np.random.default_rng(2))
    surprisal = -np.log(P[walks[:, 200:-1], walks[:, 201:]]).mean(axis=1)
    assert small.entropy_rate() == pytest.approx(surprisal.mean(), abs=5 * surprisal.std() / 20)


def test_built_from_a_sweep_table_and_from_its_stored_spec(plays):
    table = tomllib.loads(f'kind = "bigram"\ncorpus = "{plays}"\ntokenizer = {{bpe = 300}}\n')
    fam = build_family("plays", table)
    assert fam.vocab_size == 300
    stored = fam.spec()
    assert build_family("plays", stored).entropy_rate() == fam.entropy_rate()
    with pytest.raises(UserError, match="'transitions'"):
        build_family("plays", {**stored, "transitions": stored["transitions"] + 1})


@pytest.mark.parametrize("bad, key", [
    ({"prune": -1}, "prune"), ({"prune": 2.5}, "prune"), ({"tokenizer": "gpt3"}, "tokenizer"),
    ({"tokenizer": {"bpe": 100}}, "tokenizer"), ({"tokenizer": {"bpe": 300, "dropout": 0.1}}, "tokenizer"),
    ({"held_out": 0.1}, "held_out"), ({"nodes": 10}, "nodes"), ({"corpus": ""}, "corpus"),
])
def test_bad_keys_are_user_errors_naming_the_key(bad, key):
    with pytest.raises(UserError, match=f"key '{key}'"):
        build_family("b", {"kind": "bigram", **bad})


def test_missing_corpus_and_over_pruning(plays, tmp_path):
    with pytest.raises(UserError, match="no such file"):
        build_family("b", {"kind": "bigram", "corpus": str(tmp_path / "none")})
    with pytest.raises(UserError, match="'prune'.*leaves no bigram"):
        build_bigram("b", {"kind": "bigram", "corpus": str(plays), "tokenizer": {"bpe": 300}, "prune": 10**9})


class SampledOnly:
    """A family known only through its samples (as a trained generator is): the walk of `chain`, nothing exact."""

    def __init__(self, chain):
        self.chain, self.vocab_size = chain, chain.vocab_size

    def sample(self, n_seq, length, rng):
        return self.chain.sample(n_seq, length, rng)

    def entropy_rate(self):
        return None


def test_rank_figure_exact_and_sampled(small, tmp_path):
    from scalingkit.plots.ranks import plot_ranks, rank_data

    uni, bi = rank_data(small)
    assert uni.sum() == pytest.approx(1.0) and bi.sum() == pytest.approx(1.0)
    assert np.all(np.diff(uni) <= 0) and np.all(np.diff(bi) <= 0)
    # measured on samples, the top of both laws matches the exact one (walks start from M, not pi: loose tolerance)
    s_uni, s_bi = rank_data(SampledOnly(small), n_tokens=400_000)
    np.testing.assert_allclose(s_uni[:10], uni[:10], rtol=0.1)
    np.testing.assert_allclose(s_bi[:10], bi[:10], rtol=0.1)
    out = plot_ranks({"bigram": small, "sampled": SampledOnly(small)}, tmp_path / "ranks.png", n_tokens=50_000)
    assert out.stat().st_size > 10_000
