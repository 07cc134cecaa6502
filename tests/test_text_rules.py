"""The C++ caption counts and bad-alt-text rules equal their Python definitions exactly.

The definitions are fastcurate.kernels.text_reference (DataComp's ``len(text.split())`` and
``len(text)``, and the rules); here they are compared on tables, on hypothesis-generated Unicode
(every str.isspace() code point included), on invalid UTF-8, and on every real caption.
"""

from __future__ import annotations

import sys
import unicodedata

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastcurate import _core
from fastcurate.errors import InputError, InputTypeError
from fastcurate.kernels import text_reference as ref
from fastcurate.kernels.text_rules import (
    FLAG_INVALID_UTF8,
    FLAG_NULL,
    RULES,
    RuleConfig,
    TextRules,
    caption_counts,
    datacomp_caption_mask,
    first_failing,
)

SPACES = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]


@pytest.fixture(scope="module")
def rules() -> TextRules:
    return TextRules()


def _flags(texts, rules_obj=None):
    return (rules_obj or TextRules()).run(pa.array(texts, pa.string())).flags


# -- the code-point table ------------------------------------------------------------------------


def test_space_set_is_pythons():
    # The 29 code points str.split() splits on, \x1c-\x1f, \x85, \u2028 and \u3000 included.
    assert len(SPACES) == 29
    assert {"\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\xa0", "\u1680", "\u2028", "\u2029", "\u3000"} <= set(SPACES)
    for c in SPACES:
        assert _core.unicode_class(ord(c)) & 1, hex(ord(c))


@pytest.mark.slow
def test_class_table_equals_unicodedata():
    if _core.unicode_version() != unicodedata.unidata_version:
        pytest.skip(f"table is Unicode {_core.unicode_version()}, this Python has {unicodedata.unidata_version}")
    for cp in range(sys.maxunicode + 1):
        c = chr(cp)
        want = (
            (1 if c.isspace() else 0)
            | (2 if c.isalpha() else (4 if c.isalnum() else 0))
            | (8 if unicodedata.category(c).startswith("M") else 0)
        )
        assert _core.unicode_class(cp) == want, hex(cp)


# -- DataComp's counts ---------------------------------------------------------------------------

COUNT_TABLE = [
    "",
    " ",
    "a",
    "two words",
    "  leading and trailing  ",
    "tab\tand\nnewline\rcr\x0bvt\x0cff",
    "info\x1cseparators\x1d\x1e\x1fhere",
    "nel\x85nbsp\xa0ogham\u1680en\u2000hair\u200aline\u2028para\u2029nnbsp\u202fmmsp\u205fideo\u3000end",
    "zero\u200bwidth is not a space",
    "mongolian\u180evowel separator is not a space",
    "nul\x00is not a space",
    "caf\u00e9 \u65e5\u672c\u8a9e \U0001f600 emoji",
    "combining e\u0301 marks",
]


@pytest.mark.parametrize("text", COUNT_TABLE)
def test_counts_table(text):
    words, chars, null = caption_counts([text])
    assert words.tolist() == [len(text.split())]
    assert chars.tolist() == [len(text)]
    assert not null[0]


_ws = st.sampled_from(SPACES)
_text = st.lists(st.one_of(st.text(max_size=6), _ws, st.sampled_from(["a", "é", "日本", "\U0001f600", "\x00"])), max_size=30).map("".join)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.none(), _text, st.text()), max_size=40))
def test_counts_property(texts):
    words, chars, null = caption_counts(pa.array(texts, pa.string()))
    assert words.tolist() == [0 if t is None else len(t.split()) for t in texts]
    assert chars.tolist() == [0 if t is None else len(t) for t in texts]
    assert null.tolist() == [t is None for t in texts]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=20))
def test_invalid_utf8_counts_as_surrogateescape(blobs):
    stats = TextRules().run(pa.array(blobs, pa.binary()))
    for b, w, c, f in zip(blobs, stats.words, stats.chars, stats.flags):
        s = b.decode("utf-8", "surrogateescape")
        assert (w, c) == (len(s.split()), len(s))
        try:
            b.decode("utf-8")
            valid = True
        except UnicodeDecodeError:
            valid = False
        assert bool(f & FLAG_INVALID_UTF8) == (not valid)
        # Escaped bytes are neither letters nor spaces, so the rules see what Python would.
        assert int(f) & 31 == ref.rule_flags(s)


