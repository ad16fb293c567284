"""Evaluation on the fixed held-out set: the sampled loss and, where the family knows its next-token law, the exact
excess loss, each with its standard error over held-out sequences.

- sampled loss: the mean cross-entropy of the sequences' own next tokens (what natural text allows);
- excess loss: the mean over the same positions of KL(P(. | context) || Q_model(. | context)), the law P the data was
  drawn from against the model's Q. It needs no sampled target, so it carries no target noise: what is left is the
  variation of the KL across contexts (1e-5 to 6e-5 nats of standard error where the sampled loss has 5e-4 to 8e-4);
- exact loss: floor + excess, the model's expected loss on fresh data of the family, the floor being the family's
  loss floor (the law's own expected loss, exact for walks, a Monte Carlo estimate for TnL text).
Standard errors take the held-out sequence as the unit (positions within one sequence are correlated; sequences
are independent draws): std over sequences of each sequence's mean / sqrt(number of sequences).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from scalingkit.train.law import MarkovLaw, TableLaw

# Random streams: training walks and the held-out set come from different seed sequences, so no run ever trains on
# its evaluation data, and every run of a family is evaluated on the same held-out sequences.
TRAIN_STREAM, EVAL_STREAM = 1, 2


def held_out_set(family, settings) -> np.ndarray:
    rng = np.random.default_rng([EVAL_STREAM, int(settings.eval_seed)])
    # a family with an evaluation split (natural text: held-out documents) says so with eval_sample
    sample = getattr(family, "eval_sample", family.sample)
    return sample(settings.eval_sequences, settings.context + 1, rng)


@dataclass(frozen=True)
class Scores:
    """One model at one evaluation point (nan where the family's law is unknown)."""

    eval_loss: float
    eval_loss_se: float
    excess_loss: float
    excess_loss_se: float
    floor: float

    @property
    def exact_loss(self) -> float:
        return self.floor + self.excess_loss


class HeldOut:
    """The held-out sequences of a run (inputs and targets on the device) and, where known, the true law at each of
    their positions, prepared once per run in chunks of `chunk` sequences."""

    def __init__(self, family, settings, device: torch.device, chunk: int):
        seqs = held_out_set(family, settings)
        self.seqs = torch.from_numpy(seqs).to(device)
        law_of = getattr(family, "next_token_law", None)
        self.law = law_of(seqs, settings.context) if law_of is not None else None
        self.floor = float(self.law.floor) if self.law is not None else math.nan
        self.chunks = [(slice(i, i + chunk), _law_chunk(self.law, seqs[i:i + chunk], i, device))
                       for i in range(0, len(seqs), chunk)]

    @torch.no_grad()
    def evaluate(self, model, autocast) -> Scores:
        model.eval()
        ce, kl = [], []
        for rows, law in self.chunks:
            chunk = self.seqs[rows]
            with autocast():
                logits = model(chunk[:, :-1])
            c, k = token_scores(logits, chunk[:, 1:].reshape(-1), law)
            ce.append(_per_sequence(c, len(chunk)))
            kl.append(_per_sequence(k, len(chunk)) if k is not None else None)
        model.train()
        return self._scores(np.concatenate(ce, axis=-1), None if kl[0] is None else np.concatenate(kl, axis=-1))

    @torch.no_grad()
    def evaluate_stack(self, stack, autocast, rows_per_chunk) -> list[Scores]:
        """Every variant of a stacked model on the same chunks (batched.train_batch)."""
        k, vocab = stack.k, stack.template.cfg.vocab_size
        ce, kl = [], []
        for rows, law in self.chunks:
            chunk = self.seqs[rows]
            idx = chunk[None, :, :-1].expand(k, -1, -1)
            targets = chunk[:, 1:].reshape(-1)
            c_parts, k_parts = [], []
            for _, logits in stack.logit_chunks(idx, autocast, rows_per_chunk(k, idx[0].numel(), vocab)):
                c, kk = token_scores(logits, targets, law)
                c_parts.append(_per_sequence(c, len(chunk)))
                k_parts.append(_per_sequence(kk, len(chunk)) if kk is not None else None)
            ce.append(np.concatenate(c_parts, axis=0))
            kl.append(np.concatenate(k_parts, axis=0) if k_parts[0] is not None else None)
        ce_all = np.concatenate(ce, axis=-1)
        kl_all = None if kl[0] is None else np.concatenate(kl, axis=-1)
        return [self._scores(ce_all[i], None if kl_all is None else kl_all[i]) for i in range(k)]

    def _scores(self, ce_seq: np.ndarray, kl_seq: np.ndarray | None) -> Scores:
        eval_loss, eval_se = _mean_se(ce_seq)
        excess, excess_se = _mean_se(kl_seq) if kl_seq is not None else (math.nan, math.nan)
        return Scores(eval_loss, eval_se, excess, excess_se, self.floor)


def token_scores(logits: torch.Tensor, targets: torch.Tensor, law) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token sampled cross-entropy and, given a law chunk, per-token KL(P || Q), both float64.

    logits: (B, T, V) from a model, or (k, B * T, V) from a stack of k variants; targets: the B * T next tokens.
    Positions are flattened in the targets' order, so a law chunk's per-position arrays line up with them."""
    if logits.shape[-2] != targets.numel():  # a model's (B, T, V): one row per target
        logits = logits.flatten(-3, -2)
    logits = logits.float()
    # log Q(v) = logit_v - lse: beyond the sampled loss only gathers are needed. The normaliser comes from torch's
    # fused cross-entropy (2x faster than logsumexp on the CPU) plus the target's logit.
    ce32 = F.cross_entropy(logits.flatten(0, -2), targets.expand(logits.shape[:-1]).flatten(), reduction="none")
    ce = ce32.view(logits.shape[:-1]).double()
    if law is None:
        return ce, None
    lse = ce + logits.gather(-1, targets.expand(logits.shape[:-1]).unsqueeze(-1)).squeeze(-1).double()
    # -inf logits (only a hand-made model has them) times a zero probability must count as 0
    logits = logits.clamp_min(torch.finfo(logits.dtype).min)
    return ce, lse * law.mass - law.expected(logits) - law.entropy


def _per_sequence(per_token: torch.Tensor, n_seq: int) -> np.ndarray:
    """(..., n_seq * T) per-token values -> (..., n_seq) per-sequence means, float64 on the host."""
    return per_token.reshape(*per_token.shape[:-1], n_seq, -1).mean(-1).cpu().numpy()


def _mean_se(per_seq: np.ndarray) -> tuple[float, float]:
    n = per_seq.shape[-1]
    mean = float(per_seq.mean())
    se = float(per_seq.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return mean, se


# ---------------------------------------------------------------- the law at a chunk's positions

# A law chunk gives, for the flattened positions of a chunk of held-out sequences, the law's entropy and
# `expected(logits)` = sum_v P(v | context) logit_v, so that sum_v P log Q = expected - mass * logsumexp(logits),
# `mass` being sum_v P (1 up to rounding; carried so that a rounded table still gives exactly KL = 0 for itself).

class _MarkovChunk:
    """P[previous token] at every position, as (position, token, probability) triples of P's rows: a walk's rows are
    sparse (a node's neighbours, a token's successors), so gathering them beats any dense form (measured: 0.97x
    against 1.36x the old evaluation's time for a 1,024-token bigram). M for the positions whose row is empty."""

    def __init__(self, pos, col, prob, restart, M, entropy, mass, vocab: int):
        self.pos, self.prob, self.restart, self.M = pos, prob, restart, M
        self.flat = pos * vocab + col  # one take() on the flattened logits instead of 2-d fancy indexing
        self.entropy, self.mass = entropy, mass

    def expected(self, logits: torch.Tensor) -> torch.Tensor:
        # float32 products summed per position (a row's few hundred terms at most: ~1e-7 relative), then float64
        terms = logits.flatten(-2)[..., self.flat] * self.prob
        out = torch.zeros(*logits.shape[:-1], device=logits.device, dtype=torch.float32)
        out.index_add_(-1, self.pos, terms)
        out = out.double()
        if len(self.restart):
            out[..., self.restart] = logits[..., self.restart, :].double() @ self.M
        return out


class _TableChunk:
    """A law given as log-probabilities at every position (TnL): P, its entropy and its mass per position."""

    def __init__(self, p: torch.Tensor, entropy: torch.Tensor, mass: torch.Tensor):
        self.p, self.entropy, self.mass = p, entropy, mass

    def expected(self, logits: torch.Tensor) -> torch.Tensor:
        # summed in float32 (V terms: ~1e-7 relative, far below the loss's standard error), then float64: a
        # float64 accumulation of the dense product cost 3.5x as much (measured: 6.0 ms against 1.7 ms a chunk)
        return (self.p * logits).sum(-1).double()


def _law_chunk(law, seqs: np.ndarray, offset: int, device):
    """The law at the positions of `seqs` (held-out rows offset.. of the set)."""
    if law is None:
        return None
    prev = seqs[:, :-1].reshape(-1)  # the token each position's law is conditioned on (Markov)

    def tensor(a, dtype):
        return torch.as_tensor(a, dtype=dtype, device=device)

    if isinstance(law, MarkovLaw):
        counts = np.diff(law.P.indptr)[prev]
        pos = np.repeat(np.arange(len(prev)), counts)
        flat = np.repeat(law.P.indptr[prev] - (np.cumsum(counts) - counts), counts) + np.arange(len(pos))
        prob = law.P.data[flat]
        mass = np.bincount(pos, weights=prob, minlength=len(prev))
        restart = np.flatnonzero(counts == 0)
        mass[restart] = law.M.sum()
        return _MarkovChunk(tensor(pos, torch.int64), tensor(law.P.indices[flat], torch.int64),
                            tensor(prob, torch.float32), tensor(restart, torch.int64), tensor(law.M, torch.float64),
                            tensor(law.row_entropy[prev], torch.float64), tensor(mass, torch.float64),
                            law.vocab_size)
    if isinstance(law, TableLaw):
        logp = np.asarray(law.logp[offset:offset + len(seqs)], dtype=np.float32).reshape(len(prev), -1)
        p = np.exp(logp)
        with np.errstate(invalid="ignore"):
            h = -np.where(p > 0, p * logp.astype(np.float64), 0.0).sum(-1)
        return _TableChunk(tensor(p, torch.float32), tensor(h, torch.float64), tensor(p.sum(-1, dtype=np.float64),
                                                                                       torch.float64))
    raise TypeError(f"unknown law type {type(law).__name__}")
