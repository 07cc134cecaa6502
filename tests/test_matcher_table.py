"""Table tests: (entries, text, expected ids) for every trap of MetaCLIP's matching semantics,
run under every input layout and thread count, and checked against the naive reference too."""

from __future__ import annotations

import warnings

import pytest

import fastcurate as fc
from fastcurate.kernels.reference import metaclip_match, substring_find_all

from _matcher_inputs import INPUT_KINDS

# (entries, text, expected ids in metaclip mode, case-sensitive)
METACLIP_TABLE = [
    # whole pieces only
    (["cat"], "a cat sat", [0]),
    (["cat"], "cats", []),
    (["cat"], "tomcat", []),
    (["cat"], "cat", [0]),
    (["cat"], "cat,", [0]),
    (["cat"], "cat.", [0]),
    (["cat"], "(cat", []),
    (["cat"], "cat's", []),
    (["cat"], "a cat!", [0]),
    (["cat"], "cat?dog", [0]),
    (["cat"], "x;cat:y", [0]),
    (["cat"], "`cat`", [0]),
    # case
    (["Cat"], "a cat", []),
    (["cat"], "A CAT", []),
    # punctuation entries and entries that hold punctuation
    ([","], "a, b", [0]),
    ([","], "a b", []),
    (["cat , dog"], "cat,dog", [0]),
    (["cat , dog"], "cat, dog", []),
    (["cat ,  dog"], "cat, dog", [0]),
    (["u.s."], "the u.s. army", []),
    (["u . s ."], "the u.s. army", [0]),
    (["e.g"], "e.g. this", []),
    (["."], "end.", [0]),
    (["!"], "wow!!", [0]),
    (["! !"], "wow!!", []),
    (["!  !"], "wow!!", [0]),
    # tab, CR, LF become spaces in the text; entries holding them never match
    (["a b"], "a\tb", [0]),
    (["a b"], "a\nb", [0]),
    (["a b"], "a\r\nb", []),
    (["a  b"], "a\r\nb", [0]),
    (["a\tb"], "a\tb", []),
    (["a\nb"], "a b", []),
    # consecutive spaces are significant
    (["a b"], "a  b", []),
    (["a  b"], "a  b", [0]),
    (["a b"], "a b", [0]),
    ([" cat"], "a  cat", [0]),
    ([" cat"], "a cat", []),
    (["cat "], "cat  dog", [0]),
    ([" cat"], " cat", [0]),
    ([" cat"], ",cat", []),
    ([" cat"], "a, cat", [0]),
    (["cat "], "cat,", []),
    (["cat "], "cat ,", [0]),
    (["cat "], "cat", []),
    # overlapping entries all match
    (["new york", "york", "new york city", "city", "new"], "new york city", [0, 1, 2, 3, 4]),
    (["a a", "a"], "a a a", [0, 1]),
    (["b c", "a b c d", "c"], "a b c d", [0, 1, 2]),
    (["york city", "new york"], "new york city", [0, 1]),
    # duplicates keep the last id
    (["cat", "dog", "cat"], "cat dog", [1, 2]),
    (["cat", "cat", "cat"], "cat", [2]),
    # the result is a set
    (["cat"], "cat cat cat, cat.", [0]),
    # unicode: boundaries are ASCII, so bytes equal code points
    (["café"], "un café, merci", [0]),
    (["日本"], "日本 語", [0]),
    (["日本"], "日本語", []),
    (["naïve"], "NAÏVE naïve", [0]),
    # empty and whitespace-only texts
    (["cat"], "", []),
    (["cat"], "   ", []),
    # long pieces (more than 8 bytes: hashed and compared in several words)
    (["internationalization"], "internationalization rocks", [0]),
    (["internationalization"], "internationalizatioN rocks", []),
    (["internationalization"], "internationalizations", []),
    (["supercalifragilisticexpialidocious word"], "a supercalifragilisticexpialidocious word", [0]),
    (["supercalifragilisticexpialidocious word"], "a supercalifragilisticexpialidociouz word", []),
]

