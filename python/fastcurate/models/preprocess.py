"""Image decoding and CLIP preprocessing, equal to open_clip's eval transform, without torch.

open_clip's eval transform for a square model input is::

    Resize(size, BICUBIC)      # shortest side -> size, long side int(size * long / short)
    CenterCrop(size)           # offsets int(round((h - size) / 2)), round-half-even
    convert("RGB"); ToTensor(); Normalize(mean, std)

ImageNet classifiers (the "image" bundles) use the same transform with a larger resize than the crop
(``resize_size``: ``Resize(256)``, ``CenterCrop(224)``, torchvision's eval transform), which is
equally exact.

:class:`Preprocessor` performs the same PIL calls in the same order and the same float32 arithmetic,
so its output is bitwise equal to ``preprocess(img)`` for RGB, L, RGBA and LA images (the test suite
checks this on real photos). Two things are done *before* that, on purpose, because open_clip's own
loader gets them wrong for web data:

* EXIF orientation is applied (``exif_transpose=True``), so a phone photo is embedded upright;
* modes that PIL cannot resample well are normalised first: palette images are expanded (PIL would
  resize them with nearest-neighbour), 16-bit images are scaled to 8 bits (``convert("RGB")`` would
  clip them to white), CMYK / YCbCr / 1-bit images are converted.

The opt-in fast mode asks the JPEG decoder for a DCT-downscaled image (``Image.draft``) whose short
side is still at least the model size, then runs the same resize; the benchmark reports its cosine
agreement with the exact path.

Thread safety: a :class:`Preprocessor` is immutable; call it from any number of threads (PIL
releases the GIL while decoding and resampling).
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from ..errors import FormatError, InputError, InputTypeError

__all__ = ["PreprocessSpec", "Preprocessor", "ImageError", "ImageSource", "decode_image"]

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, Any]  # Any: a PIL image

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_MAX_PIXELS = 178_956_970  # PIL's own decompression-bomb error threshold (2 x MAX_IMAGE_PIXELS)


class ImageError(FormatError):
    """One image could not be decoded; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PreprocessSpec:
    """What the model expects: stored in the bundle as ``preprocess.json``."""

    size: Tuple[int, int] = (224, 224)
    resize_mode: str = "shortest"  # "shortest" (resize + centre crop) or "squash"
    interpolation: str = "bicubic"
    mean: Tuple[float, float, float] = OPENAI_MEAN
    std: Tuple[float, float, float] = OPENAI_STD
    # "shortest" only: the short side is resized to this, then the centre ``size`` is cropped.
    # None means ``size`` (CLIP's transform); ImageNet classifiers use 256 for a 224 crop (0.875).
    resize_size: Optional[int] = None

    def __post_init__(self) -> None:
        size = self.size
        if isinstance(size, int):
            size = (size, size)
        object.__setattr__(self, "size", (int(size[0]), int(size[1])))
        object.__setattr__(self, "mean", tuple(float(x) for x in self.mean))
        object.__setattr__(self, "std", tuple(float(x) for x in self.std))
        if self.resize_mode not in ("shortest", "squash"):
            raise InputError(
                f"resize_mode {self.resize_mode!r} is not supported; use 'shortest' or 'squash' "
                "(open_clip's 'longest' letterboxing is not implemented)"
            )
        if self.resize_mode == "shortest" and self.size[0] != self.size[1]:
            raise InputError(f"resize_mode 'shortest' needs a square size, got {self.size}")
        if self.resize_size is not None:
            object.__setattr__(self, "resize_size", int(self.resize_size))
            if self.resize_mode != "shortest":
                raise InputError("resize_size applies to resize_mode 'shortest' (resize, then centre crop) only")
            if self.resize_size < self.size[0]:
                raise InputError(f"resize_size {self.resize_size} is smaller than the crop {self.size[0]}; "
                                 "it must be at least the model's input size")
        if self.interpolation not in ("bicubic", "bilinear", "nearest"):
            raise InputError(f"interpolation {self.interpolation!r} is not one of bicubic, bilinear, nearest")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise InputError("mean and std must have 3 values (RGB)")

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        if self.resize_size is None:  # CLIP bundles keep their preprocess.json unchanged
            del d["resize_size"]
        return d

    @property
    def short_side(self) -> int:
        """The short side after the resize (before the centre crop)."""
        return int(self.resize_size if self.resize_size is not None else self.size[0])

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "PreprocessSpec":
        return cls(
            size=tuple(d["size"]),
            resize_mode=d.get("resize_mode", "shortest"),
            interpolation=d.get("interpolation", "bicubic"),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            resize_size=d.get("resize_size"),
        )


def _open(src: ImageSource, name: str):
    from PIL import Image

    if isinstance(src, Image.Image):
        return src
    if isinstance(src, (str, os.PathLike)):
        try:
            data = Path(src).read_bytes()
        except OSError as e:
            raise ImageError("unreadable", f"{name}: cannot read file ({e.strerror or e})") from None
    elif isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
    elif src is None:
        raise ImageError("missing", f"{name}: no image (null)")
    else:
        raise InputTypeError(
            f"{name}: images must be paths, bytes or PIL images, got {type(src).__name__}"
        )
    if len(data) == 0:
        raise ImageError("empty", f"{name}: zero-byte image")
    try:
        with warnings.catch_warnings():
            # Size is checked against our own max_pixels below, so PIL's warning is noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ImageError("too_large", f"{name}: image is larger than PIL's decompression-bomb limit") from None
    except Exception as e:  # PIL raises many types for garbage (UnidentifiedImageError, SyntaxError...)
        raise ImageError("undecodable", f"{name}: not a decodable image ({type(e).__name__}: {e})") from None


