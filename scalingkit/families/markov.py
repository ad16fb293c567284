"""Markov-chain data families: a walk on a weighted (directed or undirected) graph given by a weight matrix W0.

P[u, v] = W0[u, v] / sum_j W0[u, j]; the first token is drawn from M[u] = sum_j W0[u, j] / sum_ij W0[i, j].
Empty rows (a node with no out-weight, e.g. a token never followed by anything in a bigram table): the walk
RESTARTS, i.e. the next token is drawn from M. All the mathematics below uses that effective chain
P_eff = P with every empty row replaced by M, so entropy, floors and sampler agree.

The module has the exact quantities (stationary law, entropy rate, loss floor, counting baseline, rank data),
which are pure functions of (P, M), and a vectorised O(1)-per-token walk sampler built on alias tables.
"""
from __future__ import annotations

import warnings
from functools import cached_property

import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

from scalingkit.train.law import MarkovLaw


class Family:
    """What the trainer needs from a data family. Exact quantities are None where a family has none."""

    name: str
    vocab_size: int

    def spec(self) -> dict:
        raise NotImplementedError

    def entropy_rate(self) -> float | None:
        return None

    def loss_floor(self, context: int) -> float | None:
        return None

    def sample(self, n_seq: int, length: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


# --------------------------------------------------------------------------------------------- pure mathematics

def transition_matrix(W0: sp.spmatrix) -> tuple[sp.csr_matrix, np.ndarray]:
    """(P, M) from a non-negative square weight matrix; explicit zeros are dropped so nnz(P) = support size."""
    W = sp.csr_matrix(W0, dtype=np.float64, copy=True)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"weight matrix must be square, got shape {W.shape}")
    if W.nnz and (not np.all(np.isfinite(W.data)) or W.data.min() < 0):
        raise ValueError("weight matrix must be finite and non-negative")
    W.eliminate_zeros()
    W.sum_duplicates()
    out = np.asarray(W.sum(axis=1)).ravel()
    if out.sum() <= 0:
        raise ValueError("weight matrix has no positive entry")
    rows = np.repeat(np.arange(W.shape[0]), np.diff(W.indptr))
    P = sp.csr_matrix((W.data / out[rows], W.indices, W.indptr), shape=W.shape)
    return P, out / out.sum()


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def row_entropies(P: sp.csr_matrix, M: np.ndarray) -> np.ndarray:
    """H(P_eff[u, :]) in nats for every u (an empty row restarts from M, so it has entropy H(M))."""
    terms = -P.data * np.log(P.data)
    h = np.add.reduceat(np.r_[terms, 0.0], P.indptr[:-1]) if P.nnz else np.zeros(P.shape[0])
    empty = np.diff(P.indptr) == 0
    h[empty] = _entropy(M)  # reduceat on an empty segment returns a neighbour's value: overwrite
    return h


