"""Random-graph walk families: Erdos-Renyi G(n, M) and Barabasi-Albert, unbiased or with kappa-biased weights.

Spec keys (TOML table of a sweep):
  kind       "er" or "ba"
  nodes      number of nodes = vocabulary size (required)
  edges      ER only: exact number of undirected edges, G(n, M) (required)
  m          BA only: edges attached per new node (required); BA's edge count is derived (m (nodes - m))
  seed       integer >= 0 (default 0). np.random.SeedSequence(seed).spawn(2) gives the graph stream and the
             weight stream, so changing the weights never changes the graph.
  kappa      absent/null: the unbiased walk (all weights 1). A real >= 0: every edge gets an integer weight k
             with Pr(k) ~ k^-kappa on [k_min, k_max] (so kappa = 0 is uniform on 1..100, NOT the unbiased walk).
  k_min, k_max   weight bounds (defaults 1, 100; recorded even when unbiased)
  symmetric  true (default): one weight per undirected edge; false: the two directions drawn independently.
Derived keys in spec(): biased, edges (BA), isolated_nodes, directed, plus the chain's facts (entropy_rate, ...).
"""
from __future__ import annotations

import math
import numbers

import networkx as nx
import numpy as np
import scipy.sparse as sp

from scalingkit.errors import UserError
from scalingkit.families.markov import MarkovChainFamily

REQUIRED = object()
MAX_WEIGHT_RANGE = 10**7  # edge_weights tabulates Pr(k) over [k_min, k_max]


# --------------------------------------------------------------------------------------------- graph construction

