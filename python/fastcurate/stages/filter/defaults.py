"""The filter's options and defaults (DataComp's basic filter, docs/filter.md), in a module of
their own so that the ``filter`` and ``group`` command lines read them without importing the stage."""

from __future__ import annotations

__all__ = ["CAPTION_RULES", "IMAGE_SIZE_MODES", "WORDS_ABOVE", "CHARS_ABOVE", "MIN_IMAGE_SIZE", "MAX_ASPECT_RATIO"]

CAPTION_RULES = ("url", "filename", "boilerplate", "non_letters", "repeated")
IMAGE_SIZE_MODES = ("auto", "on", "off")
# the defaults of FilterStage, GroupStage and both command lines
WORDS_ABOVE = 2
CHARS_ABOVE = 5
MIN_IMAGE_SIZE = 200
MAX_ASPECT_RATIO = 3.0