def step(p: np.ndarray, PT: sp.csr_matrix, M: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """One step of the law: p P_eff = p P + (mass on empty rows) M. PT is P transposed (CSR, for speed)."""
    return PT @ p + p[empty].sum() * M


def recurrent_support(P: sp.csr_matrix, M: np.ndarray) -> np.ndarray:
    """Boolean mask of the states that carry stationary mass for a walk started from M.

    These are the states in closed strongly connected classes reachable from supp(M). Exact (graph search), so
    'visited' counts do not depend on a numerical threshold. A virtual node n stands for the restart
    (empty rows -> n -> supp(M)) to avoid materialising n_empty * nnz(M) edges.
    """
    n = P.shape[0]
    empty = np.flatnonzero(np.diff(P.indptr) == 0)
    src = np.r_[np.repeat(np.arange(n), np.diff(P.indptr)), empty, np.full(np.count_nonzero(M), n)]
    dst = np.r_[P.indices, np.full(len(empty), n), np.flatnonzero(M)]
    A = sp.csr_matrix((np.ones(len(src), np.int8), (src, dst)), shape=(n + 1, n + 1))
    _, labels = csgraph.connected_components(A, directed=True, connection="strong")
    leaves = labels[src] != labels[dst]
    open_class = np.zeros(labels.max() + 1, bool)
    open_class[labels[src[leaves]]] = True
    reached = np.zeros(n + 1, bool)
    reached[csgraph.breadth_first_order(A, n, directed=True, return_predecessors=False)] = True
    return (reached & ~open_class[labels])[:n]


def stationary_law(P: sp.csr_matrix, M: np.ndarray, tol: float = 1e-13, max_iter: int = 200_000) -> np.ndarray:
    """lim_t of the Cesaro average of M P_eff^t: the stationary law the walk started from M settles into.

    Power iteration on the lazy chain (I + P_eff)/2: it has the same fixed points, no periodicity, and its limit
    from M equals the Cesaro limit (the eigenvalue-1 projection), so periodic and reducible chains are fine.
    """
    empty = np.diff(P.indptr) == 0
    PT = P.T.tocsr()
    support = recurrent_support(P, M)
    pi = M.copy()
    for _ in range(max_iter):
        nxt = step(pi, PT, M, empty)
        if np.abs(nxt - pi).sum() < tol:
            break
        pi = 0.5 * (pi + nxt)
    else:
        warnings.warn(f"stationary law: power iteration did not reach tol {tol} in {max_iter} steps", stacklevel=2)
    pi[~support] = 0.0  # transient mass only decays geometrically: remove its remainder
    return pi / pi.sum()


def mean_loss_over_positions(P: sp.csr_matrix, M: np.ndarray, h: np.ndarray, context: int) -> float:
    """mean_{t<context} p_t . h with p_0 = M, p_{t+1} = p_t P_eff: the ideal predictor's loss on a sequence."""
    empty = np.diff(P.indptr) == 0
    PT = P.T.tocsr()
    p, total = M.copy(), 0.0
    for _ in range(context):
        total += float(p @ h)
        p = step(p, PT, M, empty)
    return total / context


def _row_cumsum(values: np.ndarray, rows: np.ndarray, n_rows: int) -> np.ndarray:
    """Inclusive cumulative sum restarting at every row (rows sorted); extended precision limits round-off."""
    total = np.cumsum(values, dtype=np.longdouble)
    first = np.r_[0, np.cumsum(np.bincount(rows, minlength=n_rows))][rows]
    return (total - (total - values)[first]).astype(np.float64)


def alias_table(indptr: np.ndarray, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker alias tables for every row of a CSR matrix at once (positive data), fully vectorised.

    Returns (prob, alias): slot j of row u keeps its own entry j with probability prob[j] and otherwise yields
    entry alias[j] (a position in the same row). Construction (the "sweep" form of Vose's algorithm, in closed
    form): scale each row to mean 1 (q = deg * p); light entries (q < 1) need 1 - q, heavy ones give q - 1.
    Laying the heavy entries' mass on a line in order, each light takes the next chunk of its size, and each
    heavy's own slot is the unit chunk that starts once the lights' cumulative demand L passes the heavy's
    cumulative excess E (its top comes from the next heavy). So light m is served by the first heavy with
    E > L_m, and heavy h keeps 1 - (first L >= E_h minus E_h): one merge of the L and E lists per row.
    """
    n = len(indptr) - 1
    deg = np.diff(indptr)
    rows = np.repeat(np.arange(n), deg)
    q = data * deg[rows] / np.bincount(rows, weights=data, minlength=n)[rows]
    row_max = np.maximum.reduceat(np.r_[q, 0.0], indptr[:-1])
    heavy = (q >= 1.0) | (q == row_max[rows])  # round-off can leave a row's largest q just below 1
    light_pos, heavy_pos = np.flatnonzero(~heavy), np.flatnonzero(heavy)
    light_row, heavy_row = rows[light_pos], rows[heavy_pos]
    need = 1.0 - q[light_pos]
    demand_before = _row_cumsum(need, light_row, n) - need          # L_m within the row
    excess = _row_cumsum(q[heavy_pos] - 1.0, heavy_row, n)          # E_h within the row
    demand_total = np.bincount(light_row, weights=need, minlength=n)
    heavy_start = np.r_[0, np.cumsum(np.bincount(heavy_row, minlength=n))]
    light_end = np.cumsum(np.bincount(light_row, minlength=n))

    # merge the two lists within each row: complex keys row + i*value compare lexicographically (row first),
    # so one searchsorted per list never mixes rows. On ties the heavy counts as first (its excess is spent).
    light_key, heavy_key = light_row + 1j * demand_before, heavy_row + 1j * excess
    heavies_before_light = np.searchsorted(heavy_key, light_key, side="right")
    lights_before_heavy = np.searchsorted(light_key, heavy_key, side="left")

    prob, alias = q.copy(), np.arange(len(q))
    served_by = np.clip(heavies_before_light, heavy_start[light_row], heavy_start[light_row + 1] - 1)
    alias[light_pos] = heavy_pos[served_by]
    inside = lights_before_heavy < light_end[heavy_row]
    demand_after = np.where(inside, demand_before[np.minimum(lights_before_heavy, len(light_pos) - 1)],
                            demand_total[heavy_row]) if len(light_pos) else demand_total[heavy_row]
    prob[heavy_pos] = np.clip(1.0 - (demand_after - excess), 0.0, 1.0)
    last = np.zeros(len(heavy_pos), bool)
    last[heavy_start[1:][deg > 0] - 1] = True          # the last heavy of each row has no excess left to share
    prob[heavy_pos[last]] = 1.0
    alias[heavy_pos[~last]] = heavy_pos[1:][~last[:-1]]
    return prob, alias


# --------------------------------------------------------------------------------------------- the family

class MarkovChainFamily(Family):
    """A walk on the chain given by a non-negative sparse weight matrix W0 (n x n), vocabulary = the n states.

    `settings` are the user-facing spec keys (recorded as is); `facts` are extra derived keys from the builder.
    Everything expensive (stationary law, sampler tables) is computed lazily and once.
    """

    def __init__(self, name: str, W0: sp.spmatrix, settings: dict, facts: dict | None = None):
        self.name = name
        self.P, self.M = transition_matrix(W0)
        self.vocab_size = self.P.shape[0]
        self.settings = dict(settings)
        self.facts = dict(facts or {})
        self._floors: dict[int, float] = {}

    # ---- exact quantities
    @cached_property
    def _empty(self) -> np.ndarray:
        return np.diff(self.P.indptr) == 0

    @cached_property
    def reversible_from_M(self) -> bool:
        """True when M is stationary by detailed balance, M(u) P(u, v) = M(v) P(v, u), i.e. W0 is symmetric."""
        W = sp.csr_matrix((self.P.data, self.P.indices, self.P.indptr), shape=self.P.shape)
        W = W.multiply(self.M[:, None]).tocsr()
        return abs(W - W.T).max() <= 1e-15 * max(self.M.max(), 1e-300) if W.nnz else True

    @cached_property
    def _stationary(self) -> np.ndarray:
        if self.reversible_from_M:
            return self.M.copy()
        return stationary_law(self.P, self.M)

    def stationary(self) -> np.ndarray:
        """Stationary law pi of the walk started from M (a copy)."""
        return self._stationary.copy()

    @cached_property
    def row_entropy(self) -> np.ndarray:
        return row_entropies(self.P, self.M)

    @cached_property
    def _entropy_rate(self) -> float:
        return float(self._stationary @ self.row_entropy)

    def entropy_rate(self) -> float:
        """sum_v pi(v) H(P_eff[v, :]) in nats per token."""
        return self._entropy_rate

    def loss_floor(self, context: int) -> float:
        """Exact expected loss of the ideal next-token predictor over positions 0..context-1 (token 0 ~ M)."""
        if int(context) != context or context < 1:
            raise ValueError(f"context must be a positive integer, got {context!r}")
        context = int(context)
        if self.reversible_from_M:
            return self.entropy_rate()
        if context not in self._floors:
            self._floors[context] = mean_loss_over_positions(self.P, self.M, self.row_entropy, context)
        return self._floors[context]

    @cached_property
    def _counting_excess(self) -> float:
        """nnz(P_eff) - n over the recurrent states: the numerator of the counting learner's 1/(2D) excess."""
        support = self._stationary > 0
        k = np.diff(self.P.indptr).astype(np.float64)
        k[self._empty] = np.count_nonzero(self.M)
        return float((k[support] - 1.0).sum())

    def counting_baseline(self, D) -> np.ndarray | float:
        """Expected test cross-entropy of the bigram-counting (maximum-likelihood) learner after D tokens.

        entropy_rate + (nnz(P) - n_visited) / (2 D): the large-D asymptote, where every transition has been seen
        many times (row u with k_u successors seen N_u ~ D pi(u) times has E KL = (k_u - 1)/(2 N_u) + O(N_u^-2)).
        For small D the unsmoothed learner has infinite loss on unseen transitions; the formula does not model that.
        """
        D = np.asarray(D, dtype=np.float64)
        out = self.entropy_rate() + self._counting_excess / (2.0 * D)
        return float(out) if out.ndim == 0 else out

    def unigram_rank(self) -> np.ndarray:
        """Stationary unigram probabilities, sorted descending (zeros dropped)."""
        pi = self._stationary
        return np.sort(pi[pi > 0])[::-1]

    def bigram_rank(self) -> np.ndarray:
        """Stationary bigram probabilities pi(u) P_eff(u, v), sorted descending (zeros dropped)."""
        pi = self._stationary
        rows = np.repeat(np.arange(self.vocab_size), np.diff(self.P.indptr))
        joint = pi[rows] * self.P.data
        restart = np.outer(pi[self._empty & (pi > 0)], self.M[self.M > 0]).ravel()
        joint = np.r_[joint, restart]
        return np.sort(joint[joint > 0])[::-1]

    def next_token_law(self, held_out: np.ndarray, context: int) -> MarkovLaw:
        """The law every position of any sequence was drawn from: P_eff[previous token] (exact)."""
        return MarkovLaw(self.P, self.M, self.row_entropy, self.loss_floor(context))

    def spec(self) -> dict:
        derived = {
            "vocab_size": int(self.vocab_size),
            "transitions": int(self.P.nnz),
            "empty_rows": int(self._empty.sum()),
            "recurrent_states": int(np.count_nonzero(self._stationary)),
            "entropy_rate": self.entropy_rate(),
        }
        return {**self.settings, **self.facts, **derived}

    # ---- sampling
    @cached_property
    def _tables(self):
        """Alias tables of P plus one extra virtual row n holding M (first token, and restarts from empty rows)."""
        n = self.vocab_size
        indptr = np.r_[self.P.indptr, self.P.nnz + np.count_nonzero(self.M)].astype(np.int64)
        cols = np.r_[self.P.indices, np.flatnonzero(self.M)].astype(np.int64)
        prob, alias = alias_table(indptr, np.r_[self.P.data, self.M[self.M > 0]])
        start, count = indptr[:-1].copy(), np.diff(indptr)
        start[:n][self._empty], count[:n][self._empty] = start[n], count[n]  # empty row -> the M row
        local = np.arange(len(cols)) - np.repeat(indptr[:-1], np.diff(indptr))
        # r * scale < count always (r < 1, scale one ulp below count), so floor(r * scale) is a slot of the row
        # (no clipping); comparing r with slot + prob reuses r's fractional part as the alias coin
        scale = count * (1.0 - 2.0**-52)
        # unbiased walks: every slot of P keeps its own entry, so after token 0 (drawn from M) no coin is needed,
        # unless the walk can reach an empty row (isolated nodes of a graph cannot be reached)
        reachable_empty = self._empty & (np.bincount(self.P.indices, minlength=n) > 0)
        uniform = bool(np.all(prob[: self.P.nnz] == 1.0) and not reachable_empty.any())
        return start, scale, local + prob, cols, cols[alias], uniform

    def sample(self, n_seq: int, length: int, rng: np.random.Generator) -> np.ndarray:
        """n_seq independent walks of `length` tokens (token 0 ~ M), int64 array (n_seq, length).

        One loop over positions, each a handful of numpy operations on all sequences (O(1) per token).
        """
        if n_seq < 0 or length < 0:
            raise ValueError(f"n_seq and length must be >= 0, got {n_seq}, {length}")
        start, scale, threshold, own, alias, uniform = self._tables
        out = np.empty((n_seq, length), np.int64)
        x = np.full(n_seq, self.vocab_size, np.int64)   # the virtual M row
        r = np.empty(n_seq)
        for t in range(length):
            rng.random(out=r)
            r *= scale[x]
            j = r.astype(np.int64)
            j += start[x]
            x = own[j] if uniform and t else np.where(r < threshold[j], own[j], alias[j])
            out[:, t] = x
        return out
