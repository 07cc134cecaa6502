"""pHash / dHash: the C++ kernel equals the naive numpy reference of the documented definitions bit
for bit (hypothesis), and the decode path (Pillow draft mode) behaves as documented."""

from __future__ import annotations

import io
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastcurate import _core
from fastcurate.errors import InputError, InputTypeError
from fastcurate.kernels.images import decode_gray, gray_hashes, hashes_to_hex, hex_to_hashes, perceptual_hashes

import _image_reference as ref
from conftest import SHARED_DATA

Image = pytest.importorskip("PIL.Image")

SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def gray_images(draw):
    h = draw(st.integers(1, 90))
    w = draw(st.integers(1, 90))
    kind = draw(st.sampled_from(["noise", "levels", "flat", "gradient"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if kind == "noise":
        return rng.integers(0, 256, (h, w), dtype=np.uint8)
    if kind == "levels":  # few distinct values: many ties among coefficients and sums
        return rng.choice(np.array([0, 128, 255], dtype=np.uint8), size=(h, w))
    if kind == "flat":
        return np.full((h, w), draw(st.integers(0, 255)), dtype=np.uint8)
    y, x = np.mgrid[0:h, 0:w]
    return ((x * rng.integers(-3, 4) + y * rng.integers(-3, 4)) % 256).astype(np.uint8)


@SETTINGS
@given(gray_images())
def test_hashes_equal_numpy_reference(img):
    ph, dh = gray_hashes([img])
    assert int(ph[0]) == ref.phash(img)
    assert int(dh[0]) == ref.dhash(img)


@SETTINGS
@given(gray_images(), st.integers(1, 40), st.integers(1, 40))
def test_box_sums_equal_reference(img, rows, cols):
    assert np.array_equal(_core.box_sums(img, rows, cols), ref.box_sums(img, rows, cols))


def test_large_and_strided_images():
    rng = np.random.default_rng(1)
    for h, w in [(480, 640), (1000, 37), (33, 2000)]:
        img = rng.integers(0, 256, (h, w), dtype=np.uint8)
        ph, dh = gray_hashes([img, img[:, ::1][:, 5:], img[3:, :]])
        assert [int(v) for v in ph] == [ref.phash(img), ref.phash(img[:, 5:]), ref.phash(img[3:, :])]
        assert [int(v) for v in dh] == [ref.dhash(img), ref.dhash(img[:, 5:]), ref.dhash(img[3:, :])]


def test_dct_table_is_rounded_cosines():
    table = _core.phash_dct_table()
    exact = np.array([[4096 * math.cos(math.pi * u * (2 * x + 1) / 64) for x in range(32)] for u in range(8)])
    assert np.array_equal(table, np.round(exact).astype(np.int32))
    assert np.array_equal(table, ref.DCT)
    # No entry is near a rounding tie, so any libm gives the same table.
    assert (np.abs(np.abs(exact - np.floor(exact)) - 0.5) > 1e-6).all()


def test_known_values():
    flat = np.full((50, 70), 200, dtype=np.uint8)
    ramp = np.tile(np.arange(90, dtype=np.uint8), (40, 1))
    ph, dh = gray_hashes([flat, ramp])
    assert hashes_to_hex(ph)[0] == "8000000000000000"  # only DC above the median
    assert int(dh[0]) == 0 and int(dh[1]) == 2**64 - 1
    assert np.array_equal(hex_to_hashes(hashes_to_hex(ph)), ph)


def test_bad_arrays_are_refused_with_the_fix():
    with pytest.raises(InputError, match=r"images\[1\] must have dtype uint8"):
        gray_hashes([np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.float32)])
    with pytest.raises(InputError, match=r"images\[0\] must be a 2-D"):
        gray_hashes([np.zeros((4, 4, 3), np.uint8)])
    with pytest.raises(InputError, match="empty image"):
        gray_hashes([np.zeros((0, 4), np.uint8)])
    with pytest.raises(InputError, match="contiguous rows"):
        gray_hashes([np.zeros((4, 8), np.uint8)[:, ::2]])
    with pytest.raises(InputTypeError, match="expected a numpy uint8 array"):
        gray_hashes([[1, 2]])


def _jpeg(arr: np.ndarray, **kw) -> bytes:
    bio = io.BytesIO()
    Image.fromarray(arr).save(bio, "JPEG", **kw)
    return bio.getvalue()


def test_draft_decodes_small_and_gray():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert decode_gray(_jpeg(rgb)).shape == (60, 80)  # 1/8 DCT scaling, luma only
    assert decode_gray(_jpeg(rgb[:100, :100])).shape == (50, 50)  # 1/2: 1/4 would go below 32
    assert decode_gray(_jpeg(rgb), draft_size=0).shape == (480, 640)  # draft off: full decode
    bio = io.BytesIO()
    Image.fromarray(rgb).save(bio, "PNG")
    g = decode_gray(bio.getvalue())
    assert g.shape == (480, 640) and g.dtype == np.uint8
    assert np.array_equal(g, np.asarray(Image.fromarray(rgb).convert("L")))


def test_perceptual_hashes_rows_errors_and_threads():
    rng = np.random.default_rng(4)
    imgs = [_jpeg(rng.integers(0, 256, (40 + k, 60, 3), dtype=np.uint8)) for k in range(70)]
    blobs = list(imgs)
    blobs[3] = None
    blobs[10] = b"not an image"
    blobs[11] = imgs[11][: len(imgs[11]) // 2]  # truncated JPEG
    one = perceptual_hashes(blobs, threads=1)
    assert not one.ok[[3, 10, 11]].any() and one.ok.sum() == 67
    assert one.errors[3] == "null image"
    assert one.errors[10].startswith("undecodable image: UnidentifiedImageError")
    assert "0x" not in one.errors[10]  # no object addresses: the reasons are reproducible
    assert one.errors[11].startswith("undecodable image:")
    for k in (0, 1, 50):
        ph, dh = gray_hashes([decode_gray(imgs[k])])
        assert one.phash[k] == ph[0] and one.dhash[k] == dh[0]
    many = perceptual_hashes(pa.array(blobs, type=pa.large_binary()), threads=3, chunk_size=5)
    assert np.array_equal(one.phash, many.phash) and np.array_equal(one.dhash, many.dhash)
    assert one.errors.keys() == many.errors.keys()


@pytest.mark.needs_shared
def test_real_photos_close_to_imagehash():
    """Not the same definition as imagehash (exact box filter instead of LANCZOS on uint8, DCT
    scaling), but close: measured in benchmarks/RESULTS.md; here a loose bound on a sample."""
    imagehash = pytest.importorskip("imagehash")
    paths = sorted((SHARED_DATA / "images" / "coco_mini_val").glob("*.jpg"))[:30]
    if not paths:
        pytest.skip("no COCO photos in ../shared/data")
    blobs = [p.read_bytes() for p in paths]
    ours = perceptual_hashes(blobs).phash
    theirs = hex_to_hashes([str(imagehash.phash(Image.open(io.BytesIO(b)))) for b in blobs])
    d = np.bitwise_count(ours ^ theirs)
    assert np.median(d) <= 6 and d.max() <= 16, d