def test_arrow_layouts_agree():
    texts = ["a b c", None, "  x  ", "IMG_0042.JPG", "", "one two three four"] * 5
    arr = pa.array(texts, pa.string())
    want = TextRules().run(texts)
    for variant in (
        arr,
        arr.cast(pa.large_string()),
        pa.chunked_array([arr[:7], arr[7:]]),
        np.array(texts, dtype=object),
    ):
        got = TextRules().run(variant)
        assert got.words.tolist() == want.words.tolist()
        assert got.flags.tolist() == want.flags.tolist()
    sliced = arr.slice(3, 10)
    got = TextRules().run(sliced)
    assert got.flags.tolist() == want.flags[3:13].tolist()
    assert got.null.tolist() == [t is None for t in texts[3:13]]


def test_threads_do_not_change_the_result():
    rng = np.random.default_rng(0)
    words = ["img", "dsc", "0042", ".jpg", "stock photo", "the", "cat", "http://x.com", " ", "  ", "é"]
    texts = ["".join(rng.choice(words, size=rng.integers(0, 12))) for _ in range(40_000)]
    one = TextRules().run(texts, threads=1)
    many = TextRules().run(pa.array(texts), threads=3)
    assert np.array_equal(one.flags, many.flags)
    assert np.array_equal(one.words, many.words) and np.array_equal(one.chars, many.chars)


def test_datacomp_mask():
    texts = ["a b", "a b c", "ab cd", "abc def gh", None, "a\u3000b\u3000c", "a b\xa0c"]
    got = datacomp_caption_mask(texts).tolist()
    want = [t is not None and len(t.split()) > 2 and len(t) > 5 for t in texts]
    assert got == want
    assert datacomp_caption_mask(texts, words_above=0, chars_above=0).tolist() == [t is not None and len(t.split()) > 0 and len(t) > 0 for t in texts]
    with pytest.raises(InputTypeError):
        datacomp_caption_mask(texts, words_above=2.5)


# -- the rules -------------------------------------------------------------------------------------

RULE_TABLE = [
    # (caption, rules that fail)
    ("IMG_0042.JPG", {"filename", "boilerplate"}),
    ("DSC01234", {"filename", "boilerplate"}),
    ("image.png", {"filename", "boilerplate"}),
    ("P1010001.jpg", {"filename", "boilerplate"}),
    ("WhatsApp Image 2021-01-01 at 10.00.00", {"filename"}),
    ("Screen Shot 2019-08-01 at 4.55.12 PM.png", {"filename"}),
    ("IMG-20190101-WA0001.jpg", {"filename"}),
    ("7672-eco-cotton-culottes-87-lfs.jpg", {"filename"}),
    ("Fox Crochet Hat.jpg", set()),  # a description that happens to end in .jpg
    ("Robertson County, TX, sign IMG 2287.JPG", set()),
    ("https://upload.wikimedia.org/wikipedia/commons/a.jpeg", {"url", "filename"}),
    ("http://www.yarnspirations.com/patterns/do-the-twist-hat.html", {"url"}),
    ("rodosreport.gr", {"url"}),
    ("OpenWheelWorld.net Home", {"url"}),
    ("Belvoir Castle - geograph.org.uk - 626677", set()),
    ("e.g. a dog", set()),
    ("Stock Photo", {"boilerplate"}),
    ("Royalty Free Stock Photos", {"boilerplate"}),
    ("Rooster Royalty Free Stock Photos", set()),
    ("click here", {"boilerplate"}),
    ("Click here to enlarge", {"boilerplate"}),
    ("no description available", {"boilerplate"}),
    ("Untitled", {"boilerplate"}),
    ("untitled-1", {"boilerplate", "filename"}),
    ("image may contain: person, on stage", {"boilerplate"}),
    ("Google Image Result for http://www.artexpress.ws/a.jpg", {"boilerplate"}),
    ("Name: DSC_0294.jpg", {"boilerplate"}),
    ("a view from the home", set()),
    ("12345", {"non_letters"}),
    ("0.32893747091293335", {"non_letters"}),
    ("!!! ??? ...", {"non_letters"}),
    ("", {"non_letters"}),
    ("2000 BMW Z8 for sale 100745865", set()),
    ("shoes shoes shoes shoes", {"repeated"}),
    ("online chemistry molarity titration problem online chemistry molarity titration problem", {"repeated"}),
    ("a dog on the beach with a ball", set()),
    ("the cat and the dog and the bird and the fish", set()),
    ("日本語のキャプション", set()),
    ("हिन्दी में एक वाक्य", set()),
]


