"""Header-only image sizes: equal to PIL's Image.open(f).size on real photos, re-encoded copies in
every supported format and mode, and synthetic edge sizes; bad headers are statuses, never errors."""

from __future__ import annotations

import io
import tarfile
from typing import List

import numpy as np
import pyarrow as pa
import pytest

from fastcurate.errors import InputTypeError
from fastcurate.kernels.images import FORMAT_NAMES, STATUS_NAMES, image_sizes

from conftest import SHARED_DATA

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402


def _real_jpegs() -> List[bytes]:
    root = SHARED_DATA / "images"
    if not root.exists():
        pytest.skip(f"{root} is absent: the real data lives in ../shared/data beside the checkout")
    return [p.read_bytes() for p in sorted(root.rglob("*.jpg"))]


def _tar_jpegs() -> List[bytes]:
    out = []
    for t in sorted((SHARED_DATA / "webdataset").glob("*.tar")):
        with tarfile.open(t) as tf:
            for m in tf.getmembers():
                if m.name.endswith((".jpg", ".jpeg", ".png", ".webp")):
                    out.append(tf.extractfile(m).read())
    if not out:
        pytest.skip("no WebDataset shards in ../shared/data/webdataset")
    return out


def _pil_size(b: bytes):
    with Image.open(io.BytesIO(b)) as im:
        return im.size


def _encode(im: "Image.Image", fmt: str, **kw) -> bytes:
    bio = io.BytesIO()
    im.save(bio, fmt, **kw)
    return bio.getvalue()


@pytest.mark.needs_shared
def test_real_photos_equal_pil():
    blobs = _real_jpegs() + _tar_jpegs()
    assert len(blobs) > 1000
    s = image_sizes(blobs)
    assert s.counts()["ok"] == len(blobs)
    got = list(zip(s.width.tolist(), s.height.tolist()))
    assert got == [_pil_size(b) for b in blobs]
    assert set(s.format.tolist()) == {FORMAT_NAMES.index("jpeg")}


