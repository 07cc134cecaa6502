"""fastcurate: fast, exact curation of web image-text pools into CLIP training sets.

The hot loops are C++17 kernels (``fastcurate._core``); this package is their typed Python API.
See the README for a tour and DESIGN.md for the semantics each stage reproduces.
"""

from __future__ import annotations

from .errors import FastcurateError, FormatError, InputError, InputTypeError, ModelError
from .matcher import Matcher, MatcherWarning, MatchResult, SpanResult, read_entries

__version__ = "0.1.0"

__all__ = [
    "FastcurateError",
    "FormatError",
    "InputError",
    "InputTypeError",
    "ModelError",
    "Matcher",
    "MatcherWarning",
    "MatchResult",
    "SpanResult",
    "read_entries",
    "__version__",
]
