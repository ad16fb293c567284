"""Sweep keys of the language families (bigram, text, generated): defaults, checks, one-line UserErrors naming the key.

    corpus      "embedded" (default) or a path: a .txt / .jsonl / .parquet file or a folder of them
    text_field  the text's field in .jsonl and column in .parquet (default "text")
    tokenizer   "gpt2" (default) or {bpe = V}: a byte-level BPE of V tokens (<|endoftext|> included, V >= 257)
                trained on the corpus's training documents
bigram only:
    prune       bigrams seen at most this many times are dropped (default 5, the paper's choice; 0 keeps all)
text and generated:
    held_out    fraction of documents held out for evaluation, chosen by a hash of the document id (default 0.05)
    repeats     how many extra passes over the training documents a run may make (default 0: one epoch, and a
                run that needs more tokens fails with a clear error)
generated only (the generator, trained on the corpus, and its sample pools; see generated.py):
    layers, width        the generator's shape (defaults 2 and 64, CPU-sized; the paper: 1, 2, 4 layers, width 4096)
    generator_tokens, lr, batch   its training (defaults 1,000,000 tokens, 3e-3, 32 sequences)
    context     the length of the sequences it writes, minus one; must equal the sweep's context (default 50)
    seed        generator initialisation, training order and sampling (default 0)
    pool_tokens, eval_sequences   how much it writes for training runs and for evaluation (1,000,000 and 512)
"""
from __future__ import annotations

import math
import numbers

from scalingkit.errors import UserError
from scalingkit.families.graphs import check_derived
from scalingkit.families.tokenizers import MIN_BPE_VOCAB

REQUIRED = object()
DEFAULT_HELD_OUT = 0.05


class _Bad(Exception):
    pass


def _string(v):
    if isinstance(v, str) and v:
        return v
    raise _Bad("a non-empty string")


def _count(v):
    if isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0:
        return int(v)
    raise _Bad("an integer >= 0")


def _fraction(v):
    if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and 0 < v < 1:
        return float(v)
    raise _Bad("a fraction strictly between 0 and 1")


def _positive(v):
    if isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1:
        return int(v)
    raise _Bad("an integer >= 1")


def _rate(v):
    if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0:
        return float(v)
    raise _Bad("a real number > 0")


MAX_BPE_VOCAB = 2**20  # the GPT-2 BPE has 50,257 tokens; the BPE trainer aborts the whole process near 1e9


def _tokenizer(v):
    if v == "gpt2":
        return v
    if isinstance(v, dict) and set(v) == {"bpe"}:
        n = v["bpe"]
        if isinstance(n, numbers.Integral) and not isinstance(n, bool) and MIN_BPE_VOCAB <= n <= MAX_BPE_VOCAB:
            return {"bpe": int(n)}
    raise _Bad(f'"gpt2" or {{bpe = V}} with an integer V from {MIN_BPE_VOCAB} (256 bytes and <|endoftext|>) to '
               f'{MAX_BPE_VOCAB:,}')


COMMON = {"kind": (REQUIRED, _string), "corpus": ("embedded", _string), "text_field": ("text", _string),
          "tokenizer": ("gpt2", _tokenizer)}
SCHEMAS = {
    "bigram": {**COMMON, "prune": (5, _count)},
    "text": {**COMMON, "held_out": (DEFAULT_HELD_OUT, _fraction), "repeats": (0, _count)},
    "generated": {**COMMON, "held_out": (DEFAULT_HELD_OUT, _fraction), "repeats": (0, _count),
                  "layers": (2, _positive), "width": (64, _positive), "generator_tokens": (1_000_000, _positive),
                  "lr": (3e-3, _rate), "batch": (32, _positive), "context": (50, _positive), "seed": (0, _count),
                  "pool_tokens": (1_000_000, _positive), "eval_sequences": (512, _positive)},
}
# keys spec() adds: accepted on input (so a stored spec rebuilds) and checked against the built family
DERIVED = {
    "bigram": {"vocab_size", "transitions", "empty_rows", "recurrent_states", "entropy_rate", "corpus_tokens",
               "distinct_tokens", "distinct_bigrams", "kept_fraction", "emptied_by_pruning", "traps", "corpus_fingerprint",
               "tokenizer_fingerprint"},
    "text": {"vocab_size", "train_tokens", "held_out_tokens", "train_documents", "held_out_documents",
             "corpus_fingerprint", "tokenizer_fingerprint"},
    "generated": {"vocab_size", "train_tokens", "held_out_tokens", "corpus_fingerprint", "tokenizer_fingerprint",
                  "generator_key", "generator_params", "generator_train_loss", "generator_eval_loss",
                  "loss_floor_estimate"},
}


def check_spec(name: str, spec: dict) -> tuple[dict, dict]:
    """(settings with defaults filled in, derived keys given) or a UserError naming the family and the key."""
    kind = spec["kind"]
    schema = SCHEMAS[kind]
    settings, derived = {}, {}
    for key, value in spec.items():
        if key in schema:
            try:
                settings[key] = schema[key][1](value)
            except _Bad as exc:
                raise UserError(f"family {name!r}: key {key!r} must be {exc} (got {value!r})") from None
        elif key in DERIVED[kind]:
            derived[key] = value
        else:
            raise UserError(f"family {name!r}: unknown key {key!r} (allowed: {', '.join(sorted(schema))})")
    for key, (default, _) in schema.items():
        if key not in settings:
            if default is REQUIRED:
                raise UserError(f"family {name!r}: missing key {key!r}")
            settings[key] = default
    return {key: settings[key] for key in schema}, derived


__all__ = ["DEFAULT_HELD_OUT", "check_derived", "check_spec"]
