"""Image-classifier bundles (docs/embed.md, "Image bundles"): export with parity, the torch-free
ImageEncoder, its top-k labels, the embed stage on them (and the stage contract), and proof on the
real photos that the embeddings mean something where random CLIP weights do not."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _torch_env import importorskip as tv_importorskip
from hypothesis import given, settings
from hypothesis import strategies as st

from embed_fixtures import (COCO, clothing_photos, coco_photos, lite0_bundle, lite0_torch, need_data,
                            tiny_bundle)
from fastcurate.errors import FormatError, InputError, ModelError
from fastcurate.models import ImageEncoder, PreprocessSpec, Preprocessor, load_bundle
from fastcurate.models.encoder import top_k_softmax

torch = pytest.importorskip("torch")


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


# ----------------------------------------------------------------------------------------------
# top-k softmax (pure numpy, no bundle)


def _naive_top_k(logits: np.ndarray, k: int):
    ids, scores = [], []
    for row in logits.astype(np.float64):
        p = np.exp(row - row.max())
        p /= p.sum()
        order = sorted(range(len(p)), key=lambda c: (-row[c], c))[:k]
        ids.append(order)
        scores.append([p[c] for c in order])
    return np.array(ids, np.int32), np.array(scores, np.float32)


def test_top_k_softmax_table():
    logits = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 3.0, 2.0, 3.0], [-1e4, 0.0, 1e4, 5.0]], np.float32)
    ids, p = top_k_softmax(logits, 3)
    assert ids.tolist() == [[0, 1, 2], [1, 3, 2], [2, 3, 1]]  # ties: lower id first; underflowed: by logit
    assert np.allclose(p[0], 0.25) and p.dtype == np.float32 and ids.dtype == np.int32
    assert np.isclose(p[2, 0], 1.0) and np.all(np.isfinite(p))  # no overflow on huge logits
    ids, p = top_k_softmax(logits, 10)  # k above the class count: every class
    assert ids.shape == (3, 4) and np.allclose(p.sum(1), 1.0, atol=1e-6)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 6), st.integers(1, 12), st.integers(1, 14), st.integers(0, 2**32 - 1), st.booleans())
def test_top_k_softmax_equals_naive(n, c, k, seed, ties):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, c)).astype(np.float32) * 5
    if ties:
        logits = np.round(logits)  # many exact ties
    ids, p = top_k_softmax(logits, k)
    rid, rp = _naive_top_k(logits, min(k, c))
    assert np.array_equal(ids, rid)
    assert np.allclose(p, rp, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------------------------
# preprocessing: torchvision's eval transform (resize 256, centre crop 224), bitwise


def test_resize_then_crop_is_bitwise_torchvision():
    tv = tv_importorskip("torchvision.transforms")
    from PIL import Image, ImageOps

    spec = PreprocessSpec(size=(224, 224), interpolation="bicubic", mean=(127 / 255,) * 3, std=(128 / 255,) * 3,
                          resize_size=256)
    ref = tv.Compose([tv.Resize(256, interpolation=tv.InterpolationMode.BICUBIC), tv.CenterCrop(224), tv.ToTensor(),
                      tv.Normalize(spec.mean, spec.std)])
    pre = Preprocessor(spec)
    photos = coco_photos(20) + clothing_photos(2)[0]
    for p in photos:
        img = ImageOps.exif_transpose(Image.open(p)).convert("RGB")
        assert np.array_equal(pre(p), ref(img).numpy()), p.name
    for w, h in ((300, 200), (200, 300), (256, 256), (257, 999)):
        img = Image.fromarray(np.random.default_rng(w).integers(0, 256, (h, w, 3), dtype=np.uint8))
        assert np.array_equal(pre(img), ref(img).numpy()), (w, h)


def test_resize_size_spec_round_trip_and_errors():
    spec = PreprocessSpec(size=(224, 224), resize_size=256)
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec and spec.short_side == 256
    assert "resize_size" not in PreprocessSpec().to_dict()  # CLIP bundles' preprocess.json is unchanged
    with pytest.raises(InputError, match="smaller than the crop"):
        PreprocessSpec(size=(224, 224), resize_size=200)
    with pytest.raises(InputError, match="resize_size applies"):
        PreprocessSpec(size=(224, 224), resize_mode="squash", resize_size=256)


# ----------------------------------------------------------------------------------------------
# export


@pytest.mark.slow
def test_export_manifest_labels_preprocess_and_parity():
    b = load_bundle(lite0_bundle(), verify=True)  # every file's SHA-256 checked
    m = b.manifest
    assert b.kind == "image" and b.embed_dim == 1280 and m["num_classes"] == 1000
    assert sorted(b.variants) == ["fp16", "fp32"] and m["outputs"] == {"features": "image_features", "logits": "logits"}
    labels = b.labels
    assert len(labels) == 1000 and labels[0] == "tench" and labels[207] == "golden retriever" and labels[-1] == "toilet tissue"
    # EfficientNet-Lite's own preprocessing: TF's mean 127 / std 128 (of 255), resize 256 -> crop 224
    spec = b.preprocess
    assert spec is not None and spec.size == (224, 224) and spec.resize_size == 256
    assert spec.interpolation == "bicubic" and spec.resize_mode == "shortest"
    assert spec.mean == (127 / 255,) * 3 and spec.std == (128 / 255,) * 3
    par = m["parity"]
    assert par["fp32"]["features_min_cos"] >= 0.9999 and par["fp32"]["logits_min_cos"] >= 0.9999
    assert par["fp32"]["top1_agree"] == 1.0 and par["fp32"]["samples"] >= 12
    assert par["fp16"]["features_min_cos"] >= 0.999
    assert "tokenizer" not in m and m["source"]["model"] == "efficientnet-lite0"


@pytest.mark.slow
def test_runtime_equals_torch_on_real_photos():
    """ImageEncoder (no torch) against the torch model on the same pixels: features cosine >= 0.9999,
    the same top-5 classes with the same probabilities."""
    photos = coco_photos(16)
    model = lite0_torch()
    with ImageEncoder(lite0_bundle(), device="cpu", batch_size=5) as enc:
        got = enc.classify(photos, k=5)
        x = np.stack([enc.preprocessor(p) for p in photos])
    with torch.no_grad():
        xt = torch.from_numpy(x)
        feats = model._avg_pooling(model.extract_features(xt)).flatten(1)
        logits = model(xt).numpy()
    assert np.all(_cos(got.embeddings, feats.numpy()) >= 0.9999)
    assert np.allclose(np.linalg.norm(got.embeddings, axis=1), 1.0, atol=1e-5)
    ids, probs = top_k_softmax(logits, 5)
    assert np.array_equal(got.top_ids[:, 0], ids[:, 0])
    assert np.allclose(got.top_scores, np.take_along_axis(torch.softmax(torch.from_numpy(logits), 1).numpy(),
                                                          got.top_ids.astype(np.int64), 1), atol=1e-4)
    # fp16 agrees closely
    with ImageEncoder(lite0_bundle(), device="cpu", precision="fp16") as enc16:
        e16 = enc16.encode_images(photos[:6])
    assert np.all(_cos(e16, got.embeddings[:6]) >= 0.999)


@pytest.mark.slow
def test_imagenet_labels_make_sense_on_coco():
    """Spot checks (docs/embed.md lists them): the top-5 ImageNet classes of COCO photos name what
    their captions say."""
    need_data(COCO)
    expect = {
        "000000011813.jpg": "tripod",  # "A camera sits on a tripod connected to a laptop."
        "000000073326.jpg": "refrigerator",  # "An open refrigerator including bottles of various food."
        "000000092660.jpg": "pizza",  # "A pizza is prepared with cheese, tomato sauce, and broccoli."
        "000000062554.jpg": "broccoli",  # "Several plates of food are set on a table."
        "000000018575.jpg": "cheeseburger",  # "A burger sitting on a table, with another next to it."
    }
    with ImageEncoder(lite0_bundle(), device="cpu") as enc:
        got = enc.classify([COCO / f for f in expect], k=5)
    for i, (f, label) in enumerate(expect.items()):
        assert label in [l for l, _ in got.top_labels(i)], (f, got.top_labels(i))
    assert got.top_labels(0)[0][0] == "tripod" and got.top_labels(0)[0][1] > 0.5


# ----------------------------------------------------------------------------------------------
# the embeddings mean something: nearest neighbours share the garment class


def _nn1_accuracy(emb: np.ndarray, labels) -> float:
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    s = e @ e.T
    np.fill_diagonal(s, -np.inf)
    lab = np.asarray(labels)
    return float((lab[s.argmax(1)] == lab).mean())


@pytest.mark.slow
def test_neighbours_share_the_class_unlike_random_clip():
    """Leave-one-out 1-NN class agreement on 150 real clothing photos (10 classes, chance 0.10).
    Measured over all 1,000 photos (benchmarks/study_image_bundle.py): EfficientNet-Lite0 0.744,
    random tiny CLIP 0.205, random ViT-B-32 0.223, raw 16x16 pixels 0.424 (many photos share a
    backdrop). The bound 0.55 is far above what the random-weight encoders reach and well below the
    pretrained model."""
    paths, labels = clothing_photos(15)
    with ImageEncoder(lite0_bundle(), device="cpu") as enc:
        real = _nn1_accuracy(enc.encode_images(paths), labels)
    from fastcurate.models import ClipEncoder

    with ClipEncoder(tiny_bundle(), device="cpu") as enc:
        rand = _nn1_accuracy(enc.encode_images(paths), labels)
    assert real >= 0.55, real
    assert rand <= 0.40, rand
    assert real >= rand + 0.25, (real, rand)


# ----------------------------------------------------------------------------------------------
# runtime behaviour: bad images, wrong bundle kinds


def _broken_sources():
    good = coco_photos(1)[0].read_bytes()
    return [good, b"", b"garbage" * 5, good[: len(good) // 2], None]


@pytest.mark.slow
def test_bad_images_are_reported_not_raised_mid_stream():
    srcs = _broken_sources()
    with ImageEncoder(lite0_bundle(), device="cpu", batch_size=2) as enc:
        batches = list(enc.iter_image_batches(srcs, top_k=3))
        with pytest.raises(FormatError, match=r"image\[1\].*zero-byte.*on_error='nan'"):
            enc.classify(srcs, k=3)
        r = enc.classify(srcs, k=3, on_error="nan")
        emb = enc.encode_images(srcs, on_error="nan")
    ok = np.concatenate([b.ok for b in batches])
    reasons = [x for b in batches for x in b.reasons]
    assert ok.tolist() == [True, False, False, False, False]
    assert [x.split(":")[0] if x else None for x in reasons] == [None, "empty", "undecodable", "truncated", "missing"]
    assert np.isnan(r.embeddings[1:]).all() and (r.top_ids[1:] == -1).all() and np.isnan(r.top_scores[1:]).all()
    assert r.top_labels(1) == [] and len(r.top_labels(0)) == 3
    assert np.array_equal(emb[0], r.embeddings[0]) and [b.start for b in batches] == [0, 2, 4]
    with pytest.raises(InputError, match="top_k"):
        list(enc.iter_image_batches(srcs, top_k=-1))


@pytest.mark.slow
def test_wrong_bundle_kinds_are_named(tmp_path):
    tv_importorskip("open_clip")
    from fastcurate.models import ClipEncoder, TextEncoder

    with pytest.raises(ModelError, match="'image' bundle.*ImageEncoder"):
        ClipEncoder(lite0_bundle(), device="cpu")
    with pytest.raises(ModelError, match="'image' bundle.*ImageEncoder"):
        TextEncoder(lite0_bundle(), device="cpu")
    with pytest.raises(ModelError, match="'clip' bundle.*ClipEncoder"):
        ImageEncoder(tiny_bundle(), device="cpu")
    with pytest.raises(ModelError, match="no tokenizer"):
        load_bundle(lite0_bundle()).tokenizer_path
    # a damaged bundle: labels.json with the wrong number of names
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(lite0_bundle(), bad)
    (bad / "labels.json").write_text(json.dumps(["a", "b"]))
    with pytest.raises(ModelError, match="2 names but the manifest declares 1000"):
        ImageEncoder(bad, device="cpu")
    with pytest.raises(ModelError, match="labels.json is corrupted"):
        load_bundle(bad, verify=True)
    m = json.loads((bad / "manifest.json").read_text())
    del m["labels"]
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelError, match="missing key 'labels'"):
        load_bundle(bad)
    m["kind"] = "audio"
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelError, match="kind 'audio'"):
        load_bundle(bad)


# ----------------------------------------------------------------------------------------------
# export of any torchvision-style classifier, and its errors


def _toy_classifier(classes: int = 7):
    nn = torch.nn

    class Toy(nn.Module):  # torchvision's layout: features, pooling, then a classifier Sequential
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                          nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(16, classes))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    torch.manual_seed(0)
    return Toy().eval()


TOY_SPEC = PreprocessSpec(size=(32, 32), resize_size=36, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def test_export_any_torchvision_style_classifier(tmp_path):
    pytest.importorskip("onnxscript")
    model = _toy_classifier()
    names = [f"class {i}" for i in range(7)]
    out = __import__("fastcurate").export_image_model(model, tmp_path / "toy", preprocess=TOY_SPEC, labels=names,
                                                     variants=[])
    b = load_bundle(out, verify=True)
    assert b.kind == "image" and b.embed_dim == 16 and b.labels == names and sorted(b.variants) == ["fp32"]
    assert b.manifest["image"]["features"].startswith("the input of the classifier 'classifier.1'")
    photos = coco_photos(3)
    with ImageEncoder(out, device="cpu") as enc:
        r = enc.classify(photos, k=7)
        x = np.stack([enc.preprocessor(p) for p in photos])
    with torch.no_grad():
        xt = torch.from_numpy(x)
        feats = torch.flatten(model.avgpool(model.features(xt)), 1).numpy()
        probs = torch.softmax(model(xt), 1).numpy()
    assert np.all(_cos(r.embeddings, feats) >= 0.9999)
    assert np.allclose(np.sort(r.top_scores, axis=1), np.sort(probs, axis=1), atol=1e-5)
    assert np.array_equal(r.top_ids[:, 0], probs.argmax(1))


def test_export_errors(tmp_path):
    from fastcurate.models import export_image_model

    model = _toy_classifier()
    with pytest.raises(InputError, match="unknown image model 'resnet9000'.*efficientnet-lite0"):
        export_image_model("resnet9000", tmp_path / "x")
    with pytest.raises(InputError, match="pass preprocess="):
        export_image_model(model, tmp_path / "x", labels=["a"] * 7)
    with pytest.raises(InputError, match="pass labels="):
        export_image_model(model, tmp_path / "x", preprocess=TOY_SPEC)
    with pytest.raises(InputError, match="7 outputs but 3 labels"):
        export_image_model(model, tmp_path / "x", preprocess=TOY_SPEC, labels=["a", "b", "c"])
    with pytest.raises(InputError, match="is a Conv2d, not an nn.Linear"):
        export_image_model(model, tmp_path / "x", preprocess=TOY_SPEC, labels=["a"] * 7, classifier="features.0")
    with pytest.raises(InputError, match="no submodule 'head'"):
        export_image_model(model, tmp_path / "x", preprocess=TOY_SPEC, labels=["a"] * 7, classifier="head")
    with pytest.raises(InputError, match="precision 'int4'"):
        export_image_model(model, tmp_path / "x", preprocess=TOY_SPEC, labels=["a"] * 7, variants=["int4"])
    with pytest.raises(InputError, match="pretrained= applies to built-in"):
        export_image_model(model, tmp_path / "x", preprocess=TOY_SPEC, labels=["a"] * 7, pretrained="w.pth")

    nn = torch.nn

    class NotLast(nn.Module):  # the last registered Linear is not the last layer: refused, not mis-split
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.fc = nn.Linear(4, 5)
            self.proj = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(self.proj(self.body(x)))

    with pytest.raises(ModelError, match="'proj' is not the last layer"):
        export_image_model(NotLast().eval(), tmp_path / "x", preprocess=TOY_SPEC, labels=["a"] * 4)
    assert not (tmp_path / "x").exists()
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("\n".join(f"name {i}" for i in range(7)) + "\n")
    from fastcurate.models.export_image import _resolve_labels

    assert _resolve_labels(labels_file)[0] == [f"name {i}" for i in range(7)]
    with pytest.raises(InputError, match="neither 'imagenet' nor a file"):
        _resolve_labels(str(tmp_path / "nope.txt"))


# ----------------------------------------------------------------------------------------------
# the embed stage with an image bundle


def _clothing_table(tmp_path: Path, per_class: int = 2) -> Path:
    paths, labels = clothing_photos(per_class)
    rel = [os.path.relpath(p, tmp_path) for p in paths]
    t = pa.table({"uid": [f"c{i:03d}" for i in range(len(paths))] + ["bad0", "bad1", "bad2"],
                  "image_path": rel + ["missing.jpg", None, None],
                  "label": labels + ["x", "y", "z"],
                  "caption": ["a garment"] * len(paths) + [None, None, "no image"]})
    src = tmp_path / "clothing.parquet"
    pq.write_table(t, src)
    return src


@pytest.mark.slow
def test_embed_stage_image_bundle_with_labels(tmp_path):
    from fastcurate.stages.embed.stage import embed_shards

    src = _clothing_table(tmp_path)
    out = tmp_path / "out"
    stats = embed_shards([src], lite0_bundle(), out, labels=3, device="cpu", batch_size=4, progress=False)
    kept = pq.read_table(out / "part-00000.parquet")
    drops = pq.read_table(out / "drops" / "part-00000.parquet")
    assert stats["rows_in"] == 23 and stats["rows_kept"] == 20
    assert dict(zip(drops.column("uid").to_pylist(), drops.column("reason").to_pylist())) == {
        "bad0": "missing_file", "bad1": "no_image", "bad2": "no_image"}
    assert kept.column_names == ["uid", "image_path", "label", "caption", "image_emb", "image_labels"]
    assert kept.schema.field("image_emb").type == pa.list_(pa.float16(), 1280)
    assert kept.schema.field("image_labels").type == pa.list_(
        pa.struct([pa.field("label", pa.string()), pa.field("score", pa.float32())]))
    assert stats["embed"]["kind"] == "image" and stats["embed"]["labels"] == 3
    assert stats["manifest"]["config"]["labels"] == 3
    # the same numbers as the library call
    paths = [tmp_path / p for p in kept.column("image_path").to_pylist()]
    with ImageEncoder(lite0_bundle(), device="cpu") as enc:
        ref = enc.classify(paths, k=3)
    emb = np.array(kept.column("image_emb").to_pylist(), np.float32)
    assert np.allclose(emb, ref.embeddings, atol=2e-3)
    got = kept.column("image_labels").to_pylist()
    for i, row in enumerate(got):
        assert [d["label"] for d in row] == [l for l, _ in ref.top_labels(i)]
        assert np.allclose([d["score"] for d in row], [s for _, s in ref.top_labels(i)], atol=1e-5)
    # without --labels: image_emb only
    stats2 = embed_shards([src], lite0_bundle(), tmp_path / "o2", device="cpu", progress=False)
    assert pq.read_table(tmp_path / "o2" / "part-00000.parquet").column_names[-1] == "image_emb"
    assert stats2["embed"]["labels"] == 0


@pytest.mark.slow
def test_embed_stage_option_errors(tmp_path):
    tv_importorskip("open_clip")
    from fastcurate.stages.embed.stage import EmbedStage

    with pytest.raises(InputError, match="image classifier bundle.*cannot embed captions"):
        EmbedStage(lite0_bundle(), text_only=True)
    with pytest.raises(InputError, match="--labels needs an image classifier bundle.*'clip' bundle"):
        EmbedStage(tiny_bundle(), labels=5)
    with pytest.raises(InputError, match="labels must be >= 0"):
        EmbedStage(lite0_bundle(), labels=-1)
    s = EmbedStage(lite0_bundle(), labels=2)
    assert s.needs == ("image",) and s.wants == () and s.produces == ("image_emb", "image_labels")
    assert s.config()["labels"] == 2


@pytest.mark.slow
def test_cli_export_and_embed(tmp_path, capsys):
    from fastcurate.cli import main

    assert main(["export", "--image-model", "resnet9000", "--out", str(tmp_path / "b")]) == 1
    assert "unknown image model 'resnet9000'" in capsys.readouterr().err
    assert main(["export", "ViT-B-32", "--image-model", "efficientnet-lite0", "--out", str(tmp_path / "b")]) == 1
    assert "not both" in capsys.readouterr().err
    out = tmp_path / "emb"
    wds = need_data(COCO.parent.parent / "webdataset") / "image1.tar"
    assert main(["embed", str(wds), "--model", str(lite0_bundle()), "--labels", "2", "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "(image, 1280-d, top 2 labels" in printed
    t = pq.read_table(out / "part-00000.parquet")
    assert all(len(x) == 2 for x in t.column("image_labels").to_pylist()) and "text_emb" not in t.column_names


@pytest.mark.slow
def test_cli_export_image_model(tmp_path, capsys):
    """`fastcurate export --image-model efficientnet-lite0` end to end (the second export of the session)."""
    from fastcurate.cli import main

    out = tmp_path / "lite0"
    assert main(["export", "--image-model", "efficientnet-lite0", "--out", str(out), "--variants"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["embed_dim"] == 1280 and info["variants"] == ["fp32"] and info["parity"]["fp32"]["top1_agree"] == 1.0
    a = json.loads((out / "manifest.json").read_text())["files"]
    b = json.loads((lite0_bundle() / "manifest.json").read_text())["files"]
    assert a["labels.json"] == b["labels.json"] and a["preprocess.json"] == b["preprocess.json"]


# ----------------------------------------------------------------------------------------------
# the stage contract (tests/test_contract.py) with an image bundle and labels


@pytest.fixture
def image_bundle_contract(monkeypatch):
    import contract_cases

    monkeypatch.setenv(contract_cases.BUNDLE_ENV, str(lite0_bundle()))
    monkeypatch.setenv(contract_cases.LABELS_ENV, "3")
    yield


@pytest.mark.slow
@pytest.mark.parametrize("check", ["test_row_accounting", "test_same_output_for_threads_and_layouts",
                                   "test_corrupt_shard_is_named_or_skipped_and_recorded",
                                   "test_kill_at_random_points_then_resume_gives_identical_bytes"])
def test_stage_contract_with_image_bundle(check, image_bundle_contract, tmp_path):
    import test_contract

    getattr(test_contract, check)("embed", tmp_path)
    parts = [p for p in tmp_path.rglob("part-*.parquet") if p.parent.name != "drops"]
    assert parts
    for p in parts:  # it ran the image bundle: image_emb and image_labels, no text columns
        names = pq.read_schema(p).names
        assert names[-2:] == ["image_emb", "image_labels"] and "text_emb" not in names, (p, names)
