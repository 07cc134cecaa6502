"""The C++ fastText inference equals the fasttext module's predict, label and float32 probability.

Compared on the bundled lid.176.ftz (real captions, hypothesis Unicode) and on small synthetic
models written here in fastText's file format, which reach the code paths lid.176.ftz does not
(dense input, unpruned buckets, word n-grams, no norm quantization, version 11).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastcurate import _core
from fastcurate.errors import FormatError, InputError, ModelError
from fastcurate.kernels.langid import LanguageIdentifier, bundled_model_path

fasttext = pytest.importorskip("fasttext", reason="the fasttext module (fasttext-predict) is the reference")


@pytest.fixture(scope="module")
def lid() -> LanguageIdentifier:
    return LanguageIdentifier()


@pytest.fixture(scope="module")
def ref_model():
    return fasttext.load_model(str(bundled_model_path()))


def _reference(model, texts: Sequence[Optional[str]]) -> Tuple[List[Optional[str]], List[float]]:
    labels, probs = [], []
    for t in texts:
        if t is None:
            labels.append(None)
            probs.append(float("nan"))
            continue
        l, p = model.predict(t.replace("\n", " "))  # exactly DataComp's call
        labels.append(l[0] if l else None)
        probs.append(float(p[0]) if l else float("nan"))
    return labels, probs


def _assert_equal(got_codes, got_probs, raw_labels, want_labels, want_probs):
    got = [raw_labels[c] if c >= 0 else None for c in got_codes.tolist()]
    assert got == want_labels
    want = np.array(want_probs, dtype=np.float32)
    assert np.array_equal(got_probs, want, equal_nan=True)


def test_bundled_model(lid):
    assert len(lid.labels) == 176 and lid.labels[0] == "en"
    assert lid.path.name == "lid.176.ftz"
    assert lid.memory_bytes > 0


TABLE = [
    "a dog running on the beach",
    "un chien qui court sur la plage",
    "ein Hund, der am Strand läuft",
    "собака бежит по пляжу",
    "海滩上奔跑的狗",
    "",
    "   ",
    "\n",
    "line one\nline two",
    "nul\x00byte",
    "ends with </s> and then more words in english",
    "</s>",
    "__label__fr __label__en tokens",
    "\U0001f600\U0001f600",
    "x" * 5000,
]


def test_table_equals_fasttext(lid, ref_model):
    raw = _core.FastTextModel.from_buffer(bundled_model_path().read_bytes()).labels
    r = lid.predict(TABLE)
    want_l, want_p = _reference(ref_model, TABLE)
    _assert_equal(r.codes, r.probs, raw, want_l, want_p)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.text(max_size=60),
            st.lists(st.sampled_from(["the", "de", "la", "и", "der", " ", "\t", "\n", "\x00", "</s>", "__label__en", "é", "日本", "Hund"]), max_size=12).map(" ".join),
        ),
        max_size=25,
    )
)
def test_property_equals_fasttext(lid, ref_model, texts):
    raw = _core.FastTextModel.from_buffer(bundled_model_path().read_bytes()).labels
    r = lid.predict(pa.array(texts, pa.string()))
    want_l, want_p = _reference(ref_model, texts)
    _assert_equal(r.codes, r.probs, raw, want_l, want_p)


@pytest.mark.needs_shared
def test_real_captions_equal_fasttext(lid, ref_model, laion_texts, cc3m_texts):
    raw = _core.FastTextModel.from_buffer(bundled_model_path().read_bytes()).labels
    for texts in (laion_texts, cc3m_texts[:5000]):
        r = lid.predict(pa.array(texts), threads=2)
        want_l, want_p = _reference(ref_model, texts)
        _assert_equal(r.codes, r.probs, raw, want_l, want_p)


def test_skip_threads_and_layouts(lid):
    texts = ["a dog on the beach", None, "un chien sur la plage", "ein Hund am Strand"] * 6000
    full = lid.predict(texts, threads=1)
    assert full.codes[1] == -1 and np.isnan(full.probs[1])
    many = lid.predict(pa.chunked_array([pa.array(texts[:5]), pa.array(texts[5:])]), threads=3)
    assert np.array_equal(full.codes, many.codes) and np.array_equal(full.probs, many.probs, equal_nan=True)
    skip = np.zeros(len(texts), dtype=bool)
    skip[::2] = True
    part = lid.predict(texts, skip=skip)
    assert (part.codes[::2] == -1).all()
    assert np.array_equal(part.codes[1::2], full.codes[1::2])
    assert lid.is_language(texts[:4], "en").tolist() == [True, False, False, False]
    assert full.languages()[:4].tolist() == ["en", None, "fr", "de"]
    with pytest.raises(InputError, match="skip"):
        lid.predict(texts, skip=np.zeros(3, dtype=np.uint8))
    with pytest.raises(InputError, match="uint8 or bool"):
        lid.predict(texts, skip=np.zeros(len(texts), dtype=np.int64))
    with pytest.raises(InputError, match="no label"):
        lid.is_language(texts, "xx")


def test_model_argument_errors(tmp_path):
    with pytest.raises(InputError, match="download"):
        LanguageIdentifier("auto")
    with pytest.raises(ModelError, match="does not exist"):
        LanguageIdentifier(tmp_path / "missing.ftz")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(FormatError, match="bad.bin"):
        LanguageIdentifier(bad)


def test_every_truncation_is_a_format_error():
    data = bundled_model_path().read_bytes()
    cuts = sorted({0, 3, 7, 8, 40, 60, 61, 100, 1000, 50_000, 100_000, 400_000, 500_000, 600_000, len(data) - 1})
    for cut in cuts:
        with pytest.raises(FormatError):
            _core.FastTextModel.from_buffer(data[:cut])
    with pytest.raises(FormatError, match="unexpected bytes"):
        _core.FastTextModel.from_buffer(data + b"\0")
    corrupt = bytearray(data)
    corrupt[0] ^= 1
    with pytest.raises(FormatError, match="magic"):
        _core.FastTextModel.from_buffer(bytes(corrupt))


# -- synthetic models in fastText's file format ------------------------------------------------


def write_model(
    path: Path,
    rng: np.random.Generator,
    words: List[str],
    labels: List[Tuple[str, int]],
    *,
    dim: int = 8,
    minn: int = 2,
    maxn: int = 4,
    bucket: int = 97,
    word_ngrams: int = 1,
    quant: bool = False,
    qnorm: bool = False,
    prune: Optional[Dict[int, int]] = None,
    version: int = 12,
    dsub: int = 2,
) -> None:
    out = bytearray()
    out += struct.pack("<ii", 793712314, version)
    out += struct.pack("<12i", dim, 5, 5, 1, 5, word_ngrams, 1, 3, bucket, minn, maxn, 100) + struct.pack("<d", 1e-4)
    nwords, nlabels = len(words), len(labels)
    out += struct.pack("<iiiqq", nwords + nlabels, nwords, nlabels, 1000, -1 if prune is None else len(prune))
    for w in words:
        out += w.encode() + b"\0" + struct.pack("<qb", 10, 0)
    for l, c in labels:
        out += l.encode() + b"\0" + struct.pack("<qb", c, 1)
    for k, v in (prune or {}).items():
        out += struct.pack("<ii", k, v)
    rows = nwords + (bucket if prune is None else len(prune))
    out += struct.pack("<?", quant)
    if quant:
        nsubq = (dim + dsub - 1) // dsub
        lastdsub = dim - (nsubq - 1) * dsub
        out += struct.pack("<?qqi", qnorm, rows, dim, rows * nsubq)
        out += rng.integers(0, 256, size=rows * nsubq, dtype=np.uint8).tobytes()
        out += struct.pack("<iiii", dim, nsubq, dsub, lastdsub)
        out += rng.normal(0, 1, size=dim * 256).astype(np.float32).tobytes()
        if qnorm:
            out += rng.integers(0, 256, size=rows, dtype=np.uint8).tobytes()
            out += struct.pack("<iiii", 1, 1, 1, 1) + rng.uniform(0.1, 2, size=256).astype(np.float32).tobytes()
    else:
        out += struct.pack("<qq", rows, dim) + rng.normal(0, 1, size=rows * dim).astype(np.float32).tobytes()
    out += struct.pack("<?", False)
    out += struct.pack("<qq", nlabels, dim) + rng.normal(0, 1, size=nlabels * dim).astype(np.float32).tobytes()
    path.write_bytes(bytes(out))


CASES = {
    "dense": dict(),
    "dense-word-bigrams": dict(word_ngrams=3),
    "dense-no-subwords": dict(maxn=0, bucket=0),
    "dense-unigram-ngrams": dict(minn=1, maxn=3),
    "quant": dict(quant=True),
    "quant-qnorm-odd-dim": dict(quant=True, qnorm=True, dim=7, dsub=2),
    "quant-pruned": dict(quant=True, qnorm=True, prune="half"),
    "quant-pruned-empty": dict(quant=True, prune="none"),
    "version-11": dict(version=11),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_synthetic_models_equal_fasttext(tmp_path, case):
    rng = np.random.default_rng(zlib.crc32(case.encode()))  # str hash() changes with every process
    kw = dict(CASES[case])
    words = ["</s>", "the", "de", "hund", "é", "日本", "chat", "__label__x"[:-1] + "y_word", "a"]
    labels = [(f"__label__l{i}", c) for i, c in enumerate([900, 500, 500, 300, 120, 60, 7])]
    bucket = kw.get("bucket", 97)
    if kw.get("prune") == "half":
        keys = rng.choice(bucket, size=bucket // 2, replace=False)
        kw["prune"] = {int(k): i for i, k in enumerate(keys)}
    elif kw.get("prune") == "none":
        kw["prune"] = {}
    path = tmp_path / f"{case}.bin"
    write_model(path, rng, words, labels, **kw)
    ref = fasttext.load_model(str(path))
    mine = _core.FastTextModel.from_buffer(path.read_bytes())
    texts = ["the hund", "", "de chat é 日本", "</s> the", "unknown wörds here", "a a a the de", "__label__l3 chat",
             "\t the \x00 de\n", "y_word"]
    texts += ["".join(rng.choice(list("ab é日<>/s_ "), size=rng.integers(0, 20))) for _ in range(200)]
    from fastcurate.kernels._texts import to_columns

    kind, payload, _ = to_columns(pa.array(texts))
    codes, probs = mine.predict(kind, payload, None, 2)
    want_l, want_p = _reference(ref, texts)
    _assert_equal(codes, probs, mine.labels, want_l, want_p)
    if case != "quant-pruned-empty":  # (no n-gram survives there: few distinct inputs)
        assert len(set(want_l) - {None}) >= 2  # the comparison is not between two constant answers


def test_concurrent_calls_agree(lid):
    # Each call takes its own token caches from the model's pool; results never mix.
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"caption number {i} about a dog on the beach" if i % 3 else f"légende numéro {i} d'un chien" for i in range(30_000)]
    want = lid.predict(texts, threads=1)
    with ThreadPoolExecutor(4) as ex:
        outs = list(ex.map(lambda k: lid.predict(texts[k:] + texts[:k], threads=2), [0, 7, 0, 7]))
    for k, got in zip([0, 7, 0, 7], outs):
        assert np.array_equal(np.roll(got.codes, k), want.codes)
        assert np.array_equal(np.roll(got.probs, k), want.probs, equal_nan=True)
