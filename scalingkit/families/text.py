"""Natural-text family: context-length windows of a tokenised corpus, one epoch, every token used once.

The training documents (each followed by <|endoftext|>, in corpus order) form one token stream, cut into
non-overlapping windows of the length a run asks for (context + 1: inputs and shifted targets). Evaluation windows
come from the held-out documents only (`eval_sample`, which the engine uses for its held-out set).

How a run's random stream maps to an epoch: the engine gives every run its own numpy Generator and calls
sample(batch, length, rng) with it, step after step. At the first call with a Generator the family draws a key from
it; the run then reads windows perm(0), perm(1), ... where perm is the keyed permutation of the windows
(shuffle.permute), and the family keeps the run's cursor. So the order is a deterministic function of the run's
seed, different seeds see different orders, and no window (so no token position) comes twice in an epoch. When a
run has read every window: with `repeats = 0` (default) the next call fails with an error that says how many
tokens the corpus holds; with `repeats = k`, up to k more passes follow, each in a fresh order (a new key from the
rng). `repeats` is recorded in spec() with the number of training tokens, so a run's passes are ceil(D / that).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from scalingkit.errors import UserError
from scalingkit.families.bigram import bigram_counts
from scalingkit.families.language_spec import check_derived, check_spec
from scalingkit.families.markov import Family
from scalingkit.families.shuffle import permute
from scalingkit.families.token_cache import TokenArrays, from_settings
from scalingkit.families.tokenizers import Tokenizer

MAX_STREAMS = 1024  # runs remembered per process (the engine uses one stream per run, one run at a time)


@dataclass
class _Stream:
    rng: np.random.Generator  # held so that its id stays unique while it is remembered
    length: int
    key: int
    cursor: int = 0  # windows read in the current pass
    passes: int = 1


class TextFamily(Family):
    eval_key = "held_out"  # the setting that sizes the evaluation split (named in errors)

    def __init__(self, name: str, settings: dict, tokenizer: Tokenizer, arrays: TokenArrays):
        self.name, self.settings, self.tokenizer = name, dict(settings), tokenizer
        self.train, self.held_out = arrays.train, arrays.held_out
        self.vocab_size = tokenizer.vocab_size
        self.meta = arrays.meta
        self._streams: OrderedDict[int, _Stream] = OrderedDict()

    def spec(self) -> dict:
        facts = {"vocab_size": int(self.vocab_size), "train_tokens": int(len(self.train)),
                 "held_out_tokens": int(len(self.held_out)), "train_documents": self.meta["documents"]["train"],
                 "held_out_documents": self.meta["documents"]["held_out"],
                 "corpus_fingerprint": self.meta["corpus_fingerprint"],
                 "tokenizer_fingerprint": self.tokenizer.fingerprint}
        return {**self.settings, **facts}

    # ---- sampling
    def sample(self, n_seq: int, length: int, rng: np.random.Generator) -> np.ndarray:
        """The next n_seq training windows of `length` tokens for the run that owns `rng` (int64, n_seq x length)."""
        n_windows = self._windows(self.train, length, "training")
        stream = self._stream(rng, length)
        index = np.empty(n_seq, dtype=np.int64)
        filled = 0
        while filled < n_seq:
            if stream.cursor == n_windows:
                self._next_pass(stream, n_windows)
            take = min(n_seq - filled, n_windows - stream.cursor)
            index[filled: filled + take] = permute(np.arange(stream.cursor, stream.cursor + take), n_windows,
                                                   stream.key)
            stream.cursor += take
            filled += take
        return _gather(self.train, index, length)

    def eval_sample(self, n_seq: int, length: int, rng: np.random.Generator) -> np.ndarray:
        """n_seq distinct windows of the held-out documents, chosen by `rng` (the same rng, the same set)."""
        n_windows = self._windows(self.held_out, length, "held-out")
        if n_seq > n_windows:
            raise UserError(f"family {self.name!r}: the held-out documents hold {len(self.held_out):,} tokens, "
                            f"{n_windows:,} windows of {length}, fewer than the {n_seq:,} evaluation sequences: raise "
                            f"{self.eval_key!r} (now {self.settings[self.eval_key]}) or lower the sweep's "
                            f"eval_sequences")
        return _gather(self.held_out, rng.choice(n_windows, size=n_seq, replace=False), length)

    def passes(self, tokens: int, context: int) -> int:
        """Passes over the training documents a run of `tokens` training tokens makes (1 = no repeats)."""
        per_pass = (len(self.train) // (context + 1)) * context  # tokens the engine counts per window: context
        return -(-int(tokens) // per_pass) if per_pass else 0

    def _windows(self, tokens: np.ndarray, length: int, what: str) -> int:
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        n = len(tokens) // length
        if n == 0:
            raise UserError(f"family {self.name!r}: the {what} documents hold {len(tokens):,} tokens, not one "
                            f"window of {length}")
        return n

    def _stream(self, rng: np.random.Generator, length: int) -> _Stream:
        stream = self._streams.get(id(rng))
        if stream is None or stream.rng is not rng:
            stream = _Stream(rng, length, key=int(rng.integers(2**63)))
            self._streams[id(rng)] = stream
            while len(self._streams) > MAX_STREAMS:
                self._streams.popitem(last=False)
        elif stream.length != length:
            raise ValueError(f"a stream's windows are {stream.length} tokens long; got a call for {length}")
        self._streams.move_to_end(id(rng))
        return stream

    def _next_pass(self, stream: _Stream, n_windows: int) -> None:
        allowed = self.settings["repeats"] + 1
        if stream.passes >= allowed:
            raise UserError(
                f"family {self.name!r}: the corpus's training documents hold {len(self.train):,} tokens "
                f"({n_windows:,} windows of {stream.length}) and this run has used them all "
                f"{'once' if allowed == 1 else f'{allowed} times'}: use a bigger corpus or smaller token budgets, "
                f"or set repeats = k to allow k more passes")
        stream.passes += 1
        stream.cursor = 0
        stream.key = int(stream.rng.integers(2**63))

    # ---- rank data (Fig. 3): empirical frequencies of the training tokens
    def unigram_rank(self) -> np.ndarray:
        counts = np.bincount(self.train, minlength=self.vocab_size)
        return np.sort(counts[counts > 0])[::-1] / len(self.train)

    def bigram_rank(self) -> np.ndarray:
        counts = bigram_counts(self.train, self.vocab_size).data
        return np.sort(counts)[::-1] / counts.sum()


def _gather(tokens: np.ndarray, window: np.ndarray, length: int) -> np.ndarray:
    return np.asarray(tokens[window[:, None] * length + np.arange(length)], dtype=np.int64)


def build_text(name: str, spec: dict) -> TextFamily:
    """Windows of a tokenised corpus (settings in language_spec)."""
    settings, derived = check_spec(name, spec)
    tokenizer, arrays = from_settings(settings, settings["held_out"])
    family = TextFamily(name, settings, tokenizer, arrays)
    check_derived(name, derived, family.spec() if derived else {})
    return family
