"""`fastcurate judge` as a stage: cluster -> judge end to end (the rows of a Low Value cluster are
all dropped, naming the cluster and the reason), the judgments file, the unjudged policy, errors
that say what to do, the CLI's exit codes, and the openai backend against a scripted server,
including a resume that sends no answered request again."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Dict, List

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contract_cases import embedding_table, judge_tables, varied_caption, write_layout
from fastcurate.cli import main
from fastcurate.errors import InputError
from fastcurate.llm import LLMUnavailableError
from fastcurate.runner.local import run_stage
from fastcurate.stages.cluster.stage import ClusterStage
from fastcurate.stages.judge import HIGH, LOW, UNPARSED, prompt_sha256
from fastcurate.stages.judge.stage import STAGE_JUDGMENT_COLUMNS, JudgeStage

pytest.importorskip("faiss")

K = 5
JUNK_TOPIC = 0


def _pool(n: int = 300) -> pa.Table:
    """embedding_table's rows (k=5 well-separated topics) with real-looking varied captions, except
    topic 0 whose captions are camera file names."""
    t = embedding_table(n, k=K, seed=3)
    rng = np.random.default_rng(7)
    topics = [int(c.split()[1]) for c in t.column("caption").to_pylist()]
    caps = [f"IMG_{i:04d}.JPG" if tp == JUNK_TOPIC else varied_caption(rng) for i, tp in enumerate(topics)]
    return t.set_column(t.column_names.index("caption"), "caption", pa.array(caps)).append_column(
        "topic", pa.array(topics, pa.int32()))


@pytest.fixture(scope="module")
def clustered(tmp_path_factory) -> Path:
    """The output of `fastcurate cluster` (k=5) over _pool, in 2 shards."""
    root = tmp_path_factory.mktemp("judge_stage")
    src = write_layout(_pool(), root / "in", 2, seed=1)
    run_stage(ClusterStage(k=K, samples=5, tsne_rows=0, silhouette_exact_max=0), [src], root / "cluster",
              progress=False)
    return root / "cluster"


def _parts(out: Path, sub: str = "") -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted((out / sub).glob("part-*.parquet"))])


def _run(src: Path, out: Path, **kw) -> Dict:
    kw.setdefault("offline_embeddings", "none")  # tight synthetic topics: the narrow-topic rule would fire on all
    return run_stage(JudgeStage(**kw), [src], out, progress=False)


def _junk_cluster(clustered: Path) -> int:
    t = _parts(clustered)
    c = {int(x) for x, tp in zip(t.column("cluster").to_pylist(), t.column("topic").to_pylist()) if tp == JUNK_TOPIC}
    assert len(c) == 1, "the file-name topic should be one cluster"
    return c.pop()


def test_cluster_then_judge_drops_every_row_of_the_low_value_cluster(clustered, tmp_path):
    junk = _junk_cluster(clustered)
    out = tmp_path / "judge"
    stats = _run(clustered, out)
    j = pq.read_table(out / "judgments.parquet")
    assert tuple(j.column_names) == STAGE_JUDGMENT_COLUMNS
    assert j.column("cluster").to_pylist() == list(range(K))
    labels = dict(zip(j.column("cluster").to_pylist(), j.column("label").to_pylist()))
    assert labels == {c: (LOW if c == junk else HIGH) for c in range(K)}
    assert set(j.column("backend").to_pylist()) == {"offline"} and j.column("latency_ms").null_count == K
    assert j.column("attempts").to_pylist() == [0] * K and j.column("raw").null_count == K
    why = j.column("reason")[junk].as_py()
    assert "file names" in why
    # every row of the Low Value cluster is dropped, naming the cluster and the reason; no other row is
    rows_in = _parts(clustered)
    junk_uids = {u for u, c in zip(rows_in.column("uid").to_pylist(), rows_in.column("cluster").to_pylist())
                 if c == junk}
    d = _parts(out, "drops")
    assert set(d.column("reason").to_pylist()) == {"low_value_cluster"}
    assert set(d.column("uid").to_pylist()) == junk_uids
    assert set(d.column("detail").to_pylist()) == {f"judge: Low Value cluster {junk}: {why}"}
    kept = _parts(out)
    assert set(kept.column("cluster").to_pylist()) == set(range(K)) - {junk}
    assert kept.column_names == rows_in.column_names  # the input's columns pass through
    assert stats["rows_in"] == rows_in.num_rows == stats["rows_kept"] + sum(stats["rows_dropped"].values())
    assert stats["rows_dropped"]["low_value_cluster"] == len(junk_uids)
    s = stats["judge"]
    assert s["labels"] == {HIGH: K - 1, LOW: 1, UNPARSED: 0, "error": 0} and s["unparsed_rate"] == 0.0
    assert s["rows_by_label"][LOW] == len(junk_uids) and s["rows_by_label"][HIGH] == stats["rows_kept"]
    assert s["clusters_file"] == str(clustered / "clusters.parquet")
    timings = json.loads((out / "timings.json").read_text())
    assert timings["judge"]["judge_s"] >= 0 and timings["judge"]["cache_hits"] == 0


def test_default_offline_embeddings_are_the_clusterings_and_warn_about_few_clusters(clustered, tmp_path):
    stats = run_stage(JudgeStage(), [clustered], tmp_path / "j", progress=False)
    assert stats["judge"]["offline_embeddings"] == "cluster"
    assert any("too few to estimate" in w for w in stats["judge"]["warnings"])
    f = pq.read_table(tmp_path / "j" / "judgments.parquet").column("features").to_pylist()
    assert all(np.isfinite(x["cohesion"]) for x in f)  # the cluster's own embeddings were used


def test_unjudged_clusters_and_rows_without_a_cluster(tmp_path):
    rows, clusters = judge_tables(300, k=24)
    src = write_layout(rows, tmp_path / "in", 2, seed=0)
    cf = tmp_path / "clusters.parquet"
    pq.write_table(clusters, cf)
    empty = 23  # the cluster with no samples: judged "error"
    no_cluster = sum(c is None and u is not None for c, u in zip(rows.column("cluster").to_pylist(),
                                                                  rows.column("uid").to_pylist()))
    keep = _run(src, tmp_path / "keep", clusters_file=cf)
    assert keep["rows_dropped"]["unjudged_cluster"] == keep["rows_dropped"]["no_cluster"] == 0
    assert keep["judge"]["rows_by_label"]["no cluster"] == no_cluster > 0
    kept = _parts(tmp_path / "keep")
    assert empty in kept.column("cluster").to_pylist() and kept.column("cluster").null_count == no_cluster
    drop = _run(src, tmp_path / "drop", clusters_file=cf, drop_unjudged=True)
    assert drop["rows_dropped"]["no_cluster"] == no_cluster
    assert drop["rows_dropped"]["unjudged_cluster"] == keep["judge"]["rows_by_label"]["error"] > 0
    d = _parts(tmp_path / "drop", "drops")
    det = dict(zip(d.column("reason").to_pylist(), d.column("detail").to_pylist()))
    assert det["unjudged_cluster"] == f"judge: error cluster {empty}: empty cluster: no samples to judge"
    assert det["no_cluster"] == "judge: the row has no cluster id"
    assert drop["rows_kept"] == keep["judge"]["rows_by_label"][HIGH]


def test_clusters_without_rows_are_not_judged(tmp_path):
    rows, clusters = judge_tables(300, k=24)
    rows = rows.filter(pa.compute.not_equal(rows.column("cluster"), 5))
    src = write_layout(rows, tmp_path / "in", 2, seed=0)
    pq.write_table(clusters, tmp_path / "c.parquet")
    s = _run(src, tmp_path / "o", clusters_file=tmp_path / "c.parquet")
    assert s["judge"]["clusters_without_rows"] == 1 and s["judge"]["clusters"] == 23
    assert 5 not in pq.read_table(tmp_path / "o" / "judgments.parquet").column("cluster").to_pylist()


def test_errors_name_the_file_and_the_fix(clustered, tmp_path):
    # the parts without their clusters.parquet (a plain directory, not a stage output)
    plain = tmp_path / "plain"
    plain.mkdir()
    for p in clustered.glob("part-*.parquet"):
        shutil.copy(p, plain / p.name)
    with pytest.raises(InputError, match=r"no clusters\.parquet in the input .*output directory of `fastcurate clus"):
        _run(plain, tmp_path / "o1")
    # rows of a cluster that clusters.parquet does not list
    t = pq.read_table(clustered / "clusters.parquet").slice(0, K - 1)
    pq.write_table(t, tmp_path / "short.parquet")
    with pytest.raises(InputError, match=r"rows of cluster 4, which .*short\.parquet does not list"):
        _run(clustered, tmp_path / "o2", clusters_file=tmp_path / "short.parquet")
    # a clusters table without captions
    t = pq.read_table(clustered / "clusters.parquet")
    t = t.set_column(t.column_names.index("closest"), "closest",
                     pa.array([[None] * len(x) for x in t.column("closest").to_pylist()], pa.list_(pa.string())))
    pq.write_table(t, tmp_path / "nocap.parquet")
    with pytest.raises(InputError, match="every sample caption is null.*--text-column"):
        _run(clustered, tmp_path / "o3", clusters_file=tmp_path / "nocap.parquet")
    # embeddings asked for but absent
    pq.write_table(pq.read_table(clustered / "clusters.parquet", columns=["cluster", "closest"]),
                   tmp_path / "noemb.parquet")
    with pytest.raises(InputError, match="no column closest_emb.*--offline-embeddings minilm"):
        _run(clustered, tmp_path / "o4", clusters_file=tmp_path / "noemb.parquet", offline_embeddings="cluster")
    # input without a cluster column
    with pytest.raises(InputError, match="no 'cluster' column"):
        _run(write_layout(_pool(50), tmp_path / "raw", 1, seed=0), tmp_path / "o5",
             clusters_file=clustered / "clusters.parquet")
    with pytest.raises(InputError, match="needs model"):
        JudgeStage(backend="openai", base_url="http://127.0.0.1:1/v1")
    with pytest.raises(InputError, match="go with backend 'openai'"):
        JudgeStage(model="m")
    with pytest.raises(InputError, match="unknown rule"):
        JudgeStage(offline_thresholds={"cohesian": 0.2})


def test_cli_exit_codes(clustered, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["judge", str(clustered), "--out", str(out), "--offline-embeddings", "none", "--no-progress"]) == 0
    o = capsys.readouterr().out
    assert "judge:" in o and "low_value_cluster" in o and "judgments.parquet" in o
    assert (out / "judgments.parquet").is_file()
    # the Python entry point gives the same files
    import fastcurate as fc

    fc.judge.judge_dir(clustered, tmp_path / "api", offline_embeddings="none", progress=False)
    for name in ("judgments.parquet", "part-00000.parquet", "drops/part-00001.parquet"):
        assert (tmp_path / "api" / name).read_bytes() == (out / name).read_bytes()
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(next(clustered.glob("part-*.parquet")), plain / "p.parquet")
    assert main(["judge", str(plain), "--out", str(tmp_path / "o2"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "clusters.parquet" in err and "fastcurate cluster" in err
    assert main(["judge", str(clustered), "--out", str(tmp_path / "o3"), "--backend", "openai"]) == 1
    assert "--model" in capsys.readouterr().err
    assert main(["judge", str(clustered), "--out", str(tmp_path / "o4"), "--model", "m"]) == 1
    assert "--backend openai" in capsys.readouterr().err
    for bad in (["--backend", "claude"], ["--offline-threshold", "cohesion"], ["--keep-unjudged", "--drop-unjudged"]):
        with pytest.raises(SystemExit) as e:
            main(["judge", str(clustered), "--out", str(tmp_path / "o5"), *bad])
        assert e.value.code == 2


# ------------------------------------------------------------------ the openai backend, scripted server

def _scripted(answered: Dict[str, int], fail: List[str]):
    """Low Value for prompts showing file names, High Value otherwise; HTTP 500 for prompts that
    contain a string of ``fail``; counts the prompts answered with 200."""
    from _fake_llm import Reply, completion, prompt_of

    def behaviour(req, n):
        p = prompt_of(req)
        if any(f in p for f in fail):
            return Reply(status=500, body={"error": {"message": "scripted outage"}})
        answered[p] = answered.get(p, 0) + 1
        low = "IMG_" in p.split('"closest_samples"')[-1]
        return Reply(body=completion(json.dumps({"reason": "file names" if low else "varied photos",
                                                 "classification": LOW if low else HIGH}), ptok=700, ctok=12))
    return behaviour


def _openai(url: str, **kw) -> JudgeStage:
    return JudgeStage(backend="openai", model="fake-model", base_url=url, concurrency=2, retries=0, timeout=10, **kw)


def test_openai_backend_and_resume_sends_no_answered_request_again(clustered, tmp_path):
    from _fake_llm import FakeLLMServer

    junk = _junk_cluster(clustered)
    caps = pq.read_table(clustered / "clusters.parquet").column("closest").to_pylist()
    victim = caps[(junk + 1) % K][0]  # a High Value cluster whose request fails in the first run
    answered: Dict[str, int] = {}
    fail = [json.dumps(victim)]
    out = tmp_path / "resumed"
    with FakeLLMServer(_scripted(answered, fail)) as s:
        with pytest.raises(LLMUnavailableError, match="rerun to resume"):
            run_stage(_openai(s.base_url), [clustered], out, progress=False)
        assert (out / "_work" / "llm_cache.sqlite").is_file() and not (out / "stats.json").exists()
        first = dict(answered)
        assert 0 < len(first) < K
        fail.clear()  # the server is back
        stats = run_stage(_openai(s.base_url), [clustered], out, progress=False)
        n_requests = len(s.requests)
    # every prompt answered exactly once over both runs; the one that failed was sent again, once
    assert len(answered) == K and set(answered.values()) == {1}
    assert n_requests == K + 1
    assert not (out / "_work").exists()
    j = pq.read_table(out / "judgments.parquet")
    assert tuple(j.column_names) == STAGE_JUDGMENT_COLUMNS
    assert dict(zip(j.column("cluster").to_pylist(), j.column("label").to_pylist())) == \
        {c: (LOW if c == junk else HIGH) for c in range(K)}
    assert set(j.column("backend").to_pylist()) == {"openai"} and set(j.column("model").to_pylist()) == {"fake-model"}
    assert j.column("attempts").to_pylist() == [1] * K
    assert all(x is not None and x > 0 for x in j.column("latency_ms").to_pylist())
    assert sorted(j.column("prompt_sha256").to_pylist()) == sorted(prompt_sha256(p) for p in answered)
    assert all(json.loads(r)["classification"] in (HIGH, LOW) for r in j.column("raw").to_pylist())
    assert stats["judge"]["prompt_tokens"] == 700 * K and stats["judge"]["completion_tokens"] == 12 * K
    assert stats["rows_dropped"]["low_value_cluster"] == stats["judge"]["rows_by_label"][LOW] > 0
    timings = json.loads((out / "timings.json").read_text())
    assert timings["resumed"] and timings["judge"]["cache_hits"] == len(first)
    assert timings["judge"]["requests"]["sent"] == K - len(first)

    # an uninterrupted run gives the same stats.json bytes and the same judgments (wall times aside)
    ref = tmp_path / "ref"
    with FakeLLMServer(_scripted({}, [])) as s:
        run_stage(_openai(s.base_url), [clustered], ref, progress=False)
    assert (ref / "stats.json").read_bytes() == (out / "stats.json").read_bytes()
    rj = pq.read_table(ref / "judgments.parquet")
    assert rj.drop_columns(["latency_ms"]).equals(j.drop_columns(["latency_ms"]))


def test_openai_killed_after_the_judging_resumes_without_requests(clustered, tmp_path):
    from _fake_llm import FakeLLMServer

    class Stop(Exception):
        pass

    def stop_after(phase, i):
        if phase == "process" and i == 0:
            raise Stop

    out = tmp_path / "o"
    with FakeLLMServer(_scripted({}, [])) as s:
        with pytest.raises(Stop):
            run_stage(_openai(s.base_url), [clustered], out, progress=False, _after_shard=stop_after)
        sent = len(s.requests)
        assert sent == K
        run_stage(_openai(s.base_url), [clustered], out, progress=False)
        assert len(s.requests) == sent  # the judgments were made: nothing is asked again
    assert (out / "judgments.parquet").is_file()


def test_openai_given_cache_is_kept_and_unparsed_answers_follow_the_unjudged_policy(clustered, tmp_path):
    from _fake_llm import FakeLLMServer, Reply, completion

    junk = _junk_cluster(clustered)
    caps = pq.read_table(clustered / "clusters.parquet").column("closest").to_pylist()
    odd = (junk + 2) % K  # this cluster gets an answer that is no verdict
    marker = json.dumps(caps[odd][0])

    def behaviour(req, n):
        p = req["messages"][-1]["content"]
        if marker in p:
            return Reply(body=completion(json.dumps({"reason": "unsure", "classification": "Medium Value"})))
        return _scripted({}, [])(req, n)

    cache = tmp_path / "cache.sqlite"
    with FakeLLMServer(behaviour) as s:
        keep = run_stage(_openai(s.base_url, cache=cache), [clustered], tmp_path / "keep", progress=False)
        n = len(s.requests)
        drop = run_stage(_openai(s.base_url, cache=cache, drop_unjudged=True), [clustered], tmp_path / "drop",
                         progress=False)
        assert len(s.requests) == n  # every answer came from the kept cache
    assert cache.is_file()
    assert keep["judge"]["labels"][UNPARSED] == 1 and keep["judge"]["unparsed_rate"] == pytest.approx(1 / K)
    assert keep["rows_dropped"]["unjudged_cluster"] == 0
    assert drop["rows_dropped"]["unjudged_cluster"] == keep["judge"]["rows_by_label"][UNPARSED] > 0
    d = _parts(tmp_path / "drop", "drops")
    dets = {x for x, r in zip(d.column("detail").to_pylist(), d.column("reason").to_pylist())
            if r == "unjudged_cluster"}
    assert len(dets) == 1 and re.match(rf"judge: unparsed cluster {odd}: ", dets.pop())
    timings = json.loads((tmp_path / "drop" / "timings.json").read_text())
    assert timings["judge"]["cache_hits"] == K


@pytest.mark.slow
def test_cli_against_a_real_llama_cpp_server(clustered, tmp_path, capsys):
    """`fastcurate judge --backend openai` against llama.cpp serving SmolLM2-135M (plumbing only: a
    model that small judges near chance): structured answers all parse, the rows follow the labels."""
    from fastcurate.errors import ModelError
    from fastcurate.llm import LlamaServer, llama_server_available, smollm2_gguf

    if not llama_server_available():
        pytest.skip("llama-cpp-python[server] is not installed: pip install 'fastcurate[judge-test]'")
    try:
        gguf = smollm2_gguf()
    except ModelError as e:
        pytest.skip(str(e))
    out = tmp_path / "llm"
    with LlamaServer(gguf, n_ctx=2048, n_threads=1) as srv:
        args = ["judge", str(clustered), "--out", str(out), "--backend", "openai", "--base-url", srv.base_url,
                "--model", srv.model, "--concurrency", "1", "--timeout", "300", "--no-progress"]
        assert main(args) == 0
        assert main(args) == 0  # the finished run is found: nothing is sent again
    assert "already holds this finished run" in capsys.readouterr().err
    stats = json.loads((out / "stats.json").read_text())
    j = pq.read_table(out / "judgments.parquet")
    assert set(j.column("label").to_pylist()) <= {HIGH, LOW} and stats["judge"]["unparsed_rate"] == 0.0
    assert stats["judge"]["prompt_tokens"] > 500 * K
    low = {c for c, lab in zip(j.column("cluster").to_pylist(), j.column("label").to_pylist()) if lab == LOW}
    rows = _parts(clustered)
    assert stats["rows_dropped"]["low_value_cluster"] == sum(c in low for c in rows.column("cluster").to_pylist())
