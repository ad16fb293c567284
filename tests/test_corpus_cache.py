"""The tokenised-corpus cache: its content, reuse, and detection and rebuild of a corrupted cache."""
import numpy as np
import pytest

from scalingkit.families.corpus import is_held_out, open_corpus
from scalingkit.families.token_cache import tokenised
from scalingkit.families.tokenizers import gpt2


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    words = np.array("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split())
    for i in range(60):
        (folder / f"{i:03d}.txt").write_text(" ".join(rng.choice(words, 40 + i)) + ".\n")
    return open_corpus(str(folder))


def expected(corpus, tok, fraction):
    parts = {"train": [], "held_out": []}
    for doc_id, text in corpus.documents():
        parts["held_out" if is_held_out(doc_id, fraction) else "train"] += tok.encode(text) + [tok.eos_id]
    return parts


def test_cache_holds_the_split_token_stream_and_is_reused(corpus, tmp_path):
    tok = gpt2()
    arrays = tokenised(corpus, tok, 0.2, tmp_path / "cache", progress=False)
    want = expected(corpus, tok, 0.2)
    assert arrays.train.tolist() == want["train"] and arrays.held_out.tolist() == want["held_out"]
    assert arrays.train.dtype == np.uint16 and isinstance(arrays.train, np.memmap)
    assert arrays.meta["documents"]["train"] + arrays.meta["documents"]["held_out"] == 60
    assert 0 < arrays.meta["documents"]["held_out"] < 30
    (folder,) = (p for p in (tmp_path / "cache" / "tokens").iterdir() if p.is_dir())  # not the lock file
    stamp = (folder / "meta.json").stat().st_mtime_ns
    again = tokenised(corpus, tok, 0.2, tmp_path / "cache", progress=False)
    assert (folder / "meta.json").stat().st_mtime_ns == stamp  # read, not rebuilt
    assert np.array_equal(again.train, arrays.train)
    # other settings, another cache entry
    other = tokenised(corpus, tok, 0.4, tmp_path / "cache", progress=False)
    assert len(other.held_out) > len(arrays.held_out)


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "delete meta", "delete held_out"])
def test_corrupted_cache_is_detected_and_rebuilt(corpus, tmp_path, damage):
    tok = gpt2()
    good = tokenised(corpus, tok, 0.2, tmp_path / "cache", progress=False)
    want = (good.train.tolist(), good.held_out.tolist())
    del good  # drop the memory maps before damaging the files
    (folder,) = (p for p in (tmp_path / "cache" / "tokens").iterdir() if p.is_dir())
    train = folder / "train.bin"
    if damage == "flip a byte":
        data = bytearray(train.read_bytes())
        data[len(data) // 2] ^= 0xFF
        train.write_bytes(bytes(data))
    elif damage == "truncate":
        train.write_bytes(train.read_bytes()[:-2])
    elif damage == "delete meta":
        (folder / "meta.json").unlink()
    else:
        (folder / "held_out.bin").unlink()
    with pytest.warns(UserWarning, match="corrupted.*rebuilding"):
        rebuilt = tokenised(corpus, tok, 0.2, tmp_path / "cache", progress=False)
    assert (rebuilt.train.tolist(), rebuilt.held_out.tolist()) == want
