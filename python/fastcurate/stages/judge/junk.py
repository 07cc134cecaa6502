"""Which captions are file names, URLs or boilerplate instead of descriptions.

This is the offline judge's own small rule set, kept behind one function, :func:`junk_flags`, so that
it can be swapped for the ``filter`` stage's bad-alt-text rules when those land (the judge then
scores clusters with exactly the rules that filter rows). Every rule looks at the WHOLE caption: a
descriptive caption that merely mentions a URL or ends with "photo" is not junk.

Rules (RE2 syntax, run by Arrow's vectorised regex kernels; case-insensitive):

``filename``
    a file name with an image, video or document extension, possibly with spaces
    (``IMG_0042.JPG``, ``Screen Shot 2019-05-17 at 10.22.01 AM.png``, ``cloth-diapers-for-cats.jpg``).
``camera``
    a camera or scanner default name without extension (``DSC01234``, ``IMG 0042``, ``P1010234``,
    ``GOPR0042``, ``Screenshot_20190517``).
``url``
    the caption is one URL (``https://...``, ``www....``).
``no_letters``
    no letter at all: empty, numbers, symbols, dates.
``hash``
    one token of 12+ identifier characters with 3+ digits (``8d2f0c1e9a7b44e1``,
    ``mW4REWf2h3s9-mKoaVru72w``, ``273427021649_1``).
``boilerplate``
    a generic placeholder phrase on its own: ``image``, ``photo 12``, ``untitled``, ``no image
    available``, ``click to enlarge``, ``thumbnail``, ``logo``, ...
"""

from __future__ import annotations

from typing import Dict, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["JUNK_RULES", "junk_flags", "is_junk"]

_EXT = (r"jpe?g|jpe|jfif|png|gif|webp|bmp|tiff?|heic|heif|avif|svg|ico|raw|cr2|nef|arw|dng|psd|"
        r"pdf|mp4|mov|avi|webm|mkv|wmv|flv")

JUNK_RULES: Dict[str, Union[str, Tuple[str, ...]]] = {
    "filename": r"(?i)^\s*[^\s/\\][^/\\]{0,120}\.(" + _EXT + r")(\?\S*)?\s*$",
    "camera": (r"(?i)^\s*(img|dsc|dscn|dscf|dsci|dcim|pict?|imag|gopr|gp|mvi|sam|wp|pxl|vid|mov|sdc|cimg|"
               r"screenshot|screen shot|scan|capture|photo|image|picture|dji)[\s_\-]*\d[\w\-]*\s*$"
               r"|(?i)^\s*p\d{6,}\s*$"),
    "url": r"(?i)^\s*(https?://|ftp://|www\.)\S*\s*$",
    "no_letters": r"^[^\p{L}]*$",
    # one token of 12+ identifier characters holding 3+ digits (both patterns must match)
    "hash": (r"^\s*[A-Za-z0-9_\-]{12,}\s*$", r"^(\D*\d){3}"),
    "boilerplate": (r"(?i)^\W*(image|img|photo|photograph|picture|pic|foto|bild|imagen|thumbnail|thumb|untitled|"
                    r"untitled design|no title|no description|description|default|placeholder|logo|banner|icon|"
                    r"avatar|profile picture|null|none|nan|n/?a|undefined|alt|alt text|image not found|"
                    r"no image|no image available|image unavailable|no photo|photo not available|loading|"
                    r"click here|click to enlarge|click to zoom|view larger|view full size|enlarge|zoom|"
                    r"product image|main image|featured image|gallery image|preview|cover|header|"
                    r"(image|photo|picture|pic|slide|page|figure|fig|item|product) ?#?\d*)\W*$"),
}


def junk_flags(texts: Union[pa.Array, pa.ChunkedArray]) -> Dict[str, np.ndarray]:
    """One boolean array per rule of :data:`JUNK_RULES` (True: the caption is junk by that rule).

    ``texts`` is an Arrow string array; nulls count as ``no_letters``. Vectorised (Arrow's RE2
    kernels), about 1M captions per second per rule on one core.
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if not pa.types.is_string(texts.type) and not pa.types.is_large_string(texts.type):
        texts = texts.cast(pa.string())
    filled = pc.fill_null(texts, "")
    out: Dict[str, np.ndarray] = {}
    for name, rule in JUNK_RULES.items():
        pats = (rule,) if isinstance(rule, str) else rule
        m = np.ones(len(filled), dtype=bool)
        for rx in pats:  # a rule given as several patterns needs all of them
            m &= pc.match_substring_regex(filled, rx).to_numpy(zero_copy_only=False).astype(bool)
        out[name] = m
    return out


def is_junk(texts: Union[pa.Array, pa.ChunkedArray]) -> np.ndarray:
    """True where a caption is junk by any rule of :data:`JUNK_RULES`."""
    flags = junk_flags(texts)
    acc = np.zeros(len(texts), dtype=bool)
    for v in flags.values():
        acc |= v
    return acc
