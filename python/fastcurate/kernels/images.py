"""Image kernels: sizes from the file header, perceptual hashes from a small decode.

* :func:`image_sizes` reads width and height from JPEG / PNG / GIF / WebP / BMP headers in C++
  (threads, GIL released) without decoding a pixel. The size is the *stored* size: EXIF
  orientation is not applied, as in DataComp's ``original_width`` / ``original_height`` and PIL's
  ``Image.open(f).size``. A bad header is a status, never an exception.
* :func:`perceptual_hashes` decodes each image small (Pillow's JPEG draft mode: libjpeg-turbo's
  DCT-domain downscaling by 1/2, 1/4 or 1/8 straight to luma, so a 12 MP photo is never decoded at
  full size) on a thread pool (Pillow releases the GIL while decoding), then computes the 64-bit
  pHash and dHash of the grayscale pixels in C++ in exact integer arithmetic.
* :func:`gray_hashes` is the C++ hash kernel alone, on grayscale arrays you decoded yourself.

The hash definitions are in docs/dedup.md; tests/test_image_hash.py checks the C++ bits against a
naive numpy implementation of the same definitions.

Thread safety: every function here is safe to call from several threads at once.
"""

from __future__ import annotations

import io
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from .. import _core
from ..errors import InputError
from ._emb import threads_or_all
from ._blobs import blob_rows, to_blob_columns

__all__ = [
    "STATUS_NAMES",
    "FORMAT_NAMES",
    "ImageSizes",
    "image_sizes",
    "DRAFT_SIZE",
    "decode_gray",
    "gray_hashes",
    "PerceptualHashes",
    "perceptual_hashes",
    "hashes_to_hex",
    "hex_to_hashes",
]

#: Status codes of :func:`image_sizes` (index = code). Stable: they may be stored in drop logs.
STATUS_NAMES: Tuple[str, ...] = ("ok", "null", "empty", "unknown_format", "truncated", "corrupt")
#: Format codes of :func:`image_sizes` (index = code).
FORMAT_NAMES: Tuple[str, ...] = ("unknown", "jpeg", "png", "gif", "webp", "bmp")

_STATUS_REASONS: Tuple[str, ...] = (
    "",
    "null image",
    "empty image (0 bytes)",
    "unknown image format (not JPEG, PNG, GIF, WebP or BMP)",
    "truncated image header",
    "corrupt image header",
)