@pytest.mark.needs_shared
def test_reencoded_copies_equal_pil():
    """Real photos re-encoded in every format the parser reads, in several modes and variants."""
    photos = _real_jpegs()[::180]  # a spread of clothing and COCO photos
    blobs = []
    for k, b in enumerate(photos):
        im = Image.open(io.BytesIO(b)).convert("RGB")
        if k % 2:
            im = im.resize((im.width // 3 + k, im.height // 4 + 1))  # odd sizes
        blobs += [
            _encode(im, "PNG", compress_level=1),
            _encode(im.convert("L"), "PNG", compress_level=1),
            _encode(im.convert("P"), "PNG", compress_level=1),
            _encode(im, "WEBP", quality=80, method=0),
            _encode(im, "WEBP", lossless=True, method=0, quality=0),
            _encode(im.convert("RGBA"), "WEBP", quality=70, method=0),  # VP8X with alpha
            _encode(im, "GIF"),
            _encode(im, "BMP"),
            _encode(im, "JPEG", quality=60, progressive=True),
            _encode(im.convert("L"), "JPEG"),
            _encode(im.convert("CMYK"), "JPEG"),
            _encode(im, "JPEG", exif=_exif_orientation(6)),  # stored size, orientation not applied
        ]
    s = image_sizes(blobs)
    assert s.counts()["ok"] == len(blobs)
    assert list(zip(s.width.tolist(), s.height.tolist())) == [_pil_size(b) for b in blobs]


def _exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


@pytest.mark.parametrize("size", [(1, 1), (1, 300), (301, 1), (3, 7), (333, 201), (256, 256)])
def test_synthetic_sizes_every_format(size):
    rng = np.random.default_rng(size[0] * 1000 + size[1])
    im = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    blobs = [
        _encode(im, "JPEG"),
        _encode(im, "JPEG", progressive=True),
        _encode(im, "PNG", compress_level=1),
        _encode(im, "GIF"),
        _encode(im, "WEBP", method=0),
        _encode(im, "WEBP", lossless=True, method=0, quality=0),
        _encode(im, "BMP"),
    ]
    s = image_sizes(blobs)
    assert s.counts()["ok"] == len(blobs)
    assert list(zip(s.width.tolist(), s.height.tolist())) == [size] * len(blobs)
    assert [FORMAT_NAMES[f] for f in s.format] == ["jpeg", "jpeg", "png", "gif", "webp", "webp", "bmp"]


def test_animated_gif_first_frame_beyond_screen():
    frames = [Image.new("P", (40, 30), 1), Image.new("P", (40, 30), 2)]
    b = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert image_sizes([b]).width[0] == 40
    # Pillow enlarges the canvas when the first frame reaches beyond the logical screen.
    patched = bytearray(b)
    patched[6:10] = bytes([10, 0, 10, 0])  # screen 10x10, frame 40x30 at (0, 0)
    s = image_sizes([bytes(patched)])
    assert (s.width[0], s.height[0]) == _pil_size(bytes(patched)) == (40, 30)


def test_bad_headers_are_statuses():
    jpeg = _encode(Image.new("RGB", (300, 200)), "JPEG")
    png = _encode(Image.new("RGB", (300, 200)), "PNG")
    blobs = [None, b"", b"<html>404</html>", jpeg[:1], jpeg[:40], png[:20], b"\x89PNG\r\n\x1a\n\0\0\0\x0cIDAT" + b"\0" * 30, b"GIF89a" + b"\0" * 7 + b";"]
    s = image_sizes(blobs)
    names = [STATUS_NAMES[c] for c in s.status]
    assert names == ["null", "empty", "unknown_format", "truncated", "truncated", "truncated", "corrupt", "corrupt"]
    assert (s.width[~s.ok] == 0).all() and (s.height[~s.ok] == 0).all()
    reasons = s.reasons()
    assert reasons[0] == "null image" and reasons[4] == "truncated image header (jpeg)"


@pytest.mark.needs_shared
def test_every_cut_of_real_files_is_safe():
    """Cut real files at many points: the result is the full size or `truncated`, nothing else."""
    photos = _real_jpegs()[:5]
    im = Image.open(io.BytesIO(photos[0]))
    variants = photos + [
        _encode(im, "PNG", compress_level=1),
        _encode(im, "WEBP", method=0),
        _encode(im.convert("RGBA"), "WEBP", method=0),
        _encode(im, "GIF"),
        _encode(im, "BMP"),
    ]
    for b in variants:
        full = image_sizes([b])
        cuts = list(range(0, min(len(b), 700))) + list(range(700, len(b), 997))
        s = image_sizes([b[:c] for c in cuts])
        for c, st, w, h in zip(cuts, s.status, s.width, s.height):
            if c == 0:
                assert STATUS_NAMES[st] == "empty"
            elif st == 0:
                assert (w, h) == (full.width[0], full.height[0])
            else:
                assert STATUS_NAMES[st] == "truncated", (c, STATUS_NAMES[st])


def test_random_garbage_never_crashes():
    rng = np.random.default_rng(3)
    blobs = [rng.integers(0, 256, int(n), dtype=np.uint8).tobytes() for n in rng.integers(0, 200, 3000)]
    prefixes = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\0\0\0\0WEBP", b"BM"]
    blobs += [prefixes[k % 5] + b for k, b in enumerate(blobs[:2000])]
    s = image_sizes(blobs, threads=2)
    assert (s.ok == ((s.width > 0) & (s.height > 0))).all()


def test_arrow_inputs_slices_nulls_and_threads():
    ims = [_encode(Image.new("RGB", (w, w + 1)), "PNG") for w in range(1, 40)]
    values = [None if k % 7 == 3 else b for k, b in enumerate(ims)]
    expected = image_sizes(values)
    for typ in (pa.binary(), pa.large_binary()):
        arr = pa.array(values, type=typ)
        for threads in (1, 3, None):
            got = image_sizes(arr, threads=threads)
            assert np.array_equal(got.width, expected.width) and np.array_equal(got.status, expected.status)
        sliced = image_sizes(arr.slice(5, 20))
        assert np.array_equal(sliced.width, expected.width[5:25]) and np.array_equal(sliced.status, expected.status[5:25])
        chunked = image_sizes(pa.chunked_array([arr.slice(0, 10), arr.slice(10)]))
        assert np.array_equal(chunked.height, expected.height)
    obj = np.array(values, dtype=object)
    assert np.array_equal(image_sizes(obj).width, expected.width)
    assert image_sizes([]).width.shape == (0,)


def test_wrong_types_name_the_row_and_the_fix():
    with pytest.raises(InputTypeError, match=r"blobs\[1\] is a str.*read_bytes"):
        image_sizes([b"x", "photo.jpg"])
    with pytest.raises(InputTypeError, match=r"blobs\[0\] is a int"):
        image_sizes([3])
    with pytest.raises(InputTypeError, match="single bytes"):
        image_sizes(b"\xff\xd8\xff")
    with pytest.raises(InputTypeError, match="expected binary or large_binary"):
        image_sizes(pa.array(["a"]))
