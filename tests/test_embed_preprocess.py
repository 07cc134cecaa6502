"""Preprocessing equals open_clip's eval transform; broken images are dropped with a reason, never crash."""

from __future__ import annotations

import io

import numpy as np
import pytest
from _torch_env import importorskip as tv_importorskip

from embed_fixtures import coco_photos

from fastcurate.models.preprocess import ImageError, PreprocessSpec, Preprocessor, decode_image
from fastcurate.errors import FormatError, InputError, InputTypeError

PIL = pytest.importorskip("PIL")
from PIL import Image, ImageOps  # noqa: E402


def _jpeg(img, **kw) -> bytes:
    b = io.BytesIO()
    img.save(b, "JPEG", **kw)
    return b.getvalue()


def _png(img, **kw) -> bytes:
    b = io.BytesIO()
    img.save(b, "PNG", **kw)
    return b.getvalue()


def _photo(w=320, h=200, seed=0):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w * h * 3).reshape(h, w, 3)
    return Image.fromarray((base * 0.7 + rng.integers(0, 70, (h, w, 3))).astype(np.uint8), "RGB")


def broken_corpus():
    """(name, source, expected) where expected is 'ok' or the drop reason code."""
    photo = _photo()
    good = _jpeg(photo)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    rotated = _jpeg(photo, exif=exif.tobytes())
    cmyk = _jpeg(photo.convert("CMYK"))
    a16 = (np.linspace(0, 65535, 100 * 80).reshape(80, 100)).astype(np.uint16)
    png16 = _png(Image.fromarray(a16))
    pal = photo.convert("P", palette=Image.ADAPTIVE)
    pal.info["transparency"] = 3
    palette_png = _png(pal, transparency=3)
    return [
        ("good.jpg", good, "ok"),
        ("zero.jpg", b"", "empty"),
        ("garbage.jpg", b"\x00\x01not an image at all" * 10, "undecodable"),
        ("truncated.jpg", good[: len(good) // 2], "truncated"),
        ("header_only.jpg", good[:20], "undecodable"),
        ("cmyk.jpg", cmyk, "ok"),
        ("16bit.png", png16, "ok"),
        ("palette.png", palette_png, "ok"),
        ("exif_rotated.jpg", rotated, "ok"),
        ("gray.png", _png(photo.convert("L")), "ok"),
        ("rgba.png", _png(photo.convert("RGBA")), "ok"),
        ("1bit.png", _png(photo.convert("1")), "ok"),
        ("tiny_1x1.png", _png(Image.new("RGB", (1, 1), (10, 20, 30))), "ok"),
        ("extreme_aspect.png", _png(Image.new("RGB", (3000, 2), (1, 2, 3))), "ok"),
        ("webp.webp", (lambda b: (photo.save(b, "WEBP"), b.getvalue())[1])(io.BytesIO()), "ok"),
    ]


@pytest.fixture(scope="module")
def open_clip_preprocess():
    open_clip = tv_importorskip("open_clip")
    _, _, pre = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    return pre


def test_bitwise_equal_to_open_clip_on_real_photos(open_clip_preprocess):
    pre = Preprocessor(PreprocessSpec())
    photos = coco_photos()
    assert len(photos) >= 50
    for p in photos:
        ref = open_clip_preprocess(ImageOps.exif_transpose(Image.open(p))).numpy()
        got = pre(p)
        assert got.dtype == np.float32 and got.shape == (3, 224, 224)
        assert np.array_equal(got, ref), p.name


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_equal_for_other_plain_modes(open_clip_preprocess, mode):
    pre = Preprocessor(PreprocessSpec())
    for p in coco_photos(5):
        im = Image.open(p).convert(mode)
        assert np.array_equal(pre(im), open_clip_preprocess(im).numpy())


def test_squash_and_bilinear_specs():
    spec = PreprocessSpec(size=(64, 64), resize_mode="squash", interpolation="bilinear")
    out = Preprocessor(spec)(_photo(100, 30))
    assert out.shape == (3, 64, 64)
    with pytest.raises(InputError, match="resize_mode"):
        PreprocessSpec(resize_mode="longest")


def test_fast_mode_is_close_on_real_photos():
    exact = Preprocessor(PreprocessSpec())
    fast = Preprocessor(PreprocessSpec(), fast=True)
    for p in coco_photos(10):
        a, b = exact(p).ravel(), fast(p).ravel()
        cos = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
        assert cos > 0.98, (p.name, cos)


@pytest.mark.parametrize("name,src,expected", broken_corpus(), ids=[c[0] for c in broken_corpus()])
def test_broken_corpus(name, src, expected):
    pre = Preprocessor(PreprocessSpec(size=(32, 32)))
    if expected == "ok":
        out = pre.load_uint8(src, name=name)
        assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    else:
        with pytest.raises(ImageError) as ei:
            pre.load_uint8(src, name=name)
        assert ei.value.reason == expected
        assert name in str(ei.value)
        assert isinstance(ei.value, FormatError)


def test_exif_rotation_applied():
    photo = _photo(320, 200)
    exif = Image.Exif()
    exif[0x0112] = 6
    img = decode_image(_jpeg(photo, exif=exif.tobytes()))
    assert img.size == (200, 320)
    raw = decode_image(_jpeg(photo, exif=exif.tobytes()), exif_transpose=False)
    assert raw.size == (320, 200)


def test_16bit_is_scaled_not_clipped():
    a16 = np.full((40, 40), 32896, np.uint16)  # mid grey in 16 bits
    out = Preprocessor(PreprocessSpec(size=(32, 32))).load_uint8(_png(Image.fromarray(a16)))
    assert 120 <= out.mean() <= 136  # convert("RGB") alone would give 255


def test_huge_image_dropped_by_pixel_limit():
    big = _png(Image.new("RGB", (3000, 3000)))
    pre = Preprocessor(PreprocessSpec(size=(32, 32)), max_pixels=1_000_000)
    with pytest.raises(ImageError) as ei:
        pre.load_uint8(big, name="big.png")
    assert ei.value.reason == "too_large"


def test_paths_and_bad_types(tmp_path):
    p = tmp_path / "x.jpg"
    p.write_bytes(_jpeg(_photo()))
    pre = Preprocessor(PreprocessSpec(size=(32, 32)))
    assert pre.load_uint8(str(p)).shape == (32, 32, 3)
    with pytest.raises(ImageError) as ei:
        pre.load_uint8(tmp_path / "missing.jpg")
    assert ei.value.reason == "unreadable"
    with pytest.raises(InputTypeError):
        pre.load_uint8(12345)
