"""judge_clusters: the judgments table, both backends (the LLM one against a scripted server), the
report, and the drop filter."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from fastcurate.errors import InputError, InputTypeError
from fastcurate.stages.judge import (
    ERROR,
    HIGH,
    JUDGMENT_SCHEMA,
    LOW,
    UNPARSED,
    ClusterRecord,
    OfflineBackend,
    OfflineJudge,
    OpenAIBackend,
    judge_clusters,
    judge_report,
    low_value_filter,
    prompt_sha256,
    render_prompt,
)

VARIED = ["A red fox in the snow", "Map of the Roman empire", "A violin on a wooden table",
          "Children playing football on a beach", "Microscope image of pollen", "Harbour at dusk"]
FILES = ["IMG_001.jpg", "IMG_002.jpg", "IMG_003.jpg", "DSC0004.JPG", "IMG_005.jpg"]


def _offline():
    return OfflineBackend(OfflineJudge(baseline=0.0, encoder=None))


def test_offline_backend_table():
    recs = [ClusterRecord(7, VARIED), {"cluster": 3, "closest": FILES}, ClusterRecord(9, [])]
    res = judge_clusters(recs, _offline())
    t = res.table
    assert t.schema == JUDGMENT_SCHEMA
    assert t.column("cluster").to_pylist() == [7, 3, 9]
    assert t.column("label").to_pylist() == [HIGH, LOW, ERROR]
    assert t.column("backend").to_pylist() == ["offline"] * 3
    assert t.column("reason")[2].as_py() == "empty cluster: no samples to judge"
    f = t.column("features").to_pylist()
    assert f[1]["junk_share"] == 1.0 and f[2] is None
    assert f[0]["n"] == 5  # n_samples=5: only the first five closest samples are scored
    assert t.column("prompt_sha256").null_count == 3
    rep = res.report
    assert rep["labels"] == {HIGH: 1, LOW: 1, UNPARSED: 0, ERROR: 1} and rep["errors"] == 1
    assert rep["clusters"] == 3 and rep["unparsed_rate"] == 0.0


def test_with_furthest_and_embeddings():
    rng = np.random.default_rng(0)
    recs = [ClusterRecord(i, VARIED[:3], VARIED[3:], rng.normal(size=(3, 8)), rng.normal(size=(3, 8)))
            for i in range(3)]
    b = OfflineBackend(OfflineJudge(baseline=0.0))
    t1 = judge_clusters(recs, b).table
    t2 = judge_clusters(recs, b, with_furthest=True).table
    assert [f["n"] for f in t1.column("features").to_pylist()] == [3] * 3
    assert [f["n"] for f in t2.column("features").to_pylist()] == [6] * 3
    recs[2].furthest_emb = recs[2].furthest_emb[:2]
    with pytest.raises(InputError, match=r"cluster 2: furthest_emb has shape \(2, 8\), expected \(3, d\)"):
        judge_clusters(recs, b, with_furthest=True)
    recs[1].closest_emb = None
    with pytest.raises(InputError, match="cluster 1 has no embeddings"):
        judge_clusters(recs, b)


def test_arrow_table_input_and_string_ids():
    tbl = pa.table({"cluster": ["a", "b"], "closest": [VARIED, FILES], "furthest": [[], None]})
    t = judge_clusters(tbl, _offline(), with_furthest=True).table
    assert t.schema.field("cluster").type == pa.string()
    assert t.column("label").to_pylist() == [HIGH, LOW]


def test_bad_records():
    with pytest.raises(InputError, match="appears more than once"):
        judge_clusters([ClusterRecord(1, VARIED), ClusterRecord(1, FILES)], _offline())
    with pytest.raises(InputError, match="needs keys"):
        judge_clusters([{"id": 1, "closest": VARIED}], _offline())
    with pytest.raises(InputTypeError, match="single string"):
        judge_clusters([ClusterRecord(1, "IMG_1.jpg")], _offline())
    with pytest.raises(InputError, match="columns 'cluster' and 'closest'"):
        judge_clusters(pa.table({"id": [1]}), _offline())
    with pytest.raises(InputError, match="must not be null"):
        judge_clusters([ClusterRecord(None, VARIED)], _offline())


def test_openai_backend_against_scripted_server(tmp_path):
    pytest.importorskip("openai")
    from _fake_llm import FakeLLMServer, Reply, completion, prompt_of

    from fastcurate.llm import LLMClient

    def b(req, n):
        p = prompt_of(req).split("## Cluster to Classify")[1]  # the examples above name IMG_001 too
        if "IMG_001" in p:
            return Reply(body=completion(json.dumps({"reason": "file names", "classification": "Low Value"}), ptok=700, ctok=15))
        if "Harbour" in p:
            return Reply(body=completion("I think it is medium", ptok=690, ctok=6))
        if "refuse" in p:
            return Reply(400, {"error": {"message": "prompt too long"}})
        return Reply(body=completion(json.dumps({"reason": "varied", "classification": "High Value"}), ptok=710, ctok=14))

    with FakeLLMServer(b) as s:
        c = LLMClient("fake-model", s.base_url, cache=tmp_path / "c.sqlite", backoff=0.01, structured="json_object")
        recs = [ClusterRecord(0, VARIED[:5]), ClusterRecord(1, FILES), ClusterRecord(2, VARIED[1:]),
                ClusterRecord(3, ["refuse me"]), ClusterRecord(4, [])]
        res = judge_clusters(recs, OpenAIBackend(c))
        t = res.table
        assert t.column("label").to_pylist() == [HIGH, LOW, UNPARSED, ERROR, ERROR]
        assert t.column("reason").to_pylist()[:2] == ["varied", "file names"]
        assert "not JSON" in t.column("reason")[2].as_py() and t.column("raw")[2].as_py() == "I think it is medium"
        assert "HTTP 400" in t.column("reason")[3].as_py()
        assert t.column("reason")[4].as_py() == "empty cluster: no samples to judge"
        assert t.column("prompt_sha256")[1].as_py() == prompt_sha256(render_prompt(FILES))
        assert t.column("model").to_pylist()[0] == "fake-model"
        assert len(s.requests) == 4  # the empty cluster sent nothing
        rep = res.report
        assert rep["labels"] == {HIGH: 1, LOW: 1, UNPARSED: 1, ERROR: 2}
        assert rep["unparsed_rate"] == pytest.approx(1 / 3)
        assert rep["prompt_tokens"] == 700 + 710 + 690 and rep["prompt_tokens_per_cluster"] == pytest.approx(700)
        # a rerun: all answers from the cache (the refused one is asked again), identical table
        res2 = judge_clusters(recs, OpenAIBackend(c))
        assert len(s.requests) == 5
        assert res2.table.column("cached").to_pylist() == [True, True, True, False, False]
        assert res2.table.column("raw").to_pylist() == t.column("raw").to_pylist()
        c.close()


def test_with_furthest_prompt_layout():
    pytest.importorskip("openai")
    from _fake_llm import FakeLLMServer, Reply, completion

    from fastcurate.llm import LLMClient

    with FakeLLMServer(lambda r, n: Reply(body=completion('{"reason": "r", "classification": "High Value"}'))) as s:
        c = LLMClient("m", s.base_url, structured="json_object")
        judge_clusters([ClusterRecord(0, VARIED, ["far one"])], OpenAIBackend(c), with_furthest=True, n_samples=2)
        p = s.requests[0]["messages"][-1]["content"]
    assert p == render_prompt(VARIED, ["far one"], n_samples=2)
    assert s.requests[0]["temperature"] == 0.0


def test_low_value_filter():
    t = pa.table({"cluster": pa.array([10, 11, 12, 13], pa.int64()),
                  "label": [HIGH, LOW, UNPARSED, ERROR], "reason": ["ok", "file names", "x", "y"]})
    rows = pa.array([11, 10, 11, 12, 13, 10], pa.int32())
    keep, why = low_value_filter(rows, t)
    assert keep.tolist() == [False, True, False, True, True, True]
    assert why.to_pylist()[0] == "judge: Low Value cluster 11: file names" and why[1].as_py() is None
    keep, _ = low_value_filter(rows, t, drop_labels=(LOW, UNPARSED))
    assert keep.tolist() == [False, True, False, False, True, True]
    with pytest.raises(InputError, match="row 1 belongs to cluster 99, which has no judgment"):
        low_value_filter([11, 99], t)
    keep, why = low_value_filter([11, 99], t, missing="drop")
    assert keep.tolist() == [False, False] and "has no judgment" in why[1].as_py()
    keep, _ = low_value_filter([99], t, missing="keep")
    assert keep.tolist() == [True]
    with pytest.raises(InputError, match="not judge labels"):
        low_value_filter([11], t, drop_labels=("Bad",))


def test_report_of_empty_table():
    t = judge_clusters([], _offline()).table
    assert t.num_rows == 0 and judge_report(t)["unparsed_rate"] == 0.0
