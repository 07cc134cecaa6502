"""The GPU benchmark script must run (on CPU, smallest size) so that a GPU session only measures."""

from __future__ import annotations

import importlib.util
import sys
import json
from pathlib import Path

import pytest
from _torch_env import importorskip as tv_importorskip

from embed_fixtures import COCO, need_data, tiny_bundle

pytest.importorskip("torch")
tv_importorskip("open_clip")
pytest.importorskip("onnxruntime")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu_embed.py"


@pytest.mark.slow
def test_bench_gpu_embed_runs_on_cpu(tmp_path, monkeypatch):
    need_data(COCO)
    # The script may put the checkout's python/ on sys.path; keep that out of later tests, whose
    # subprocesses inherit sys.path and must import the installed package (with its _core).
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec = importlib.util.spec_from_file_location("bench_gpu_embed", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "out"
    # The tiny bundle of the embed tests is the same seed-0 tiny CLIP the script builds with --tiny.
    rc = mod.main(["--device", "cpu", "--tiny", "--seconds", "0.05", "--rounds", "1", "--images", "32",
                   "--texts", "32", "--batch", "16", "--text-batch", "16", "--decode-threads", "2",
                   "--bundle-dir", str(tiny_bundle()), "--reuse-bundle", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "gpu_embed.json").read_text())
    assert "error" not in res
    assert res["checks"] and all(c["ok"] for c in res["checks"].values())
    assert {"open_clip eager fp32", "fastcurate fp16, CPU decode exact", "fastcurate fp16, CPU decode fast",
            "fastcurate fp16, GPU decode (pil)"} <= set(res["images_e2e"])
    assert {"open_clip eager fp32", "fastcurate fp16"} <= set(res["texts_e2e"])
    assert all(v["median"] > 0 for v in res["images_e2e"].values())
    assert res["agreement"]["GPU decode (pil) vs exact (fp16)"]["min"] > 0.99
    md = (out / "gpu_embed.md").read_text()
    assert "best fastcurate" in md and "| images end to end (JPEG bytes) |" in md