@pytest.mark.parametrize("text,failed", RULE_TABLE)
def test_rule_table(rules, text, failed):
    flags = int(rules.run([text]).flags[0])
    got = {name for i, name in enumerate(RULES) if flags >> i & 1}
    assert got == failed
    assert flags & 31 == ref.rule_flags(text)


def test_first_failing_and_masks(rules):
    s = rules.run(["IMG_0042.JPG", "http://a.com/x.jpg", "a good caption here", None])
    assert first_failing(s.flags).tolist() == [RULES.index("filename") + 1, RULES.index("url") + 1, 0, 0]
    assert s.failed("filename").tolist() == [True, True, False, False]
    assert s.null.tolist() == [False, False, False, True]
    assert int(s.flags[3]) == FLAG_NULL
    with pytest.raises(InputError):
        s.failed("nope")


_pieces = st.sampled_from(
    [
        "img", "IMG", "dsc", "_", "-", ".", "jpg", "JPG", "png", "0042", "1", "2019", " ", "  ", "\u3000",
        "http://", "https://", "www.", "example", ".com", ".co.uk", "/path", "stock", "photo", "Stock Photo",
        "royalty", "free", "click", "here", "image may contain", "untitled", "the", "a", "of", "cat", "dog",
        "whatsapp image", "at", "pm", "é", "日本", "\u0301", "!", "?", ":", "#", "\"", "(", ")", "screen shot",
        "no description available", "google image result for", "name", "x", "p",
    ]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.one_of(_pieces, st.text(max_size=3)), max_size=14).map("".join), min_size=1, max_size=20))
def test_rules_property(texts):
    got = TextRules().run(pa.array(texts)).flags
    assert [int(f) & 31 for f in got] == [ref.rule_flags(t) for t in texts]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.lists(_pieces, max_size=12).map("".join), min_size=1, max_size=10),
    st.integers(0, 4),
    st.floats(0, 1),
    st.integers(2, 10),
    st.floats(0, 1),
    st.integers(1, 8),
    st.sets(st.sampled_from(RULES)),
)
def test_rules_property_other_thresholds(texts, other, share, min_tok, dup, min_distinct, enabled):
    cfg = RuleConfig(
        rules=tuple(r for r in RULES if r in enabled),
        url_min_other_words=other,
        min_letter_share=share,
        repeat_min_tokens=min_tok,
        repeat_min_dup_share=dup,
        repeat_min_tokens_distinct=min_distinct,
        boilerplate_phrases=("photo", "stock photo", "click here", "free"),
        stopwords=("the", "a"),
    )
    got = TextRules(cfg).run(texts).flags
    assert [int(f) & 31 for f in got] == [ref.rule_flags(t, cfg) for t in texts]


@pytest.mark.slow
@pytest.mark.needs_shared
def test_rules_equal_reference_on_real_captions(laion_texts, cc3m_texts):
    for texts in (laion_texts, cc3m_texts):
        stats = TextRules().run(pa.array(texts))
        assert stats.words.tolist() == [len(t.split()) for t in texts]
        assert stats.chars.tolist() == [len(t) for t in texts]
        want = [ref.rule_flags(t) for t in texts]
        assert [int(f) for f in stats.flags] == want


def test_config_errors():
    with pytest.raises(InputError, match="no letters or digits"):
        TextRules(RuleConfig(boilerplate_phrases=("photo", "--")))
    with pytest.raises(InputError, match="extensions"):
        TextRules(RuleConfig(extensions=("jpg", "tar.gz")))
    with pytest.raises(InputError, match="min_letter_share"):
        TextRules(RuleConfig(min_letter_share=1.5))
    with pytest.raises(InputError, match="repeat_min_tokens"):
        TextRules(RuleConfig(repeat_min_tokens=1))
    with pytest.raises(InputError, match="unknown rule"):
        TextRules(RuleConfig(rules=("url", "spam")))
    with pytest.raises(InputTypeError):
        TextRules(RuleConfig(stopwords=("a", 3)))  # type: ignore[arg-type]
    with pytest.raises(InputTypeError):
        TextRules().run([1, 2])
    with pytest.raises(InputTypeError):
        TextRules().run(pa.array([1, 2]))
