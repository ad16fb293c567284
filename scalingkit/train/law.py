"""The true next-token law of a family's data, where it is known: what the exact excess loss is measured against.

A family that knows the law its sequences were drawn from hands one of these to the evaluator (plain numpy, so a
family builds it without importing torch):
- MarkovLaw: walks on a graph or on a bigram table, where the next token depends on the previous one only;
- TableLaw: the law's log-probabilities at every position of the held-out set, written once by the family (TnL
  text: its generator's own distribution at temperature 1 given the prefix).
Natural text has no known law: its family has none, and only the sampled loss is measured.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class MarkovLaw:
    """Next token ~ P[previous token]; a row of P with no entry restarts the walk from M."""

    P: sp.csr_matrix
    M: np.ndarray
    row_entropy: np.ndarray  # H(P_eff[u]) in nats: M's entropy for an empty row
    floor: float  # expected loss of the law itself over the positions of a context (the family's loss floor)
    floor_kind: str = "exact"

    @property
    def vocab_size(self) -> int:
        return self.P.shape[0]


@dataclass(frozen=True)
class TableLaw:
    """log P(x_{t+1} | x_0..x_t) for every held-out sequence and position t, as float32 (n_seq, context, V)."""

    logp: np.ndarray
    floor: float  # the family's loss floor: exact, or a Monte Carlo estimate (floor_kind)
    floor_kind: str = "estimate"

    @property
    def vocab_size(self) -> int:
        return self.logp.shape[-1]
