"""Tokenizers: the reference GPT-2 ids offline, and a trained byte-level BPE that is deterministic."""
import hashlib
import subprocess
import sys
import textwrap

import pytest

from scalingkit.errors import UserError
from scalingkit.families.corpus import open_corpus
from scalingkit.families.tokenizers import EOS, gpt2, tokenizer_for, train_bpe, train_bpe_json

FIXED_TEXT = ("the cat sat on the mat. the dog sat on the log. a cat and a dog met on a mat by a log. " * 40
              + "Ünïcödé, emoji 🙂 and tabs\tstill encode byte by byte.")


def test_gpt2_reference_ids_offline():
    tok = gpt2()
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.vocab_size == 50_257 and tok.eos_id == 50_256
    assert tok.encode(" the") == [262]
    text = "Ünïcödé, emoji 🙂, and  two spaces\n"
    assert tok.decode(tok.encode(text)) == text
    assert 50_256 not in tok.encode(f"text that mentions {EOS}")  # only the corpus reader inserts the separator


def test_bpe_trained_on_a_fixed_text_is_deterministic():
    first = train_bpe_json([FIXED_TEXT], 300)
    assert train_bpe_json([FIXED_TEXT], 300) == first
    # and in fresh processes, where hash seeds (Python's and the Rust hash maps') differ
    code = textwrap.dedent(f"""
        import hashlib
        from scalingkit.families.tokenizers import train_bpe_json
        print(hashlib.sha256(train_bpe_json([{FIXED_TEXT!r}], 300).encode()).hexdigest())
        """)
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"})
        assert out.stdout.strip() == hashlib.sha256(first.encode()).hexdigest()


def test_bpe_vocabulary_and_round_trip():
    tok = train_bpe([FIXED_TEXT], 300)
    assert tok.vocab_size == 300 and tok.name == "bpe300"
    ids = tok.encode("the cat sat on a log")
    assert len(ids) < len("the cat sat on a log") / 2  # merges were learnt
    assert max(ids) < 300 and tok.eos_id not in ids
    text = "bytes it never saw: ẞ 漢字 🙂"
    assert tok.decode(tok.encode(text)) == text
    with pytest.raises(UserError, match="at least 257"):
        train_bpe([FIXED_TEXT], 256)


def test_trained_tokenizer_is_cached_per_corpus(tmp_path):
    (tmp_path / "docs").mkdir()
    for i in range(30):
        (tmp_path / "docs" / f"{i:02d}.txt").write_text(FIXED_TEXT[i:] + f" document {i}")
    corpus = open_corpus(str(tmp_path / "docs"))
    tok = tokenizer_for({"bpe": 280}, corpus, 0.1, tmp_path / "cache")
    (saved,) = (tmp_path / "cache" / "tokenizers").glob("bpe280-*.json")
    stamp = saved.stat().st_mtime_ns
    again = tokenizer_for({"bpe": 280}, corpus, 0.1, tmp_path / "cache")
    assert again.fingerprint == tok.fingerprint and saved.stat().st_mtime_ns == stamp
    assert tokenizer_for("gpt2", corpus, 0.1, tmp_path / "cache") is gpt2()