@dataclass(frozen=True)
class ImageSizes:
    """Per-row result of :func:`image_sizes`.

    ``width`` / ``height`` are int32 (0 where the status is not ok); ``status`` and ``format`` are
    uint8 codes indexing :data:`STATUS_NAMES` and :data:`FORMAT_NAMES`.
    """

    width: np.ndarray
    height: np.ndarray
    status: np.ndarray
    format: np.ndarray

    def __len__(self) -> int:
        return len(self.status)

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of rows whose size was read."""
        return self.status == 0

    def reasons(self) -> List[Optional[str]]:
        """A drop reason per row (None for ok rows), e.g. ``"truncated image header (jpeg)"``."""
        out: List[Optional[str]] = []
        for s, f in zip(self.status.tolist(), self.format.tolist()):
            if s == 0:
                out.append(None)
            elif f:
                out.append(f"{_STATUS_REASONS[s]} ({FORMAT_NAMES[f]})")
            else:
                out.append(_STATUS_REASONS[s])
        return out

    def counts(self) -> Dict[str, int]:
        """Rows per status name."""
        c = np.bincount(self.status, minlength=len(STATUS_NAMES))
        return {name: int(c[k]) for k, name in enumerate(STATUS_NAMES)}


def image_sizes(blobs: Any, *, threads: Optional[int] = None) -> ImageSizes:
    """Width and height of every encoded image, read from its header (no decode).

    ``blobs``: a pyarrow ``binary`` / ``large_binary`` Array or ChunkedArray (read in place, nulls
    and slices honoured), anything with ``__arrow_c_array__``, or a list of ``bytes`` / None.
    ``threads``: None = all cores; the result never depends on it.

    Supported: JPEG (first SOF; progressive, CMYK and 12-bit included), PNG (IHDR), GIF (logical
    screen, enlarged to the first frame's extent as Pillow does), WebP (VP8, VP8L, VP8X canvas)
    and BMP. Other formats get status ``unknown_format``.
    """
    kind, payload, _ = to_blob_columns(blobs)
    w, h, status, fmt = _core.image_sizes(kind, payload, threads_or_all(threads))
    return ImageSizes(width=w, height=h, status=status, format=fmt)


# ---------------------------------------------------------------------------------------------
# Perceptual hashes

#: Pillow's JPEG draft target: the largest DCT scaling (1/2, 1/4, 1/8) that keeps both sides at
#: least this many pixels. 32 matches the 32x32 pHash grid, so no grid cell is ever smaller than a
#: decoded pixel when the image is at least 32x32.
DRAFT_SIZE = 32


def decode_gray(data: Union[bytes, memoryview], *, draft_size: int = DRAFT_SIZE) -> np.ndarray:
    """Decodes an image to an 8-bit grayscale array, as small as JPEG's DCT scaling allows.

    JPEG: libjpeg-turbo decodes the luma channel only, downscaled in the DCT domain by the largest
    of 1/2, 1/4, 1/8 that keeps both sides >= ``draft_size`` (at 1/8 each pixel is the mean of an
    8x8 block). Other formats decode at full size. Then Pillow's ``convert("L")`` (ITU-R 601-2
    luma) for non-gray modes; the first frame of animations; alpha is ignored; EXIF orientation is
    not applied (as imagehash does). Returns a read-only (height, width) uint8 array. Raises
    whatever Pillow raises for an undecodable image.
    """
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("perceptual hashes need Pillow: pip install 'fastcurate[images]'") from e
    with Image.open(io.BytesIO(data)) as im:
        if draft_size:
            im.draft("L", (draft_size, draft_size))
        im.load()
        g = im if im.mode == "L" else im.convert("L")
        # tobytes + frombuffer: one copy fewer than np.asarray(g) (5 % of a small decode).
        return np.frombuffer(g.tobytes(), dtype=np.uint8).reshape(g.height, g.width)


def gray_hashes(images: Sequence[np.ndarray], *, threads: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """``(phash, dhash)`` (uint64 each) of 2-D uint8 grayscale arrays, computed in C++.

    Exact integer definitions (docs/dedup.md): both hashes are box-filter area means of the image
    (any size >= 1x1), pHash the sign of the 8x8 low-frequency DCT-II block against its median,
    dHash the sign of horizontal differences on a 9x8 grid. Bit k of the hash is bit 63-k of the
    integer, so ``f"{h:016x}"`` reads like imagehash's hex strings.
    """
    return _core.gray_hashes(list(images), threads_or_all(threads))


@dataclass(frozen=True)
class PerceptualHashes:
    """Per-row result of :func:`perceptual_hashes`.

    ``phash`` / ``dhash``: uint64 (0 where not ok); ``ok``: bool; ``errors``: row -> reason for
    the rows that could not be hashed (null or undecodable image).
    """

    phash: np.ndarray
    dhash: np.ndarray
    ok: np.ndarray
    errors: Dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ok)


def perceptual_hashes(
    blobs: Any,
    *,
    threads: Optional[int] = None,
    draft_size: int = DRAFT_SIZE,
    chunk_size: int = 32,
) -> PerceptualHashes:
    """pHash and dHash of every encoded image (see :func:`decode_gray` and :func:`gray_hashes`).

    Decoding runs on ``threads`` Python threads (None = all cores); each thread hashes its chunk of
    ``chunk_size`` images in one C++ call. A null or undecodable image is not an error: its row
    gets ``ok=False`` and a reason in ``errors``. The hashes do not depend on ``threads``.
    """
    n, fetch = blob_rows(blobs)
    if chunk_size < 1:
        raise InputError(f"chunk_size must be >= 1, got {chunk_size}")
    n_threads = threads_or_all(threads) or (os.cpu_count() or 1)
    phash = np.zeros(n, dtype=np.uint64)
    dhash = np.zeros(n, dtype=np.uint64)
    ok = np.zeros(n, dtype=bool)
    errors: Dict[int, str] = {}

    def work(lo: int) -> Tuple[List[int], np.ndarray, np.ndarray, Dict[int, str]]:
        rows: List[int] = []
        arrays: List[np.ndarray] = []
        errs: Dict[int, str] = {}
        for i, b in enumerate(fetch(lo, min(n, lo + chunk_size)), start=lo):
            if b is None:
                errs[i] = "null image"
                continue
            try:
                g = decode_gray(b, draft_size=draft_size)
            except MemoryError:
                raise
            except Exception as e:  # any failure of one untrusted image is that row's drop reason
                errs[i] = f"undecodable image: {type(e).__name__}: {_ADDRESS.sub('', str(e))}"
                continue
            if g.size == 0:
                errs[i] = "undecodable image: 0 pixels"
                continue
            rows.append(i)
            arrays.append(g)
        ph, dh = _core.gray_hashes(arrays, 1)  # GIL released inside
        return rows, ph, dh, errs

    starts: Iterable[int] = range(0, n, chunk_size)
    if n_threads == 1 or n <= chunk_size:
        results = map(work, starts)
        _collect(results, phash, dhash, ok, errors)
    else:
        with ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="fastcurate-hash") as ex:
            _collect(ex.map(work, starts), phash, dhash, ok, errors)
    return PerceptualHashes(phash=phash, dhash=dhash, ok=ok, errors=errors)


# Pillow names the file object in some messages ("<_io.BytesIO object at 0x7f...>"): dropped so
# that a rerun records the same reason.
_ADDRESS = re.compile(r" ?<[^<>]* at 0x[0-9a-fA-F]+>")


def _collect(results: Iterable[Tuple[List[int], np.ndarray, np.ndarray, Dict[int, str]]], phash: np.ndarray,
             dhash: np.ndarray, ok: np.ndarray, errors: Dict[int, str]) -> None:
    for rows, ph, dh, errs in results:
        if rows:
            idx = np.asarray(rows, dtype=np.int64)
            phash[idx] = ph
            dhash[idx] = dh
            ok[idx] = True
        errors.update(errs)


def hashes_to_hex(hashes: np.ndarray) -> List[str]:
    """16-digit lower-case hex strings (same digit order as ``str(imagehash.phash(img))``)."""
    return [f"{int(h):016x}" for h in np.asarray(hashes, dtype=np.uint64)]


def hex_to_hashes(hexes: Sequence[str]) -> np.ndarray:
    """The inverse of :func:`hashes_to_hex` (also reads imagehash's 8x8 hex strings)."""
    out = np.empty(len(hexes), dtype=np.uint64)
    for k, s in enumerate(hexes):
        if len(s) != 16:
            raise InputError(f"hexes[{k}] = {s!r} is not a 64-bit hash (16 hex digits)")
        try:
            out[k] = int(s, 16)
        except ValueError:
            raise InputError(f"hexes[{k}] = {s!r} is not hexadecimal") from None
    return out
