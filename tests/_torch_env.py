"""``pytest.importorskip`` for torchvision and open_clip, through fastcurate.models.torch_compat.

The test environment pairs a CPU build of torch with PyPI's (CUDA) torchvision wheel (see the
Makefile's TORCH_PINS); a plain ``import torchvision`` there raises RuntimeError, which
``pytest.importorskip`` does not catch.
"""

from __future__ import annotations

from types import ModuleType
from typing import Optional

import pytest


def importorskip(name: str, reason: Optional[str] = None) -> ModuleType:
    """Import ``name`` (torchvision, open_clip or one of their submodules) or skip the test."""
    from fastcurate.models.torch_compat import import_torchvision

    try:
        import_torchvision()
    except ImportError:
        pytest.skip(reason or f"could not import {name}: torchvision is not installed")
    return pytest.importorskip(name, reason=reason)