def er_edges(nodes: int, edges: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """G(n, M): `edges` distinct pairs i < j drawn uniformly, as index arrays (numpy, much faster than networkx)."""
    k = np.sort(rng.choice(nodes * (nodes - 1) // 2, size=edges, replace=False)).astype(np.int64)
    # unrank k = j (j - 1) / 2 + i, 0 <= i < j; the float guess of j is corrected for round-off
    j = np.floor((1.0 + np.sqrt(1.0 + 8.0 * k)) / 2.0).astype(np.int64)
    j -= j * (j - 1) // 2 > k
    j += (j + 1) * j // 2 <= k
    return k - j * (j - 1) // 2, j


def ba_edges(nodes: int, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Barabasi-Albert preferential attachment (networkx), as index arrays."""
    g = nx.barabasi_albert_graph(nodes, m, seed=int(rng.integers(2**63 - 1)))
    e = np.array(g.edges(), dtype=np.int64).reshape(-1, 2)
    return e[:, 0], e[:, 1]


def edge_weights(n_edges: int, kappa: float | None, k_min: int, k_max: int, symmetric: bool,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(forward, backward) integer weights per edge: ones when unbiased, else Pr(k) ~ k^-kappa on [k_min, k_max]."""
    if kappa is None:
        ones = np.ones(n_edges)
        return ones, ones
    k = np.arange(k_min, k_max + 1, dtype=np.float64)
    p = k ** -kappa
    forward = rng.choice(k, size=n_edges, p=p / p.sum())
    backward = forward if symmetric else rng.choice(k, size=n_edges, p=p / p.sum())
    return forward, backward


def weight_matrix(nodes: int, i: np.ndarray, j: np.ndarray, forward: np.ndarray, backward: np.ndarray) -> sp.csr_matrix:
    """W0 with W0[i, j] = forward and W0[j, i] = backward."""
    return sp.csr_matrix((np.r_[forward, backward], (np.r_[i, j], np.r_[j, i])), shape=(nodes, nodes))


# --------------------------------------------------------------------------------------------- spec checking

def _integer(lo=None):
    def check(v):
        ok = isinstance(v, numbers.Integral) and not isinstance(v, bool) and (lo is None or v >= lo)
        return int(v) if ok else _bad(f"an integer >= {lo}" if lo is not None else "an integer")
    return check


def _kappa(v):
    if v is None:
        return None
    if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v >= 0:
        return float(v)
    return _bad("a real number >= 0 (or absent for the unbiased walk)")


def _boolean(v):
    return v if isinstance(v, bool) else _bad("true or false")


class _Bad(Exception):
    pass


def _bad(what):
    raise _Bad(what)


COMMON = {"kind": (REQUIRED, str), "nodes": (REQUIRED, _integer(1)), "seed": (0, _integer(0)),
          "kappa": (None, _kappa), "k_min": (1, _integer(1)), "k_max": (100, _integer(1)),
          "symmetric": (True, _boolean)}
SCHEMAS = {"er": {**COMMON, "edges": (REQUIRED, _integer(1))}, "ba": {**COMMON, "m": (REQUIRED, _integer(1))}}
# keys spec() adds; accepted on input (so a stored spec rebuilds) and then checked against the built family
DERIVED = {"biased", "edges", "isolated_nodes", "directed", "vocab_size", "transitions", "empty_rows",
           "recurrent_states", "entropy_rate"}


def check_spec(name: str, spec: dict, schema: dict) -> tuple[dict, dict]:
    """(settings with defaults filled in, derived keys given) or UserError naming the family and the key."""
    settings, derived = {}, {}
    for key, value in spec.items():
        if key in schema:
            default, check = schema[key]
            try:
                settings[key] = check(value)
            except _Bad as exc:
                raise UserError(f"family {name!r}: key {key!r} must be {exc} (got {value!r})") from None
        elif key in DERIVED:
            derived[key] = value
        else:
            raise UserError(f"family {name!r}: unknown key {key!r} (allowed: {', '.join(sorted(schema))})")
    for key, (default, _) in schema.items():
        if key not in settings:
            if default is REQUIRED:
                raise UserError(f"family {name!r}: missing key {key!r}")
            settings[key] = default
    settings = {key: settings[key] for key in schema}  # canonical order
    if settings["k_max"] - settings["k_min"] > MAX_WEIGHT_RANGE:
        raise UserError(f"family {name!r}: key 'k_max' ({settings['k_max']}) is more than {MAX_WEIGHT_RANGE:,} "
                        f"above k_min (the weight law is tabulated)")
    if settings["k_min"] > settings["k_max"]:
        raise UserError(f"family {name!r}: key 'k_min' ({settings['k_min']}) must be <= k_max ({settings['k_max']})")
    return settings, derived


def check_derived(name: str, derived: dict, actual: dict) -> None:
    """A stored spec carries derived facts: they must match the rebuilt family (catches library drift)."""
    for key, value in derived.items():
        have = actual.get(key)
        same = (math.isclose(value, have, rel_tol=1e-9, abs_tol=1e-12)
                if isinstance(value, float) or isinstance(have, float) else value == have)
        if not same:
            raise UserError(f"family {name!r}: key {key!r} = {value!r} does not match the built family ({have!r})")


# Peak memory of building a family and its walk's tables (transition matrix, alias tables, stationary law), measured
# with /usr/bin/time on ER 200,000 nodes x 2,000,000 edges (577 MB), ER 2,000,000 x 200,000 (238 MB) and BA 200,000
# nodes, m = 5 (518 MB; networkx holds the graph as Python dicts), rounded up.
BYTES_PER_EDGE = {"er": 300, "ba": 550}
BYTES_PER_NODE = 100


def _check_size(name: str, kind: str, settings: dict) -> None:
    """Refuse a graph that cannot be built in this machine's memory, before building it."""
    from scalingkit.config import check_memory

    nodes = settings["nodes"]
    edges = settings["edges"] if kind == "er" else settings["m"] * max(nodes - settings["m"], 0)
    if kind == "er" and edges > nodes * (nodes - 1) // 2:
        return  # refused with its own message below
    check_memory(BYTES_PER_EDGE[kind] * edges + BYTES_PER_NODE * nodes,
                 f"family {name!r}: a walk on {nodes:,} nodes and {edges:,} edges", "cpu")


# --------------------------------------------------------------------------------------------- builders

def _build(name: str, spec: dict, kind: str) -> MarkovChainFamily:
    settings, derived = check_spec(name, spec, SCHEMAS[kind])
    nodes = settings["nodes"]
    _check_size(name, kind, settings)
    graph_rng, weight_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(settings["seed"]).spawn(2))
    if kind == "er":
        if settings["edges"] > nodes * (nodes - 1) // 2:
            raise UserError(f"family {name!r}: key 'edges' ({settings['edges']}) exceeds n(n-1)/2 = "
                            f"{nodes * (nodes - 1) // 2} for {nodes} nodes")
        i, j = er_edges(nodes, settings["edges"], graph_rng)
    else:
        if settings["m"] >= nodes:
            raise UserError(f"family {name!r}: key 'm' ({settings['m']}) must be < nodes ({nodes})")
        i, j = ba_edges(nodes, settings["m"], graph_rng)
    forward, backward = edge_weights(len(i), settings["kappa"], settings["k_min"], settings["k_max"],
                                     settings["symmetric"], weight_rng)
    W0 = weight_matrix(nodes, i, j, forward, backward)
    degree = np.bincount(np.r_[i, j], minlength=nodes)
    facts = {"biased": settings["kappa"] is not None, "edges": int(len(i)),
             "isolated_nodes": int((degree == 0).sum()), "directed": bool(np.any(forward != backward))}
    family = MarkovChainFamily(name, W0, settings, facts)
    check_derived(name, derived, family.spec() if derived else {})
    return family


def build_er(name: str, spec: dict) -> MarkovChainFamily:
    """Unbiased or kappa-biased walk on G(nodes, edges)."""
    return _build(name, spec, "er")


def build_ba(name: str, spec: dict) -> MarkovChainFamily:
    """Unbiased or kappa-biased walk on a Barabasi-Albert graph (nodes, m)."""
    return _build(name, spec, "ba")
