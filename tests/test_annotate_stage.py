"""The annotate stage: caption labels (MetaCLIP entries scored by their normalised IDF over the
input), ImageNet labels from embed's image_labels column or from the EfficientNet-Lite0 bundle,
zero-shot CLIP labels; each with its source and score."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fastcurate.errors import InputError
from fastcurate.runner.local import run_stage
from fastcurate.stages.annotate.stage import CLIP_PROMPT, AnnotateStage, labels_column


def _rows(out: Path) -> dict:
    t = pa.concat_tables([pq.read_table(p) for p in sorted(out.glob("part-*.parquet"))])
    return {r["uid"]: r for r in t.to_pylist()}


def test_caption_labels_are_scored_by_idf(tmp_path):
    caps = ["a Red dress by the sea", "red shoes", "Red dress", "blue jacket", None, "the 8 red hats in a row"]
    t = pa.table({"uid": [f"u{i}" for i in range(len(caps))], "caption": pa.array(caps, pa.string())})
    # two shards: the document frequencies are global
    pq.write_table(t.slice(0, 3), tmp_path / "a.parquet")
    pq.write_table(t.slice(3), tmp_path / "b.parquet")
    entries = ["red", "dress", "red dress", "shoes", "sea", "blue", "jacket", "a", "by", "8", "hat", "row", "in"]
    st = AnnotateStage(metadata=entries, text_labels=3, min_text_score=0.2)
    stats = run_stage(st, [tmp_path], tmp_path / "o", progress=False)
    rows = _rows(tmp_path / "o")
    n = 5  # captions that are not null
    df = {"red": 4, "dress": 2, "red dress": 2, "shoes": 1, "sea": 1, "blue": 1, "jacket": 1, "row": 1}

    def score(e):
        return math.log(n / df[e]) / math.log(n)

    def labels(u):
        return [(d["label"], d["source"], round(d["score"], 5)) for d in rows[u]["labels"]]

    # "a", "by", "in" are function words, "8" has no letters, "hat" does not match "hats"; red: log(5/4)/log(5) < 0.2
    assert labels("u0") == [(e, "metaclip", round(score(e), 5)) for e in ("sea", "dress", "red dress")]
    assert labels("u1") == [("shoes", "metaclip", round(score("shoes"), 5))]
    assert labels("u4") == [] and labels("u5") == [("row", "metaclip", round(score("row"), 5))]
    assert score("red") < 0.2
    assert stats["annotate"]["labels"]["metaclip"] == sum(len(r["labels"]) for r in rows.values())
    assert stats["rows_kept"] == 6


def test_image_labels_column_and_label_order(tmp_path):
    lt = pa.list_(pa.struct([pa.field("label", pa.string()), pa.field("score", pa.float32())]))
    t = pa.table({"uid": ["a", "b", "c"], "caption": ["red dress", "blue", None],
                  "image_labels": pa.array([[{"label": "gown", "score": 0.7}, {"label": "abaya", "score": 0.2},
                                             {"label": "wool", "score": 0.05}], None, []], lt)})
    pq.write_table(t, tmp_path / "a.parquet")
    st = AnnotateStage(metadata=["red", "dress"], min_text_score=0.0, image_labels=2, min_image_score=0.1)
    run_stage(st, [tmp_path / "a.parquet"], tmp_path / "o", progress=False)
    rows = _rows(tmp_path / "o")
    got = [(d["label"], d["source"]) for d in rows["a"]["labels"]]
    assert got == [("dress", "metaclip"), ("red", "metaclip"), ("gown", "imagenet"), ("abaya", "imagenet")]
    assert rows["b"]["labels"] == [] and rows["c"]["labels"] == []


def test_labels_column_builder():
    col = labels_column(3, np.array([2, 0, 0, 2]), ["x", "b", "a", "y"], np.array([1, 0, 0, 1]),
                        np.array([0.5, 0.3, 0.3, 0.9], np.float32))
    assert [[d["label"] for d in r] for r in col.to_pylist()] == [["a", "b"], [], ["y", "x"]]


def test_options_are_checked(tmp_path):
    with pytest.raises(InputError, match="needs label_list"):
        AnnotateStage(clip_bundle=tmp_path)
    with pytest.raises(InputError, match="give clip_bundle"):
        AnnotateStage(label_list=["a"])
    with pytest.raises(InputError, match="not a model bundle"):
        AnnotateStage(image_bundle=tmp_path)
    with pytest.raises(InputError, match="in \\[0, 1\\]"):
        AnnotateStage(min_text_score=2)
    with pytest.raises(InputError, match="no such file"):
        AnnotateStage(clip_bundle=tmp_path, label_list=tmp_path / "labels.txt")


@pytest.mark.slow
def test_imagenet_labels_from_the_efficientnet_bundle(tmp_path):
    from pairs_fixtures import coco, lite0_image_bundle

    from fastcurate.models.encoder import ImageEncoder

    bundle = lite0_image_bundle()
    photos = coco(6)
    t = pa.table({"uid": [p.stem for p in photos] + ["broken"],
                  "image_path": [str(p) for p in photos] + [str(tmp_path / "missing.jpg")],
                  "caption": ["a photo"] * 7})
    pq.write_table(t, tmp_path / "a.parquet")
    st = AnnotateStage(text_labels=0, image_bundle=bundle, image_labels=3, min_image_score=0.05, device="cpu")
    stats = run_stage(st, [tmp_path / "a.parquet"], tmp_path / "o", progress=False)
    rows = _rows(tmp_path / "o")
    ref = ImageEncoder(bundle, device="cpu").classify([str(p) for p in photos], k=3)
    for i, p in enumerate(photos):
        want = [(lab, s) for lab, s in ref.top_labels(i) if s >= 0.05]
        got = [(d["label"], d["score"]) for d in rows[p.stem]["labels"]]
        assert [g[0] for g in got] == [w[0] for w in want]
        assert np.allclose([g[1] for g in got], [w[1] for w in want], atol=1e-5)
        assert all(d["source"] == "imagenet" for d in rows[p.stem]["labels"])
    assert rows["broken"]["labels"] == [] and stats["annotate"]["image_failed"] == 1


def test_zero_shot_clip_labels_equal_a_direct_computation(tmp_path):
    from embed_fixtures import coco_photos, tiny_bundle

    from fastcurate.models.encoder import ClipEncoder

    bundle = tiny_bundle()
    photos = coco_photos(4)
    names = ["dog", "cat", "pizza", "street", "kitchen"]
    t = pa.table({"uid": [p.stem for p in photos], "image_path": [str(p) for p in photos]})
    pq.write_table(t, tmp_path / "a.parquet")
    st = AnnotateStage(text_labels=0, clip_bundle=bundle, label_list=names, clip_labels=2, min_clip_score=0.0,
                       device="cpu")
    run_stage(st, [tmp_path / "a.parquet"], tmp_path / "o", progress=False)
    rows = _rows(tmp_path / "o")
    enc = ClipEncoder(bundle, device="cpu")
    img = enc.encode_images([str(p) for p in photos]).astype(np.float64)
    txt = enc.encode_texts([CLIP_PROMPT.format(x) for x in names]).astype(np.float64)
    z = 100.0 * img @ txt.T
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    for i, ph in enumerate(photos):
        top = np.argsort(-p[i], kind="stable")[:2]
        got = rows[ph.stem]["labels"]
        assert [d["label"] for d in got] == [names[j] for j in top] and all(d["source"] == "clip" for d in got)
        assert np.allclose([d["score"] for d in got], p[i, top], atol=1e-5)
