"""Corpora: user folders (.txt, .jsonl, .parquet) in a fixed order, the held-out split, the embedded corpus."""
import collections
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scalingkit.errors import UserError
from scalingkit.families import embedded
from scalingkit.families.corpus import is_held_out, open_corpus


def test_folder_of_txt_jsonl_parquet_in_sorted_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_text("last file")
    (tmp_path / "a.txt").write_text("first file")
    (tmp_path / "b" / "m.jsonl").write_text(json.dumps({"body": "one"}) + "\n\n" + json.dumps({"body": "two"}) + "\n")
    pq.write_table(pa.table({"body": ["p0", None, "p2"], "other": [1, 2, 3]}), tmp_path / "b" / "n.parquet")
    (tmp_path / "notes.md").write_text("ignored: not a corpus format")
    corpus = open_corpus(str(tmp_path), text_field="body")
    docs = list(corpus.documents())
    assert docs == [("a.txt", "first file"), ("b/m.jsonl:1", "one"), ("b/m.jsonl:3", "two"),
                    ("b/n.parquet:0", "p0"), ("b/n.parquet:1", ""), ("b/n.parquet:2", "p2"),
                    ("b/z.txt", "last file")]
    assert list(corpus.documents()) == docs  # a second pass reads the same documents in the same order
    # the fingerprint follows the files: editing one changes it
    before = corpus.fingerprint
    (tmp_path / "a.txt").write_text("first file, edited")
    assert open_corpus(str(tmp_path), text_field="body").fingerprint != before


def test_bad_corpora_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        open_corpus(str(tmp_path / "missing"))
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(UserError, match=r"\.txt, \.jsonl or \.parquet"):
        open_corpus(str(tmp_path / "x.csv"))
    (tmp_path / "d.jsonl").write_text(json.dumps({"content": "x"}) + "\n")
    with pytest.raises(UserError, match="line 1.*'text'"):
        list(open_corpus(str(tmp_path / "d.jsonl")).documents())
    pq.write_table(pa.table({"content": ["x"]}), tmp_path / "p.parquet")
    with pytest.raises(UserError, match="no column 'text'"):
        list(open_corpus(str(tmp_path / "p.parquet")).documents())


def test_held_out_split_depends_on_the_id_alone():
    ids = [f"doc/{i}" for i in range(20_000)]
    held = [d for d in ids if is_held_out(d, 0.05)]
    assert len(held) == pytest.approx(1000, abs=4 * (20_000 * 0.05 * 0.95) ** 0.5)
    assert held == [d for d in ids[::-1] if is_held_out(d, 0.05)][::-1]  # order and neighbours do not matter
    assert set(held) <= {d for d in ids if is_held_out(d, 0.1)}  # a larger fraction only adds documents


def test_embedded_corpus_documents():
    corpus = open_corpus("embedded")
    counts, chars, first = collections.Counter(), 0, {}
    for doc_id, text in corpus.documents():
        source = doc_id.split("/")[0]
        counts[source] += 1
        chars += len(text)
        first.setdefault(source, (doc_id, text))
    assert counts == {"shakespeare": 42, "bible": 1189, "austen": 269}
    assert chars > 13_000_000
    assert first["bible"][0] == "bible/Genesis/1" and "In the beginning God created" in first["bible"][1]
    assert first["austen"][0] == "austen/emma/001" and "Emma Woodhouse" in first["austen"][1]
    assert first["shakespeare"][0] == "shakespeare/alls_well_that_ends_well"
    assert corpus.fingerprint == open_corpus("embedded").fingerprint


def test_embedded_fetch_is_a_no_op_once_there():
    root = embedded.corpus_dir()
    stamp = (root / embedded.MANIFEST).stat().st_mtime_ns
    assert embedded.fetch(root) == root  # a fetch would rewrite the manifest last
    assert (root / embedded.MANIFEST).stat().st_mtime_ns == stamp


def test_missing_embedded_corpus_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALINGKIT_CORPUS", str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="make corpus"):
        open_corpus("embedded")
