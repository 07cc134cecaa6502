"""Importing torchvision and open_clip beside a CPU-only build of torch (export toolchain only).

PyPI's x86_64 torchvision wheels are built against CUDA torch: their compiled ops library links
``libc10_cuda.so``. Beside a CPU build of the same torch release (``torch==2.13.0+cpu``, a ~0.9 GB
install instead of ~5.5 GB of CUDA libraries that a CPU machine never uses), that library fails to
load; torchvision is designed to run on without its ops, but its ``_meta_registrations`` registers
fake kernels for ``torchvision::nms`` and ``torchvision::qnms`` without checking, so the import
raises ``RuntimeError: operator torchvision::nms does not exist``.

fastcurate's export needs only torchvision's pure-Python parts (open_clip's transforms, the ImageNet
class names in the weight metadata), never its compiled ops. :func:`import_torchvision` retries the
import once after declaring those two operator schemas, with no kernels: calling
``torchvision.ops.nms`` still raises torchvision's own "Couldn't load custom C++ ops" error. With a
matching CUDA or CPU torchvision nothing is declared and nothing changes.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any, List

# Kept alive for the life of the process: dropping a torch.library.Library removes its definitions.
_SCHEMA_LIBS: List[Any] = []
_MISSING_OP = "operator torchvision::nms does not exist"


def import_torchvision() -> ModuleType:
    """``import torchvision``, working around a CUDA torchvision wheel beside a CPU torch.

    Raises ImportError when torchvision (or torch) is not installed, like a plain import.
    """
    try:
        import torchvision
    except RuntimeError as e:
        if _MISSING_OP not in str(e):
            raise
        import torch

        # Forget the half-imported package so the retry runs its __init__ from the top.
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
        _SCHEMA_LIBS.append(lib)
        import torchvision
    return torchvision


def import_open_clip() -> ModuleType:
    """``import open_clip`` (which imports torchvision's transforms), see :func:`import_torchvision`."""
    import_torchvision()
    import open_clip

    return open_clip
