"""MetaCLIP metadata builder and IO."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest

from fastcurate.errors import FormatError, InputError, InputTypeError
from fastcurate.metadata import (
    bigram_entries,
    build_metadata,
    default_metadata_path,
    load_metadata,
    load_wordnet_entries,
    save_metadata,
    title_entries,
    unigram_entries,
)

WORDNET = Path("/usr/share/wordnet")
needs_wordnet = pytest.mark.skipif(not (WORDNET / "data.noun").exists(),
                                   reason="WordNet 3.0 not installed (apt-get install wordnet-base)")


@needs_wordnet
def test_wordnet_entries_like_nltk_synset_names():
    w = load_wordnet_entries()
    assert len(w) == 117659  # WordNet 3.0 synsets: 82115 n + 13767 v + 18156 a/s + 3621 r
    s = set(w)
    assert {"dog", "cat", "able", "new york", "united states", "ice cream", "golden retriever"} <= s
    # NLTK's Synset.name() lower-cases the first lemma and strips adjective markers
    assert "paris" in s and "Paris" not in s
    assert not any("(" in e and e.endswith(")") and e[-3:] in ("(a)", "(p)") for e in w)
    assert not any("_" in e for e in w)
    # cut at the first dot, like MetaCLIP's name[:name.find('.')]
    assert not any("." in e for e in w)
    raw = load_wordnet_entries(lowercase=False, cut_at_dot=False)
    assert "Paris" in raw and any("." in e for e in raw)


@needs_wordnet
def test_shipped_default_equals_fresh_build():
    built = build_metadata()
    assert load_metadata() == built
    assert built[:100] == [str(i) for i in range(100)]
    assert len(built) == len(set(built))
    assert default_metadata_path().stat().st_size < 1_000_000
    lic = default_metadata_path().parent / "WORDNET_LICENSE"
    assert "WordNet 3.0 Copyright 2006 by Princeton University" in lic.read_text()


def test_default_metadata_loads_without_wordnet():
    e = load_metadata()
    assert len(e) > 80000 and "dog" in e


def test_unigrams_from_counts_and_corpus(tmp_path):
    f = tmp_path / "uni.txt"
    f.write_text("cat 150\ndog 99\nbird 100\n")
    assert unigram_entries(f) == ["cat", "bird"]
    g = tmp_path / "1gram.txt.gz"
    with gzip.open(g, "wt") as h:
        h.write("150\tcat\n5\tdog\n")
    assert unigram_entries(g) == ["cat"]
    corpus = tmp_path / "c.txt"
    corpus.write_text("a b a\nb a c\n")
    assert unigram_entries(corpus=corpus, min_count=2) == ["a", "b"]
    bad = tmp_path / "bad.txt"
    bad.write_text("cat many\n")
    with pytest.raises(FormatError, match="bad.txt:1"):
        unigram_entries(bad)


def test_bigram_pmi_nltk_formula(tmp_path):
    uni = tmp_path / "1gram.txt"
    uni.write_text("1000000\tthe\n10\tnew\n10\tyork\n5\trare\n")
    bi = tmp_path / "2gram.txt"
    bi.write_text("9\tnew\tyork\n100\tthe\tnew\n3\tnew\tmissing\n")
    total = 1000000 + 10 + 10 + 5
    pmi_ny = math.log2(9 * total) - math.log2(10 * 10)
    pmi_tn = math.log2(100 * total) - math.log2(1000000 * 10)
    assert bigram_entries(uni, bi, min_pmi=pmi_ny) == ["new york"]
    assert bigram_entries(uni, bi, min_pmi=pmi_ny + 1e-9) == []
    assert set(bigram_entries(uni, bi, min_pmi=min(pmi_ny, pmi_tn))) == {"new york", "the new"}
    # corpus: PMI over adjacent tokens within a line
    corpus = tmp_path / "c.txt"
    corpus.write_text("x y\n" + "z z z z\n" * 10)
    assert bigram_entries(corpus=corpus, min_pmi=4) == ["x y"]


def test_titles(tmp_path):
    j = tmp_path / "title_counts.json"
    j.write_text(json.dumps({"Hot_dog": 70, "Rare page": 69, "Paris": 1000}))
    assert title_entries(j) == ["Hot dog", "Paris"]
    t = tmp_path / "titles.tsv"
    t.write_text("New York City\t500\nX\t3\n")
    assert title_entries(t) == ["New York City"]
    (tmp_path / "bad.tsv").write_text("no views here\n")
    with pytest.raises(FormatError, match="bad.tsv:1"):
        title_entries(tmp_path / "bad.tsv")


def test_build_order_dedup_and_forbidden(tmp_path):
    uni = tmp_path / "uni.txt"
    uni.write_text("zebra 500\ncat 500\n, 1000\n5 200\n")
    bi = tmp_path / "bi.txt"
    bi.write_text("1\tzebra\tcat\n")
    titles = tmp_path / "t.json"
    titles.write_text(json.dumps({"cat": 100, "Zebra crossing": 80}))
    e = build_metadata(False, unigram_counts=uni, bigram_counts=bi, title_counts=titles, min_pmi=-100)
    assert e[:100] == [str(i) for i in range(100)]
    assert e[100:] == ["zebra", "cat", "zebra cat", "Zebra crossing"]  # "," dropped, "5" and "cat" dedup'd
    assert build_metadata(False, unigram_counts=uni, include_numbers=False) == ["zebra", "cat", "5"]
    assert len(build_metadata(False, unigram_counts=uni, max_entries=101)) == 101
    with pytest.raises(InputError, match="no metadata source"):
        build_metadata(False, include_numbers=False)
    with pytest.raises(InputError, match="wordnet-base"):
        build_metadata(tmp_path)


@pytest.mark.parametrize("name", ["m.json", "m.txt", "m.json.gz", "m.txt.gz"])
def test_save_load_roundtrip(tmp_path, name):
    entries = ["dog", "hot dog", "é", "a,b", "dog"]  # duplicates kept: ids are positions
    p = save_metadata(entries, tmp_path / name)
    assert load_metadata(p) == entries
    before = p.read_bytes()
    save_metadata(entries, p)
    assert p.read_bytes() == before  # deterministic (gzip mtime 0)
    assert list(tmp_path.glob(".*tmp")) == []


def test_plain_text_crlf_and_empty(tmp_path):
    (tmp_path / "crlf.txt").write_bytes(b"cat\r\nhot dog\r\n")
    assert load_metadata(tmp_path / "crlf.txt") == ["cat", "hot dog"]
    (tmp_path / "empty.txt").write_bytes(b"")
    assert load_metadata(tmp_path / "empty.txt") == []


def test_metadata_json_is_metaclip_format(tmp_path):
    p = save_metadata(["a", "b c"], tmp_path / "metadata.json")
    assert json.loads(p.read_text()) == ["a", "b c"]


def test_load_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_metadata(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text('{"a": 1}')
    with pytest.raises(FormatError, match="JSON array"):
        load_metadata(tmp_path / "x.json")
    (tmp_path / "y.json").write_text('["a", 3]')
    with pytest.raises(FormatError, match="entry 1"):
        load_metadata(tmp_path / "y.json")
    (tmp_path / "z.json").write_text('["a", ')
    with pytest.raises(FormatError, match="not valid JSON"):
        load_metadata(tmp_path / "z.json")
    with pytest.raises(InputError, match="line break"):
        save_metadata(["a\nb"], tmp_path / "m.txt")


def test_entries_of_takes_a_path_or_any_sequence(tmp_path):
    """A stage's metadata argument: None (the shipped default), a str or PathLike path, or any
    sequence of entries (a list, a tuple, a numpy array of strings), whose items become str."""
    import numpy as np

    from fastcurate.metadata import entries_of
    from fastcurate.stages.curate.stage import CurateStage

    p = tmp_path / "m.json"
    save_metadata(["red dress", "hat"], p)
    assert entries_of(p) == entries_of(str(p)) == ["red dress", "hat"]
    assert entries_of(("red dress", "hat")) == entries_of(np.array(["red dress", "hat"])) == ["red dress", "hat"]
    assert entries_of(None) == load_metadata()
    assert CurateStage(metadata=np.array(["red dress", "hat"])).entries == ["red dress", "hat"]
    assert CurateStage(metadata=p).metadata_name == str(p)
    assert CurateStage(metadata=["hat"]).metadata_name == "<list>"
    for bad in (b"m.json", 3):
        with pytest.raises(InputTypeError, match="file path or a sequence"):
            entries_of(bad)
