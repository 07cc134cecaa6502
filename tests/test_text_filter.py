"""TextFilter gives each row the first failing reason, equal to a per-row Python reference built
from DataComp's own expressions, the rule definitions and the fasttext module."""

from __future__ import annotations

import pyarrow as pa
import pytest

from fastcurate.errors import InputError, InputTypeError
from fastcurate.kernels import text_reference as ref
from fastcurate.kernels.langid import bundled_model_path
from fastcurate.kernels.text_filter import TextFilter, TextFilterConfig
from fastcurate.kernels.text_reference import RULES, RuleConfig

fasttext = pytest.importorskip("fasttext", reason="the fasttext module (fasttext-predict) is the reference")


def reference_reason(text, model, words_above=2, chars_above=5, language="en", cfg=RuleConfig()):
    if text is None:
        return "null text"
    if len(text.split()) <= words_above:  # DataComp: len(x.split()) > 2
        return "too few words"
    if len(text) <= chars_above:  # DataComp: len(x) > 5
        return "too few characters"
    flags = ref.rule_flags(text, cfg)
    for i, name in enumerate(RULES):
        if flags >> i & 1:
            return name
    if language is not None:
        label = model.predict(text.replace("\n", " "))[0][0].split("__label__")[1]  # DataComp's get_language
        if label != language:
            return f"not {language}"
    return "ok"


@pytest.fixture(scope="module")
def ft():
    return fasttext.load_model(str(bundled_model_path()))


def test_table(ft):
    texts = ["a dog running on the beach", "IMG_0042.JPG", "un chien qui court sur la plage", None, "a b c",
             "ab cd", "http://example.com/a/b nice", "Stock Photo - Royalty Free", "shoes shoes shoes shoes",
             "this is\nan english caption"]
    r = TextFilter().classify(texts)
    assert [r.reasons[c] for c in r.codes] == [reference_reason(t, ft) for t in texts]
    assert r.keep.tolist() == [c == 0 for c in r.codes]
    assert r.counts()["ok"] == int(r.keep.sum())
    # Language ID ran only on the rows every other test kept.
    assert (r.language.codes[(r.codes > 0) & (r.codes < 10)] == -1).all()
    assert (r.language.codes[(r.codes == 0) | (r.codes == 10)] >= 0).all()


@pytest.mark.needs_shared
def test_real_captions(ft, laion_texts):
    texts = laion_texts[:3000]
    r = TextFilter().classify(pa.array(texts))
    got = [r.reasons[c] for c in r.codes]
    assert got == [reference_reason(t, ft) for t in texts]


def test_options(ft):
    texts = ["one two three", "ab cd ef", "un chien qui court sur la plage", "IMG_0042.JPG caption words here"]
    cfg = TextFilterConfig(words_above=1, chars_above=8, language="fr", rules=None, language_all_rows=True)
    r = TextFilter(cfg).classify(texts)
    want = [reference_reason(t, ft, 1, 8, "fr", RuleConfig(rules=())) for t in texts]
    assert [r.reasons[c] for c in r.codes] == want
    assert (r.language.codes >= 0).all()  # every row got a label
    r2 = TextFilter(TextFilterConfig(language=None)).classify(texts)
    assert r2.language is None
    with pytest.raises(InputError, match="xx"):
        TextFilter(TextFilterConfig(language="xx"))
    with pytest.raises(InputTypeError):
        TextFilter(TextFilterConfig(words_above=2.0))  # type: ignore[arg-type]
