"""Property tests: the C++ matcher against the naive reference of the definition in docs/curate.md, on
entries and texts drawn from an alphabet dense in the traps (spaces, the seven punctuation
characters, tab/CR/LF, case, multi-byte UTF-8)."""

from __future__ import annotations

import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastcurate as fc
from fastcurate import _core
from fastcurate.kernels.reference import metaclip_match, substring_find_all

ALPHABET = ["a", "b", "A", "B", "c", " ", " ", ",", ".", ";", ":", "?", "!", "`", "\t", "\n", "\r", "é", "日", "x"]

word = st.text(alphabet=["a", "b", "A", "c", "é"], min_size=1, max_size=3)
# Entries mostly look like real ones (words joined by spaces, sometimes punctuation tokens), and
# sometimes are arbitrary strings over the trap alphabet.
entry = st.one_of(
    st.lists(st.one_of(word, st.sampled_from([",", ".", "!", "`"])), min_size=1, max_size=3).map(" ".join),
    st.text(alphabet=ALPHABET, min_size=1, max_size=6),
)
entries_st = st.lists(entry, min_size=1, max_size=12)
text_st = st.text(alphabet=ALPHABET, max_size=60)
texts_st = st.lists(text_st, min_size=1, max_size=8)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _matcher(entries, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fc.MatcherWarning)
        return fc.Matcher(entries, **kw)


@SETTINGS
@given(entries_st, texts_st)
def test_metaclip_equals_reference(entries, texts):
    m = _matcher(entries)
    expected = [metaclip_match(entries, t) for t in texts]
    assert m.match(texts, threads=1).to_lists() == expected
    _core.set_simd(False)
    try:
        assert m.match(texts, threads=1).to_lists() == expected
    finally:
        _core.set_simd(True)


@SETTINGS
@given(entries_st, texts_st)
def test_metaclip_case_insensitive_equals_reference(entries, texts):
    m = _matcher(entries, case_sensitive=False)
    expected = [metaclip_match(entries, t, case_sensitive=False) for t in texts]
    assert m.match(texts, threads=2).to_lists() == expected


@SETTINGS
@given(st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=4), min_size=1, max_size=10), texts_st, st.booleans())
def test_substring_equals_reference(entries, texts, case_sensitive):
    m = _matcher(entries, mode="substring", case_sensitive=case_sensitive)
    spans = m.find_all(texts)
    ids = m.match(texts)
    for i, t in enumerate(texts):
        expected = substring_find_all(entries, t.encode(), case_sensitive)
        assert sorted(spans[i]) == expected
        assert ids[i].tolist() == sorted({e[0] for e in expected})


@SETTINGS
@given(entries_st, texts_st)
def test_save_load_roundtrip(tmp_path_factory, entries, texts):
    m = _matcher(entries)
    path = tmp_path_factory.mktemp("m") / "m.fcm"
    m.save(path)
    m2 = fc.Matcher.load(path)
    assert m2.entries == entries
    assert m2.match(texts).to_lists() == m.match(texts).to_lists()
