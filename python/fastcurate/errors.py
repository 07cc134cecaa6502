"""The error hierarchy of fastcurate.

Every error that fastcurate raises on purpose derives from :class:`FastcurateError`, so callers can
catch the whole family with one ``except``. The subclasses also derive from the closest built-in
exception (``ValueError``, ``TypeError``, ``OSError``) so that generic handlers keep working.
"""

from __future__ import annotations

__all__ = [
    "FastcurateError",
    "InputError",
    "InputTypeError",
    "FormatError",
    "ModelError",
]


class FastcurateError(Exception):
    """Base class of every error raised by fastcurate."""


class InputError(FastcurateError, ValueError):
    """An input value, file, column or row is invalid; the message says which and how to fix it."""


class InputTypeError(FastcurateError, TypeError):
    """An input has the wrong type (e.g. a non-string item in a list of texts)."""


class FormatError(FastcurateError, OSError):
    """A file on disk is truncated, corrupted, of a foreign format or of an unsupported version."""


class ModelError(FastcurateError, RuntimeError):
    """A model bundle is missing, incomplete or cannot be run."""
