"""Graph families: exact sizes, closed-form entropies, kappa weights, seeds, spec round trips and spec errors."""
import json

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

from scalingkit.errors import UserError
from scalingkit.families import KINDS, build_family
from scalingkit.families.graphs import build_er, edge_weights, er_edges


def undirected_degrees(fam):
    return np.diff(fam.P.indptr)


@pytest.mark.parametrize("nodes,edges", [(8192, 53292), (200, 150), (10, 45), (2, 1)])
def test_er_has_exactly_the_requested_nodes_and_edges(nodes, edges):
    i, j = er_edges(nodes, edges, np.random.default_rng(0))
    assert np.all(i < j) and np.all(j < nodes) and len(i) == edges
    assert len(np.unique(i * nodes + j)) == edges  # no multi-edges, no self-loops
    fam = build_family("er", {"kind": "er", "nodes": nodes, "edges": edges})
    spec = fam.spec()
    assert fam.vocab_size == nodes and spec["edges"] == edges and spec["transitions"] == 2 * edges
    assert spec["isolated_nodes"] == np.sum(undirected_degrees(fam) == 0)


def test_ba_edge_count_and_heavy_tail():
    fam = build_family("ba", {"kind": "ba", "nodes": 8192, "m": 6})
    assert fam.spec()["edges"] == 6 * (8192 - 6) and fam.spec()["isolated_nodes"] == 0
    deg = undirected_degrees(fam)
    # degree exponent 3: P(deg >= k) ~ k^-2, so the tail between k = 24 and 96 thins by about 16
    ratio = np.mean(deg >= 24) / np.mean(deg >= 96)
    assert 8 < ratio < 32, ratio


@pytest.mark.parametrize("spec", [{"kind": "er", "nodes": 8192, "edges": 53292},
                                  {"kind": "er", "nodes": 300, "edges": 200, "seed": 4},   # isolated nodes
                                  {"kind": "ba", "nodes": 2000, "m": 3}])
def test_unbiased_entropy_rate_is_closed_form(spec):
    fam = build_family("g", spec)
    deg = undirected_degrees(fam)
    pi = deg / deg.sum()
    np.testing.assert_allclose(fam.stationary(), pi, rtol=0, atol=1e-15)
    closed = np.sum(pi[deg > 0] * np.log(deg[deg > 0]))
    assert fam.entropy_rate() == pytest.approx(closed, rel=1e-12)
    assert fam.loss_floor(50) == fam.entropy_rate()
    assert fam.spec()["biased"] is False
    D = np.array([1e4, 1e6])
    np.testing.assert_allclose(fam.counting_baseline(D), closed + (2 * deg.sum() / 2 - np.count_nonzero(deg)) / (2 * D))


def test_kappa_weights_follow_the_power_law():
    rng = np.random.default_rng(0)
    forward, backward = edge_weights(200_000, 1.0, 1, 100, True, rng)
    assert forward is backward and forward.min() >= 1 and forward.max() <= 100
    k = np.arange(1, 101)
    expected = len(forward) * (1 / k) / np.sum(1 / k)
    assert stats.chisquare(np.bincount(forward.astype(int), minlength=101)[1:], expected).pvalue > 1e-3
    forward, backward = edge_weights(1000, 2.5, 3, 7, False, rng)
    assert set(np.unique(forward)) <= {3, 4, 5, 6, 7} and np.any(forward != backward)
    ones, _ = edge_weights(10, None, 1, 100, True, rng)
    assert np.all(ones == 1)


def test_kappa_zero_is_biased_and_absent_kappa_is_unbiased():
    base = {"kind": "er", "nodes": 500, "edges": 3000}
    unbiased, flat = build_family("u", base), build_family("f", {**base, "kappa": 0})
    assert unbiased.spec()["biased"] is False and unbiased.spec()["kappa"] is None
    assert flat.spec()["biased"] is True and flat.spec()["kappa"] == 0.0
    assert flat.entropy_rate() < unbiased.entropy_rate()  # uniform 1..100 weights are not the uniform walk
    # same seed, same graph: the weights come from their own stream
    assert np.array_equal(flat.P.indices, unbiased.P.indices) and np.array_equal(flat.P.indptr, unbiased.P.indptr)


