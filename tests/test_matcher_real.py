"""Equality with MetaCLIP's pyahocorasick reference on every real caption in ../shared/data,
against metadata built from WordNet 3.0 plus frequent caption words and bigrams."""

from __future__ import annotations

import collections
import warnings

import pyarrow as pa
import pytest

import fastcurate as fc

from _metaclip_reference import build_automaton, match_with

pytestmark = pytest.mark.needs_shared
ahocorasick = pytest.importorskip("ahocorasick", reason="pyahocorasick is the MetaCLIP reference")


@pytest.fixture(scope="module")
def metadata(wordnet_entries, laion_texts, cc3m_texts):
    # WordNet synsets plus the frequent unigrams and bigrams of the captions (MetaCLIP's recipe in
    # miniature), including capitalised and punctuated forms, so that many entries really match.
    words = collections.Counter()
    bigrams = collections.Counter()
    for t in laion_texts + cc3m_texts:
        if t is None:
            continue
        toks = t.split(" ")
        words.update(toks)
        bigrams.update(zip(toks, toks[1:]))
    extra = [w for w, c in words.most_common(3000) if w]
    extra += [f"{a} {b}" for (a, b), c in bigrams.most_common(2000) if a and b]
    seen = set()
    out = []
    for e in wordnet_entries + extra:
        if e not in seen:
            seen.add(e)
            out.append(e)
    return out


@pytest.fixture(scope="module")
def matcher(metadata):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fc.MatcherWarning)
        return fc.Matcher(metadata)


def _reference(metadata, texts):
    automaton = build_automaton(metadata)
    return [[] if t is None else match_with(automaton, t) for t in texts]


@pytest.mark.parametrize("corpus", ["laion", "cc3m"])
def test_equals_pyahocorasick_on_real_captions(corpus, metadata, matcher, laion_texts, cc3m_texts):
    texts = laion_texts if corpus == "laion" else cc3m_texts
    expected = _reference(metadata, texts)
    n_matches = sum(len(e) for e in expected)
    assert n_matches > len(texts)  # the metadata really matches: this is not a vacuous comparison
    for threads in (1, 2, 3):
        got = matcher.match(pa.array(texts, type=pa.string()), threads=threads)
        assert got.to_lists() == expected, f"threads={threads}"
    assert matcher.match(texts).to_lists() == expected


def test_case_insensitive_equals_lowercased_reference(metadata, laion_texts):
    # For ASCII-only captions and entries, case-insensitive matching equals matching lower-cased
    # text against lower-cased entries with the last id of each folded key.
    texts = [t for t in laion_texts if t is not None and t.isascii()][:3000]
    ents = [e for e in metadata if e.isascii()]
    folded = [e.lower() for e in ents]
    expected = _reference(folded, [t.lower() for t in texts])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fc.MatcherWarning)
        m = fc.Matcher(ents, case_sensitive=False)
    assert m.match(texts).to_lists() == expected


def test_saved_matcher_equals_built(tmp_path, matcher, cc3m_texts):
    path = tmp_path / "wordnet.fcm"
    matcher.save(path)
    loaded = fc.Matcher.load(path)
    a = matcher.match(cc3m_texts)
    b = loaded.match(cc3m_texts)
    assert (a.offsets == b.offsets).all() and (a.ids == b.ids).all()
