"""fastcurate: fast, exact curation of web image-text pools into CLIP training sets.

The hot loops are C++17 kernels (``fastcurate._core``); this package is their typed Python API.
Layout: ``io`` (shard discovery, readers, atomic writers), ``kernels`` (the C++-backed kernels),
``models`` (ONNX encoders), ``runner`` (the stage contract and its runners), ``stages`` (one folder
per stage). See the README for a tour and docs/ for each stage's exact semantics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from .errors import FastcurateError, FormatError, InputError, InputTypeError, ModelError
from .kernels.balance import (
    balance,
    count_entries,
    entry_probs,
    expected_size,
    hash_keys,
    keep_probabilities,
    p_to_t,
    t_for_target_size,
    t_to_p,
    uniform_draws,
)
from .stages.curate.stage import curate
from .kernels.matcher import Matcher, MatcherWarning, MatchResult, SpanResult
from .metadata import build_metadata, load_metadata, save_metadata
from .runner import Batch, Context, Result, Stage, run_stage

# Imported on first use (PEP 562): every `fastcurate` command imports this package, and these pull
# in the judge, the clustering, the pipeline and the report, which a `curate` or `embed` run never
# needs (~0.2 s of CPU per process), and the ONNX encoders and their exporters, which curation and
# matching never need (~25 ms more).
_LAZY: Dict[str, Tuple[str, Optional[str]]] = {"models": (".models", None), "judge": (".stages.judge", None),
                                              "report": (".report", None)}
for _mod, _names in (
    (".models", ("ClipEncoder", "ClipTokenizer", "ImageEncoder", "TextEncoder", "clip_score", "export_clip",
                 "export_image_model", "export_text_model", "load_bundle", "make_text_bundle")),
    (".stages.embed.stage", ("embed_shards",)),
    (".kernels.kmeans", ("KMeans", "Assignment")),
    (".kernels.silhouette", ("silhouette", "SilhouetteResult")),
    (".stages.cluster.noise", ("noise_study", "NoiseStudyResult")),
    (".pipeline", ("load_pipeline", "run_pipeline")),
    (".report", ("build_report",)),
):
    _LAZY.update({n: (_mod, n) for n in _names})
del _mod, _names

if TYPE_CHECKING:
    from . import models, report  # noqa: F401  (names for type checkers; imported on first use)
    from .models import (ClipEncoder, ClipTokenizer, ImageEncoder, TextEncoder, clip_score, export_clip,
                         export_image_model, export_text_model, load_bundle, make_text_bundle)
    from .stages.embed.stage import embed_shards
    from .kernels.kmeans import Assignment, KMeans
    from .kernels.silhouette import SilhouetteResult, silhouette
    from .pipeline import load_pipeline, run_pipeline
    from .report import build_report
    from .stages import judge
    from .stages.cluster.noise import NoiseStudyResult, noise_study


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        m = importlib.import_module(mod, __name__)
        value = m if attr is None else getattr(m, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fastcurate' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))


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
    "KMeans",
    "Assignment",
    "silhouette",
    "SilhouetteResult",
    "noise_study",
    "NoiseStudyResult",
    "build_metadata",
    "load_metadata",
    "save_metadata",
    "count_entries",
    "t_to_p",
    "p_to_t",
    "entry_probs",
    "balance",
    "keep_probabilities",
    "expected_size",
    "t_for_target_size",
    "hash_keys",
    "uniform_draws",
    "curate",
    "run_stage",
    "run_pipeline",
    "load_pipeline",
    "build_report",
    "report",
    "Stage",
    "Batch",
    "Result",
    "Context",
    "judge",
    "ClipEncoder",
    "ClipTokenizer",
    "ImageEncoder",
    "TextEncoder",
    "clip_score",
    "embed_shards",
    "export_clip",
    "export_image_model",
    "export_text_model",
    "load_bundle",
    "make_text_bundle",
    "__version__",
]