def test_symmetric_weights_are_reversible_and_asymmetric_ones_are_not():
    base = {"kind": "ba", "nodes": 400, "m": 3, "kappa": 1.0}
    sym, asym = build_family("s", base), build_family("a", {**base, "symmetric": False})
    flow = lambda f: sp.diags(f.M) @ f.P  # noqa: E731 - detailed balance: M(u) P(u, v) symmetric
    assert abs(flow(sym) - flow(sym).T).max() < 1e-15 and sym.spec()["directed"] is False
    assert abs(flow(asym) - flow(asym).T).max() > 1e-6 and asym.spec()["directed"] is True
    pi = asym.stationary()
    np.testing.assert_allclose(pi @ asym.P, pi, atol=1e-13)


def test_seeds_make_graphs_reproducible():
    spec = {"kind": "er", "nodes": 300, "edges": 900, "seed": 5, "kappa": 1.0}
    a, b = build_er("a", spec), build_er("b", spec)  # the builder itself: no cache
    assert (a.P != b.P).nnz == 0
    c = build_er("c", {**spec, "seed": 6})
    assert c.P.shape == a.P.shape and (a.P != c.P).nnz > 0


@pytest.mark.parametrize("spec", [{"kind": "er", "nodes": 300, "edges": 900},
                                  {"kind": "er", "nodes": 300, "edges": 900, "seed": 3, "kappa": 1.5,
                                   "k_min": 2, "k_max": 50, "symmetric": False},
                                  {"kind": "ba", "nodes": 300, "m": 4, "seed": 1, "kappa": 1.0}])
def test_spec_round_trips(spec):
    fam = build_family("orig", spec)
    full = fam.spec()
    assert json.loads(json.dumps(full)) == full
    assert set(full) >= {"kind", "nodes", "seed", "kappa", "k_min", "k_max", "symmetric", "biased", "edges",
                         "isolated_nodes", "entropy_rate"}
    again = build_family("copy", full)  # derived keys are accepted and checked against the rebuilt family
    assert again is not fam and (again.P != fam.P).nnz == 0 and np.array_equal(again.M, fam.M)
    assert again.spec() == full
    with pytest.raises(UserError, match="'entropy_rate'"):
        build_family("copy", {**full, "entropy_rate": full["entropy_rate"] + 0.1})


def test_families_are_cached_per_process():
    spec = {"kind": "er", "nodes": 100, "edges": 300}
    assert build_family("x", spec) is build_family("x", dict(reversed(list(spec.items()))))
    assert set(KINDS) >= {"er", "ba"}


@pytest.mark.parametrize("spec,key", [
    ({"kind": "ws", "nodes": 10}, "kind"),
    ({"nodes": 10, "edges": 5}, "kind"),
    ({"kind": "er", "nodez": 10, "edges": 5}, "nodez"),
    ({"kind": "er", "edges": 5}, "nodes"),
    ({"kind": "er", "nodes": 10, "edges": 5, "kappa": -1}, "kappa"),
    ({"kind": "er", "nodes": 10, "edges": 5, "kappa": "big"}, "kappa"),
    ({"kind": "er", "nodes": 10, "edges": 46}, "edges"),
    ({"kind": "er", "nodes": 10, "edges": 5, "k_min": 10, "k_max": 5}, "k_min"),
    ({"kind": "er", "nodes": 10, "edges": 5, "kappa": 1, "k_max": 10**9}, "k_max"),
    ({"kind": "er", "nodes": True, "edges": 5}, "nodes"),
    ({"kind": "er", "nodes": 10.5, "edges": 5}, "nodes"),
    ({"kind": "er", "nodes": 10, "edges": 5, "seed": -1}, "seed"),
    ({"kind": "er", "nodes": 10, "edges": 5, "symmetric": "no"}, "symmetric"),
    ({"kind": "er", "nodes": 10, "edges": 5, "m": 2}, "m"),
    ({"kind": "ba", "nodes": 10, "m": 10}, "m"),
])
def test_bad_specs_name_the_family_and_the_key(spec, key):
    with pytest.raises(UserError, match=f"family 'bad'.*'{key}'") as err:
        build_family("bad", spec)
    assert "\n" not in str(err.value)