def _to_resizable_mode(img):
    """Bring exotic modes to one PIL can resample correctly (see module docstring)."""
    from PIL import Image

    mode = img.mode
    if mode in ("RGB", "L", "RGBA", "LA"):
        return img
    if mode == "P" or mode == "PA":
        return img.convert("RGBA" if ("transparency" in img.info or mode == "PA") else "RGB")
    if mode == "1":
        return img.convert("L")
    if mode.startswith("I") or mode == "F":
        a = np.asarray(img)
        if a.dtype.kind == "f":
            hi = float(np.nanmax(a)) if a.size else 0.0
            a = np.nan_to_num(a) * (255.0 if hi <= 1.0 else 1.0)
        elif mode.startswith("I;16") or (a.size and int(a.max()) > 255):
            a = a.astype(np.float64) / 257.0  # 0..65535 -> 0..255
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        if a.ndim == 3:
            return Image.fromarray(a[..., :3] if a.shape[2] >= 3 else a[..., 0], "RGB" if a.shape[2] >= 3 else "L")
        return Image.fromarray(a, "L")
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, RGBa ...


def decode_image(
    src: ImageSource,
    *,
    name: str = "image",
    exif_transpose: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: Optional[Tuple[int, int]] = None,
):
    """Decode ``src`` into a fully loaded PIL image in a mode PIL can resample.

    Raises :class:`ImageError` (a :class:`~fastcurate.errors.FormatError`) with a ``reason`` of
    ``empty``, ``undecodable``, ``truncated``, ``too_large``, ``unreadable`` or ``missing``.
    """
    from PIL import Image, ImageOps

    img = _open(src, name)
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageError("undecodable", f"{name}: image has size {w}x{h}")
    if w * h > max_pixels:
        raise ImageError("too_large", f"{name}: {w}x{h} pixels exceeds max_pixels={max_pixels}")
    try:
        if draft_size is not None and getattr(img, "format", None) == "JPEG":
            img.draft("RGB" if img.mode in ("RGB", "YCbCr") else img.mode, draft_size)
        img.load()
        if exif_transpose:
            img = ImageOps.exif_transpose(img)
        img = _to_resizable_mode(img)
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        msg = str(e)
        reason = "truncated" if ("truncated" in msg or isinstance(e, EOFError)) else "undecodable"
        raise ImageError(reason, f"{name}: {reason} image ({type(e).__name__}: {msg})") from None
    return img


class Preprocessor:
    """Decode + resize + crop + normalise, equal to open_clip's eval transform (see module doc)."""

    def __init__(
        self,
        spec: PreprocessSpec,
        *,
        fast: bool = False,
        exif_transpose: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        from PIL import Image

        self.spec = spec
        self.fast = bool(fast)
        self.exif_transpose = bool(exif_transpose)
        self.max_pixels = int(max_pixels)
        self._resample = {
            "bicubic": Image.Resampling.BICUBIC,
            "bilinear": Image.Resampling.BILINEAR,
            "nearest": Image.Resampling.NEAREST,
        }[spec.interpolation]
        self._mean = np.asarray(spec.mean, dtype=np.float32)
        self._std = np.asarray(spec.std, dtype=np.float32)

    def resize_crop(self, img):
        """The PIL part of the transform: resize, centre crop, RGB. Returns an RGB PIL image."""
        th, tw = self.spec.size
        w, h = img.size
        if self.spec.resize_mode == "squash":
            img = img.resize((tw, th), self._resample)
        else:
            # torchvision's _compute_resized_output_size: int() truncation of the long side.
            s = self.spec.short_side
            if w <= h:
                nw, nh = s, int(s * h / w)
            else:
                nw, nh = int(s * w / h), s
            img = img.resize((nw, nh), self._resample)
            top = int(round((nh - th) / 2.0))
            left = int(round((nw - tw) / 2.0))
            img = img.crop((left, top, left + tw, top + th))
        return img.convert("RGB")

    def load_uint8(self, src: ImageSource, name: str = "image") -> np.ndarray:
        """Decode and resize one image to ``uint8 [H, W, 3]``; raises :class:`ImageError`."""
        # the DCT-downscaled image must keep the short side at least the resize target
        draft = None
        if self.fast:
            s = self.spec.short_side
            draft = self.spec.size if self.spec.resize_mode == "squash" else (s, s)
        img = decode_image(src, name=name, exif_transpose=self.exif_transpose, max_pixels=self.max_pixels,
                           draft_size=draft)
        try:
            out = np.asarray(self.resize_crop(img), dtype=np.uint8)
        except (OSError, ValueError) as e:
            raise ImageError("undecodable", f"{name}: cannot resize ({type(e).__name__}: {e})") from None
        return out

    def normalize(self, batch_uint8: np.ndarray) -> np.ndarray:
        """``uint8 [n, H, W, 3]`` -> ``float32 [n, 3, H, W]``, the arithmetic of ToTensor + Normalize."""
        x = batch_uint8.astype(np.float32)
        x /= np.float32(255.0)
        x -= self._mean
        x /= self._std
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def __call__(self, src: ImageSource) -> np.ndarray:
        """One image to ``float32 [3, H, W]``, like ``open_clip preprocess(img)``."""
        return self.normalize(self.load_uint8(src)[None])[0]