CASE_INSENSITIVE_TABLE = [
    (["Cat"], "a CAT sat", [0]),
    (["cat"], "Cat.", [0]),
    (["NEW York"], "new YORK", [0]),
    (["cat", "CAT"], "cat", [1]),  # same key after folding: the last id wins
    (["ÉCOLE"], "école", []),  # ASCII folding only
    (["internationalization"], "INTERNATIONALIZATION", [0]),
]

THREADS = [1, 2, 4]


def _check(entries, text, expected, case_sensitive=True):
    assert metaclip_match(entries, text, case_sensitive) == expected, "the table disagrees with the reference"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fc.MatcherWarning)
        m = fc.Matcher(entries, mode="metaclip", case_sensitive=case_sensitive)
    texts = [None, text, "", text]
    for kind, make in INPUT_KINDS.items():
        for threads in THREADS:
            r = m.match(make(texts), threads=threads)
            assert r.to_lists() == [[], expected, [], expected], (kind, threads)


@pytest.mark.parametrize("entries,text,expected", METACLIP_TABLE)
def test_metaclip_table(entries, text, expected, simd_mode):
    _check(entries, text, expected)


@pytest.mark.parametrize("entries,text,expected", CASE_INSENSITIVE_TABLE)
def test_case_insensitive_table(entries, text, expected, simd_mode):
    _check(entries, text, expected, case_sensitive=False)


def test_long_texts_cross_vector_boundaries(simd_mode):
    """Pieces that straddle the 16-byte blocks of the vectorised scanner, at every alignment."""
    entries = ["cat", "new york", ",", "a  b", "internationalization"]
    m = fc.Matcher(entries)
    for shift in range(0, 20):
        text = "x" * shift + "a cat,new york  internationalization. a  b!" * 3
        assert m.match([text]).to_lists() == [metaclip_match(entries, text)], shift


def test_table_in_one_matcher():
    """All table rows at once in one big matcher: ids shift, answers must not interfere."""
    entries, texts, expected = [], [], []
    for ents, text, exp in METACLIP_TABLE:
        entries.extend(ents)
        texts.append(text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fc.MatcherWarning)
        m = fc.Matcher(entries)
    expected = [metaclip_match(entries, t) for t in texts]
    for threads in THREADS:
        assert m.match(texts, threads=threads).to_lists() == expected


SUBSTRING_TABLE = [
    (["he", "she", "his", "hers"], "ushers", [(0, 2, 4), (1, 1, 4), (3, 2, 6)]),
    (["a", "aa", "aaa"], "aaa", [(0, 0, 1), (0, 1, 2), (0, 2, 3), (1, 0, 2), (1, 1, 3), (2, 0, 3)]),
    (["cat"], "tomcats", [(0, 3, 6)]),
    (["cat", "cat"], "cat", [(0, 0, 3), (1, 0, 3)]),
    (["é"], "café", [(0, 3, 5)]),
    (["abc"], "ab", []),
    ([" "], "a b", [(0, 1, 2)]),
]


@pytest.mark.parametrize("entries,text,expected", SUBSTRING_TABLE)
def test_substring_table(entries, text, expected):
    assert substring_find_all(entries, text.encode()) == expected
    m = fc.Matcher(entries, mode="substring")
    for kind, make in INPUT_KINDS.items():
        for threads in THREADS:
            spans = m.find_all(make([text, None, text]), threads=threads)
            assert sorted(spans[0]) == expected and spans[1] == [] and sorted(spans[2]) == expected, kind
            ids = m.match(make([text]), threads=threads)
            assert ids.to_lists() == [sorted({i for i, _, _ in expected})]


def test_substring_case_insensitive():
    m = fc.Matcher(["Cat", "DOG"], mode="substring", case_sensitive=False)
    assert sorted(m.find_all(["a CAT and a dog"])[0]) == [(0, 2, 5), (1, 12, 15)]


def test_find_all_needs_substring_mode():
    m = fc.Matcher(["cat"])
    with pytest.raises(fc.InputError, match="substring"):
        m.find_all(["cat"])
