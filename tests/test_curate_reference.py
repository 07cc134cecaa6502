"""MetaCLIP's reference path, written the way MetaCLIP does it, as the oracle for the curation tests:
`spacing` + a pyahocorasick automaton + ``automaton.iter`` per text (substr_matching.py), and the
per-text balancing loop (``balance_sampling`` with ``random.random() < entry_prob``).

Also tests that fastcurate.Matcher agrees with it on the real captions (when both are available).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
LAION = SHARED / "captions" / "laion_10k.parquet"
CC3M = SHARED / "captions" / "cc3m_val.tsv"

from fastcurate.kernels.reference import spacing  # MetaCLIP's spacing, written out once


class CSR:
    def __init__(self, offsets: np.ndarray, ids: np.ndarray):
        self.offsets = offsets
        self.ids = ids


class ReferenceMatcher:
    """MetaCLIP's matcher: an automaton over " entry " keys; the last duplicate's id wins."""

    def __init__(self, entries: Sequence[str]):
        import ahocorasick

        self.automaton = ahocorasick.Automaton()
        for i, e in enumerate(entries):
            self.automaton.add_word(f" {e} ", (i, e))
        self.automaton.make_automaton()
        self.n = len(entries)

    def __len__(self) -> int:
        return self.n

    def match_one(self, text: Optional[str]) -> List[int]:
        if not text:
            return []
        return sorted({v[0] for _, v in self.automaton.iter(spacing(text))})

    def match(self, texts: Iterable, threads: Optional[int] = None) -> CSR:
        if hasattr(texts, "to_pylist"):
            texts = texts.to_pylist()
        offsets = [0]
        ids: List[int] = []
        for t in texts:
            ids.extend(self.match_one(t))
            offsets.append(len(ids))
        return CSR(np.asarray(offsets, dtype=np.int64), np.asarray(ids, dtype=np.int32))


def metaclip_balance_sampling(matched_entry_ids, entry_prob, rng) -> bool:
    # MetaCLIP's per-text rule: keep when any matched entry fires.
    for entry_id in matched_entry_ids:
        if rng.random() < entry_prob[entry_id]:
            return True
    return False


def real_matcher_or_skip(entries):  # type: ignore[no-untyped-def]
    import fastcurate

    M = getattr(fastcurate, "Matcher", None)
    if M is None:
        try:
            from fastcurate._core import Matcher as M  # type: ignore[no-redef]
        except ImportError:
            pytest.skip("fastcurate.Matcher (issue 2) is not built in this checkout")
    return M(entries, mode="metaclip", case_sensitive=True)


def test_spacing_reference_examples():
    m = ReferenceMatcher(["cat", "new york", "york", "new york city", ",", "cat , dog"])
    assert m.match_one("cat, dog") == [0, 4]
    assert m.match_one("cat,dog") == [0, 4, 5]
    assert m.match_one("cats and tomcat") == []
    assert m.match_one("new york city") == [1, 2, 3]
    assert m.match_one(None) == [] and m.match_one("") == []


def test_reference_duplicate_keeps_last_id():
    m = ReferenceMatcher(["dog", "cat", "dog"])
    assert m.match_one("a dog") == [2]


@pytest.mark.skipif(not LAION.exists(), reason=f"real data not found at {LAION} (needs ../shared beside the checkout)")
def test_fastcurate_matcher_agrees_with_reference_on_laion():
    import pyarrow.parquet as pq

    from fastcurate.metadata import load_metadata

    entries = load_metadata()
    real = real_matcher_or_skip(entries)
    texts = pq.read_table(LAION, columns=["TEXT"]).column("TEXT").combine_chunks()
    a = real.match(texts)
    b = ReferenceMatcher(entries).match(texts)
    assert np.array_equal(np.asarray(a.offsets), b.offsets)
    assert np.array_equal(np.asarray(a.ids), b.ids)
