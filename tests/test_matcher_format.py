"""Matcher files across format versions.

Version 2 changed the hash functions that place tokens and transitions in their tables; the
layout is that of version 1, and loading places every token and edge again. So files written by
fastcurate before the change (tests/data/matcher_v1_*.fcm.gz, written by the code of that time
from the entries in matcher_v1_entries.json) must still load and match exactly."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

import fastcurate as fc
from fastcurate.kernels.reference import metaclip_match

DATA = Path(__file__).resolve().parent / "data"

TEXTS = [
    "a cat , dog and a hot dog in new york city",
    "The statue of liberty, of the city of new york.",
    "ice cream; cream and CAT and Cat and NEW YORK",
    "a  b a b a   b",
    "internationalization x a supercalifragilisticexpialidocious word",
    "u.s. new new york york",
    "",
    "dog,cat,dog",
    "new york city of new york of the the",
]


@pytest.mark.parametrize("case", ["cs", "ci"])
def test_version_1_files_load_and_match(case, tmp_path):
    entries = json.loads((DATA / "matcher_v1_entries.json").read_text())
    raw = gzip.decompress((DATA / f"matcher_v1_{case}.fcm.gz").read_bytes())
    assert raw[:8] == b"FCMATCH\0" and raw[8] == 1
    path = tmp_path / "v1.fcm"
    path.write_bytes(raw)
    m = fc.Matcher.load(path)
    cs = case == "cs"
    assert m.case_sensitive == cs
    got = m.match(TEXTS).to_lists()
    assert got == [metaclip_match(entries, t, case_sensitive=cs) for t in TEXTS]
    # Saved again, it is a version 2 file that matches the same.
    m.save(tmp_path / "v2.fcm")
    assert (tmp_path / "v2.fcm").read_bytes()[8] == 2
    assert fc.Matcher.load(tmp_path / "v2.fcm").match(TEXTS).to_lists() == got
