"""Shared fixtures: the real data in ../shared/data and the WordNet metadata."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import List

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
WORDNET_DIR = Path("/usr/share/wordnet")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_shared: reads the real data in ../shared/data")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: the real data lives in ../shared/data beside the checkout")
    return path


@pytest.fixture(scope="session")
def laion_texts() -> List[str]:
    """The 10k LAION-style alt-texts (nulls kept as None)."""
    import pyarrow.parquet as pq

    t = pq.read_table(_need(SHARED_DATA / "captions" / "laion_10k.parquet"), columns=["TEXT"])
    return t.column("TEXT").to_pylist()


@pytest.fixture(scope="session")
def cc3m_texts() -> List[str]:
    """The 15,833 Conceptual Captions validation captions."""
    path = _need(SHARED_DATA / "captions" / "cc3m_val.tsv")
    with open(path, encoding="utf-8", newline="") as f:
        return [row[0] for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


@pytest.fixture(scope="session")
def wordnet_entries() -> List[str]:
    """MetaCLIP's WordNet part of the metadata: the first lemma of every synset, '_' -> ' '."""
    from fastcurate.metadata import wordnet_entries

    if not (WORDNET_DIR / "data.noun").exists():
        pytest.skip("WordNet 3.0 is not installed: apt-get install wordnet-base")
    return wordnet_entries(WORDNET_DIR)


@pytest.fixture(params=["simd", "scalar"])
def simd_mode(request):
    """Runs a test under the vectorised path (where compiled) and the portable scalar path."""
    from fastcurate import _core

    if request.param == "simd" and not _core.simd_available():
        pytest.skip("no vectorised path on this platform")
    _core.set_simd(request.param == "simd")
    assert _core.simd_name() == ("scalar" if request.param == "scalar" else _core.simd_name())
    yield request.param
    _core.set_simd(True)


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray (2 CPUs, one logical GPU so that the GPU-worker path is exercised; usage stats
    off) shared by the tests of the Ray engine; yields its address, for drivers in subprocesses.
    Skips when ray is not installed."""
    import logging
    import os

    ray = pytest.importorskip("ray")
    import fastcurate

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Workers import fastcurate (and, for the fault tests, tests/ray_faults.py) from where this
    # process does, whatever their working directory.
    old = os.environ.get("PYTHONPATH")
    paths = [str(Path(fastcurate.__file__).resolve().parents[1]), str(ROOT / "tests")]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths + ([old] if old else []))
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        if started:
            ray.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
