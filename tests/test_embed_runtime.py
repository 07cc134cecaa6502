"""Runtime-only tests: no torch, no open_clip (these run without the export extra)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from fastcurate.models import clip_score, load_bundle
from fastcurate.errors import InputError, InputTypeError, ModelError


def _cos(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def test_clip_score():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 8)).astype(np.float32), rng.normal(size=(5, 8)).astype(np.float32)
    s = clip_score(a, b)
    assert np.allclose(s, _cos(a, b), atol=1e-6)
    assert np.allclose(clip_score(a.astype(np.float16), a), 1, atol=1e-3)
    with pytest.raises(InputError, match="same shape"):
        clip_score(a, b[:3])
    with pytest.raises(InputError, match="2-D"):
        clip_score(a[0], b[0])
    with pytest.raises(InputTypeError):
        clip_score([[1.0]], [[1.0]])


def test_import_does_not_pull_torch():
    import subprocess

    code = "import sys, fastcurate.models; bad = [m for m in ('torch', 'open_clip', 'transformers') if m in sys.modules]; assert not bad, bad"
    import os

    import fastcurate

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(next(iter(fastcurate.__path__))).rsplit(os.sep, 1)[0],
                                                        os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]


def test_not_a_bundle(tmp_path):
    with pytest.raises(ModelError, match="fastcurate export"):
        load_bundle(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="unreadable manifest"):
        load_bundle(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(ModelError, match="format"):
        load_bundle(tmp_path)
