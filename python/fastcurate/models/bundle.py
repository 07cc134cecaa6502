"""The model bundle: a directory that holds everything the runtime needs, and nothing that needs torch.

Layout (``manifest.json`` is the source of truth)::

    manifest.json      format, kind ("clip", "text" or "image"), source, embed_dim, variants -> files, checksums
    preprocess.json    image size, resize mode, interpolation, mean, std      (clip and image bundles)
    tokenizer.json     Hugging Face tokenizers file                           (clip and text bundles)
    labels.json        the classifier's class names, in logit order           (image bundles)
    image.onnx text.onnx               fp32
    image.fp16.onnx text.fp16.onnx     fp16 (weights and compute; inputs and outputs stay float32)
    image.int8.onnx text.int8.onnx     optional, dynamic int8 quantisation for CPUs

An "image" bundle is an image classifier (e.g. EfficientNet-Lite0 on ImageNet): its ONNX graph has
two outputs, the pooled features before the classifier (the embedding, L2-normalised by the runtime)
and the class logits; ``labels.json`` names the classes.

Bundles are written into a temporary sibling directory and renamed into place, so a crashed export
never leaves a half-written bundle behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from ..errors import ModelError
from .preprocess import PreprocessSpec

__all__ = ["Bundle", "load_bundle", "write_manifest", "sha256_file", "BUNDLE_FORMAT", "KINDS", "atomic_bundle_dir"]

BUNDLE_FORMAT = "fastcurate-embed-bundle"
BUNDLE_VERSION = 1
KINDS = ("clip", "text", "image")
# keys every manifest has, and the ones each kind adds
_REQUIRED = ("kind", "embed_dim", "variants", "files")
_REQUIRED_BY_KIND = {"clip": ("tokenizer",), "text": ("tokenizer",), "image": ("outputs", "labels")}


def sha256_file(path: Union[str, Path]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Bundle:
    """A loaded, validated bundle manifest. Paths are absolute."""

    root: Path
    manifest: Dict[str, Any]
    preprocess: Optional[PreprocessSpec] = None
    _labels: Optional[List[str]] = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def embed_dim(self) -> int:
        return int(self.manifest["embed_dim"])

    @property
    def variants(self) -> Dict[str, Dict[str, str]]:
        return dict(self.manifest["variants"])

    @property
    def tokenizer_path(self) -> Path:
        if "tokenizer" not in self.manifest:
            raise ModelError(f"bundle {self.root} is a {self.kind!r} bundle: it has no tokenizer (no text tower)")
        return self.root / self.manifest["tokenizer"]["file"]

    @property
    def labels(self) -> List[str]:
        """The class names of an image bundle, in logit order (``labels.json``)."""
        if self._labels is None:
            if "labels" not in self.manifest:
                raise ModelError(f"bundle {self.root} is a {self.kind!r} bundle: it has no class labels")
            p = self.root / self.manifest["labels"]["file"]
            try:
                labels = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise ModelError(f"bundle {self.root}: unreadable {p.name} ({e}); re-export the bundle") from None
            if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
                raise ModelError(f"bundle {self.root}: {p.name} must be a JSON list of strings; re-export the bundle")
            self._labels = labels
        return list(self._labels)

    def model_path(self, tower: str, precision: str) -> Path:
        """Path of ``tower`` ("image" or "text") at ``precision`` ("fp32", "fp16", "int8")."""
        var = self.manifest["variants"].get(precision)
        if var is None:
            raise ModelError(
                f"bundle {self.root} has no {precision} variant (has: {', '.join(self.manifest['variants'])}); "
                f"re-export with that precision or pick another"
            )
        if tower not in var:
            raise ModelError(f"bundle {self.root} has no {tower} tower (a {self.kind} bundle)")
        return self.root / var[tower]

    def verify(self) -> None:
        """Recompute every file's SHA-256 and compare with the manifest; raise ModelError on mismatch."""
        for name, digest in self.manifest["files"].items():
            p = self.root / name
            if not p.is_file():
                raise ModelError(f"bundle {self.root}: {name} is missing; re-export the bundle")
            got = sha256_file(p)
            if got != digest:
                raise ModelError(f"bundle {self.root}: {name} is corrupted (sha256 {got[:12]} != {digest[:12]})")


def load_bundle(path: Union[str, "os.PathLike[str]"], verify: bool = False) -> Bundle:
    """Read and check ``manifest.json`` (and ``preprocess.json``); ``verify`` also checks SHA-256s."""
    root = Path(path).resolve()
    mf = root / "manifest.json"
    if not mf.is_file():
        raise ModelError(
            f"{root} is not a model bundle (no manifest.json); create one with `fastcurate export`"
        )
    try:
        manifest = json.loads(mf.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"{mf}: unreadable manifest ({e})") from None
    if manifest.get("format") != BUNDLE_FORMAT:
        raise ModelError(f"{mf}: format is {manifest.get('format')!r}, expected {BUNDLE_FORMAT!r}")
    if int(manifest.get("version", 0)) > BUNDLE_VERSION:
        raise ModelError(f"{mf}: bundle version {manifest.get('version')} is newer than this fastcurate; upgrade")
    kind = manifest.get("kind")
    if kind not in KINDS:
        raise ModelError(f"{mf}: kind {kind!r} is not one of {', '.join(KINDS)}; upgrade fastcurate or re-export")
    for key in _REQUIRED + _REQUIRED_BY_KIND[kind]:
        if key not in manifest:
            raise ModelError(f"{mf}: missing key {key!r}; re-export the bundle")
    for name, digest in manifest["files"].items():
        if not (root / name).is_file():
            raise ModelError(f"bundle {root}: {name} is missing; re-export the bundle")
    spec = None
    if kind in ("clip", "image"):
        pp = root / "preprocess.json"
        if not pp.is_file():
            raise ModelError(f"bundle {root}: preprocess.json is missing")
        spec = PreprocessSpec.from_dict(json.loads(pp.read_text()))
    b = Bundle(root=root, manifest=manifest, preprocess=spec)
    if verify:
        b.verify()
    return b


def write_manifest(root: Path, manifest: Dict[str, Any]) -> None:
    """Fill in format, version and checksums of every file under ``root``, then write manifest.json."""
    manifest = dict(manifest)
    manifest["format"] = BUNDLE_FORMAT
    manifest["version"] = BUNDLE_VERSION
    files = {}
    for p in sorted(root.iterdir()):
        if p.is_file() and p.name != "manifest.json":
            files[p.name] = sha256_file(p)
    manifest["files"] = files
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


class atomic_bundle_dir:
    """Context manager: yields a temp dir beside ``out_dir``; on success it replaces ``out_dir``."""

    def __init__(self, out_dir: Union[str, Path], overwrite: bool = True) -> None:
        self.out = Path(out_dir).resolve()
        self.overwrite = overwrite

    def __enter__(self) -> Path:
        if self.out.exists() and not self.overwrite:
            raise ModelError(f"{self.out} exists; pass overwrite=True (--overwrite) to replace it")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.tmp-", dir=self.out.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.out.exists():
            old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
            os.replace(self.out, old)
            os.replace(self.tmp, self.out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.out)
