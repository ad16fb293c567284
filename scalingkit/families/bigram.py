"""Language bigram family: walks on the weighted directed graph of a tokenised corpus's bigram counts.

W0[u, v] = how often token v follows token u in the corpus (all documents, each followed by <|endoftext|>, so a
walk runs from the end of one document into the start of another as the text stream does), with the bigrams seen
at most `prune` times dropped (the paper: 5). A walk is then a sample of the pruned bigram language model, drawn by
MarkovChainFamily's alias-table sampler, with its exact entropy rate and loss floor. A row that pruning leaves
empty restarts the walk from M (MarkovChainFamily's rule). Pruning can also leave traps: sets of tokens a walk never
leaves (GPT-2's " ." of a dotted line in the embedded corpus keeps only " ." after itself), where a walk would
repeat them forever and the stationary law, hence the entropy rate, would be degenerate. The walk keeps the one
closed set that carries most of the corpus's bigrams; the rows of every other are emptied too, so they restart.
spec() reports both counts (emptied_by_pruning, traps).
The vocabulary is the tokenizer's (50,257 for GPT-2): tokens the corpus never uses are states never reached.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from scipy.sparse import csgraph

from scalingkit.errors import UserError
from scalingkit.families.language_spec import DEFAULT_HELD_OUT, check_derived, check_spec
from scalingkit.families.markov import MarkovChainFamily
from scalingkit.families.token_cache import from_settings

CHUNK = 1 << 24  # tokens counted at a time, so a 10B-token corpus never needs 10B-long index arrays


def bigram_counts(tokens: np.ndarray, vocab_size: int) -> sp.csr_matrix:
    """counts[u, v] = number of positions t with tokens[t] = u and tokens[t + 1] = v (int64, sparse)."""
    counts = sp.csr_matrix((vocab_size, vocab_size), dtype=np.int64)
    for start in range(0, max(len(tokens) - 1, 0), CHUNK):
        chunk = np.asarray(tokens[start: start + CHUNK + 1], dtype=np.int64)  # one token of overlap
        ones = np.ones(len(chunk) - 1, dtype=np.int64)
        counts += sp.csr_matrix((ones, (chunk[:-1], chunk[1:])), shape=(vocab_size, vocab_size))  # sums duplicates
    return counts


def prune(counts: sp.csr_matrix, at_most: int) -> sp.csr_matrix:
    """The counts with every entry <= at_most removed."""
    kept = counts.copy()
    kept.data[kept.data <= at_most] = 0
    kept.eliminate_zeros()
    return kept


def traps(W: sp.csr_matrix) -> np.ndarray:
    """Mask of the states whose rows must restart so that the walk has one recurrent class.

    The walk's graph: W's edges, empty rows -> a restart node n -> every state with out-weight (supp M). Its closed
    classes (strongly connected, no edge out) are where walks end up. The class carrying the most weight (rows of
    W) is kept, with n's own class a candidate when some row is empty (restarts bring the walk back to it even
    when a trap leaks from it); every other closed class is a trap.
    """
    n = W.shape[0]
    out = np.diff(W.indptr)
    empty, starts = np.flatnonzero(out == 0), np.flatnonzero(out > 0)
    src = np.r_[np.repeat(np.arange(n), out), empty, np.full(len(starts), n)]
    dst = np.r_[W.indices, np.full(len(empty), n), starts]
    A = sp.csr_matrix((np.ones(len(src), np.int8), (src, dst)), shape=(n + 1, n + 1))
    n_classes, labels = csgraph.connected_components(A, directed=True, connection="strong")
    leaving = labels[src] != labels[dst]
    closed = np.ones(n_classes, bool)
    closed[labels[src[leaving]]] = False
    candidate = closed.copy()
    candidate[labels[n]] |= len(empty) > 0
    weight = np.bincount(labels[:n], weights=np.asarray(W.sum(axis=1)).ravel(), minlength=n_classes)
    closed[np.argmax(np.where(candidate, weight, -1.0))] = False  # the kept class
    return closed[labels[:n]]


def build_bigram(name: str, spec: dict) -> MarkovChainFamily:
    """The bigram walk of a corpus (settings in language_spec)."""
    settings, derived = check_spec(name, spec)
    tokenizer, arrays = from_settings(settings, DEFAULT_HELD_OUT)
    V = tokenizer.vocab_size
    counts = bigram_counts(arrays.train, V) + bigram_counts(arrays.held_out, V)
    kept = prune(counts, settings["prune"])
    had, has = np.diff(counts.indptr) > 0, np.diff(kept.indptr) > 0
    trapped = traps(kept)
    kept.data[np.repeat(trapped, np.diff(kept.indptr))] = 0  # emptying a trap's row makes it restart
    kept.eliminate_zeros()
    if kept.nnz == 0:
        raise UserError(f"family {name!r}: key 'prune' ({settings['prune']}) leaves no bigram a walk can follow "
                        f"(the corpus's most frequent bigram is seen {counts.max() if counts.nnz else 0} times)")
    facts = {
        "corpus_tokens": int(len(arrays.train) + len(arrays.held_out)),
        "distinct_tokens": int(np.count_nonzero(had | (np.asarray(counts.sum(axis=0)).ravel() > 0))),
        "distinct_bigrams": int(counts.nnz),
        "kept_fraction": float(kept.sum() / counts.sum()),  # share of the corpus's bigram occurrences kept
        "emptied_by_pruning": int(np.count_nonzero(had & ~has)),
        "traps": int(trapped.sum()),
        "corpus_fingerprint": arrays.meta["corpus_fingerprint"],
        "tokenizer_fingerprint": tokenizer.fingerprint,
    }
    family = MarkovChainFamily(name, kept, settings, facts)
    check_derived(name, derived, family.spec() if derived else {})
    return family
