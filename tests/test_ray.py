"""The Ray engine (docs/scale.md): faults (a worker killed mid-stage, the driver killed), the CLI
flags, addresses that are down, GPU workers, and the local engine never importing ray. The
byte-identity of every registered stage under both engines is in test_contract.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from contract_cases import BUNDLE_ENV, CASES, ENTRIES, run_case, write_layout
from fastcurate.errors import FastcurateError, InputError
from fastcurate.runner.ray import RayConnectionError, WorkerLostError, check_address, plan_pool
from test_contract import output_bytes

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), RAY_USAGE_STATS_ENABLED="0")


def _wait_idle(timeout: float = 90.0) -> None:
    """Wait until the cluster's CPUs are all free again (the actors of a killed driver are gone)."""
    import ray

    total = ray.cluster_resources().get("CPU", 0)
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if ray.available_resources().get("CPU", 0) >= total:
            return
        time.sleep(0.2)
    raise AssertionError(f"the cluster's CPUs were not released: {ray.available_resources()}")


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """The curate case as 4 Parquet shards, and its local-engine output (the reference bytes)."""
    d = tmp_path_factory.mktemp("pool")
    src = write_layout(CASES["curate"]().table, d / "in", 4, seed=2)
    run_case("curate", src, d / "ref")
    return src, d / "ref"


# ---------------------------------------------------------------------------------------- faults

@pytest.mark.slow
@pytest.mark.parametrize("phase", ["scan", "process"])
def test_worker_killed_mid_stage_is_redone_with_the_same_bytes(phase, pool, tmp_path, ray_cluster):
    from ray_faults import KillWorker

    src, ref = pool
    marker = tmp_path / "killed"
    stage = KillWorker(CASES["curate"]().make_stage(), marker, phase=phase, shard_index=1)
    out = tmp_path / "out"
    run_case("curate", src, out, stage=stage, engine="ray")
    killed = marker.read_text().split()
    assert len(killed) == 1 and int(killed[0]) != os.getpid()  # a worker died, once, and not the driver
    assert output_bytes(out) == output_bytes(ref)
    assert not (out / "_work").exists() and not list(out.rglob("*.tmp"))  # its temp part files are gone


@pytest.mark.slow
def test_a_shard_that_always_kills_its_worker_stops_the_run(pool, tmp_path, ray_cluster):
    from fastcurate.runner.local import run_stage
    from fastcurate.runner.ray import RayExecutor
    from ray_faults import KillWorker

    src, _ = pool
    marker = tmp_path / "killed"
    c = CASES["curate"]()
    stage = KillWorker(c.make_stage(), marker, phase="process", shard_index=2, always=True)
    logs: list = []
    with pytest.raises(WorkerLostError, match=r"shard_002\.parquet.*process.*died 2 times.*--engine local"):
        run_stage(stage, [src], tmp_path / "out", columns=c.columns, batch_size=c.batch_size, progress=False,
                  engine=RayExecutor(max_retries=1, patience_s=0.05, log=logs.append))
    assert len(marker.read_text().split()) == 2  # the first try and one retry
    assert any("no shard finished in 0.05 s" in m and "ray status" in m for m in logs)  # waits are explained
    _wait_idle()


KILL_DRIVER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, sys.argv[6])
    from contract_cases import run_case
    name, src, out, engine, address, point = sys.argv[1:6] + [sys.argv[7]]
    def after(phase, i):
        if f"{phase}/{i}" == point:
            os.kill(os.getpid(), signal.SIGKILL)
    kw = {"engine": engine, "ray_address": address} if engine == "ray" else {}
    run_case(name, src, out, after=after, **kw)
    print("finished")
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("first,rerun,point", [("ray", "ray", "process/1"), ("ray", "local", "scan/2"),
                                               ("local", "ray", "process/0")])
def test_driver_killed_then_rerun_resumes_with_the_same_bytes(first, rerun, point, pool, tmp_path, ray_cluster):
    src, ref = pool
    script = tmp_path / "kill.py"
    script.write_text(KILL_DRIVER)
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, str(script), "curate", str(src), str(out), first, ray_cluster, str(TESTS),
                        point], capture_output=True, text=True, timeout=300, env=_env())
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stdout, p.stderr[-3000:])
    assert (out / "_work" / "manifest.json").is_file() and not (out / "stats.json").exists()
    _wait_idle()  # the dead driver's workers are gone (they would only rewrite the same bytes)
    run_case("curate", src, out, engine=rerun)
    assert output_bytes(out) == output_bytes(ref)
    assert json.loads((out / "timings.json").read_text())["resumed"] is True
    assert not (out / "_work").exists() and not list(out.rglob("*.tmp"))


@pytest.mark.slow
def test_one_executor_serves_runs_in_turn(tmp_path, ray_cluster):
    """A pipeline may hand one RayExecutor to each of its stages in turn."""
    from fastcurate.runner.ray import RayExecutor

    src = write_layout(CASES["match"]().table, tmp_path / "in", 2, seed=3)
    run_case("match", src, tmp_path / "local")
    ex = RayExecutor(workers=1)
    run_case("match", src, tmp_path / "r1", engine=ex)
    run_case("match", tmp_path / "r1", tmp_path / "r2", engine=ex)  # the next stage reads the last one's output
    run_case("match", tmp_path / "local", tmp_path / "l2")
    assert output_bytes(tmp_path / "r1") == output_bytes(tmp_path / "local")
    # r2 and l2 read other files (their manifests differ): the same parts, drops and statistics
    r2, l2 = output_bytes(tmp_path / "r2"), output_bytes(tmp_path / "l2")
    assert {k: v for k, v in r2.items() if k != "stats.json"} == {k: v for k, v in l2.items() if k != "stats.json"}
    s_r2, s_l2 = (json.loads(d["stats.json"]) for d in (r2, l2))
    assert {k: v for k, v in s_r2.items() if k != "manifest"} == {k: v for k, v in s_l2.items() if k != "manifest"}


@pytest.mark.slow
def test_a_pipeline_on_ray_gives_the_local_bytes(tmp_path, ray_cluster):
    """`fastcurate run` with engine = "ray" (every step on Ray): the same outputs as on the local engine."""
    from fastcurate.pipeline import run_pipeline

    pool_dir = write_layout(CASES["curate"]().table, tmp_path / "pool", 3, seed=4)
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps(ENTRIES))
    outs = {}
    for engine in ("local", "ray"):
        spec = {"pipeline": {"name": "t", "input": str(pool_dir), "out": str(tmp_path / engine)},
                "stage": [{"stage": "curate", "metadata": str(meta), "t": 12, "seed": 3, "plot": False,
                           "batch_size": 97, "engine": engine},
                          {"stage": "match", "metadata": str(meta), "batch_size": 50, "engine": engine}]}
        run_pipeline(spec, progress=False)
        got = {}
        for f in sorted((tmp_path / engine).rglob("*")):
            if f.is_file() and f.name not in ("timings.json", "pipeline.json"):
                data = f.read_bytes()
                if f.name == "stats.json":  # its manifest names the input paths, which differ
                    st = json.loads(data)
                    st.pop("manifest")
                    data = json.dumps(st, sort_keys=True).encode()
                got[str(f.relative_to(tmp_path / engine))] = data
        outs[engine] = got
    assert outs["local"] == outs["ray"] and len(outs["ray"]) > 6
    assert json.loads((tmp_path / "ray" / "02-match" / "timings.json").read_text())["engine"] == "ray"


# ---------------------------------------------------------------------------------------- CLI

@pytest.mark.slow
def test_cli_engine_ray_joins_a_cluster_by_address(tmp_path, ray_cluster):
    src = write_layout(CASES["match"]().table, tmp_path / "in", 3, seed=5)
    meta = tmp_path / "entries.txt"
    meta.write_text("\n".join(ENTRIES) + "\n")
    outs = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine
        cmd = [sys.executable, "-m", "fastcurate.cli", "match", str(src), "--out", str(out), "--metadata", str(meta),
               "--batch-size", "97", "--no-progress", "--engine", engine]
        if engine == "ray":
            cmd += ["--ray-address", ray_cluster, "--ray-workers", "2"]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())
        assert p.returncode == 0, p.stderr[-3000:]
        assert "match: 700 rows in" in p.stdout
        outs[engine] = output_bytes(out)
    assert outs["local"] == outs["ray"]
    t = json.loads((tmp_path / "ray" / "timings.json").read_text())
    assert t["engine"] == "ray" and t["ray_workers"] == 2 and t["ray_cluster"] == ray_cluster


def test_cli_address_that_is_down_is_a_clear_error_not_a_hang(tmp_path):
    src = write_layout(CASES["match"]().table.slice(0, 50), tmp_path / "in", 1, seed=0)
    meta = tmp_path / "entries.txt"
    meta.write_text("\n".join(ENTRIES) + "\n")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "fastcurate.cli", "match", str(src), "--out", str(out), "--metadata",
                        str(meta), "--engine", "ray", "--ray-address", f"127.0.0.1:{port}"],
                       capture_output=True, text=True, timeout=120, env=_env())
    assert p.returncode == 1, p.stderr[-3000:]
    assert f"no Ray cluster at 127.0.0.1:{port}" in p.stderr and "ray start --head" in p.stderr
    assert time.monotonic() - t0 < 60
    assert not out.exists()  # nothing was written


def test_cli_ray_flags_need_engine_ray(tmp_path):
    from fastcurate.cli import main

    src = write_layout(CASES["match"]().table.slice(0, 20), tmp_path / "in", 1, seed=0)
    assert main(["match", str(src), "--out", str(tmp_path / "o"), "--ray-address", "10.0.0.1:6379"]) == 1
    assert not (tmp_path / "o").exists()


def test_check_address_names_what_is_wrong():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RayConnectionError, match=f"no Ray cluster at ray://127.0.0.1:{port}.*ray start --head"):
        check_address(f"ray://127.0.0.1:{port}", timeout=2)
    with pytest.raises(RayConnectionError, match="not host:port"):
        check_address("my-cluster", timeout=2)
    # something listens but never speaks gRPC: a bounded wait, then a clear error
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    conns = []
    th = threading.Thread(target=lambda: conns.append(srv.accept()), daemon=True)
    th.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(RayConnectionError, match="not a Ray cluster"):
            check_address(f"127.0.0.1:{srv.getsockname()[1]}", timeout=1)
        assert time.monotonic() - t0 < 10
    finally:
        for c, _ in conns:
            c.close()
        srv.close()


def test_check_address_accepts_a_live_cluster(ray_cluster):
    check_address(ray_cluster, timeout=10)
    check_address("auto")


# ---------------------------------------------------------------------------------------- GPUs

def test_plan_pool_gpu_and_cpu_workers():
    # a GPU stage on a GPU cluster: one worker per GPU
    assert plan_pool({"CPU": 64, "GPU": 8}, 100, stage_resources={"GPU": 1}) == (8, 1.0, 1.0)
    assert plan_pool({"CPU": 64, "GPU": 8}, 100, stage_resources={"GPU": 1}, cpus_per_worker=4) == (8, 4.0, 1.0)
    assert plan_pool({"CPU": 64, "GPU": 8}, 100, gpus_per_worker=0.5) == (16, 1.0, 0.5)
    # ... on a CPU cluster: CPU workers; a CPU stage on a GPU cluster: CPU workers
    assert plan_pool({"CPU": 16}, 100, stage_resources={"GPU": 1}) == (16, 1.0, 0.0)
    assert plan_pool({"CPU": 16, "GPU": 2}, 100) == (16, 1.0, 0.0)
    # never more workers than shards or the cap
    assert plan_pool({"CPU": 16}, 3) == (3, 1.0, 0.0)
    assert plan_pool({"CPU": 16}, 100, workers=5, cpus_per_worker=2) == (5, 2.0, 0.0)
    with pytest.raises(InputError, match="has 0 GPUs"):
        plan_pool({"CPU": 16}, 10, gpus_per_worker=1)
    with pytest.raises(InputError, match="fewer than the 4"):
        plan_pool({"CPU": 2}, 10, cpus_per_worker=4)


@pytest.mark.slow
def test_embed_runs_on_gpu_workers_when_the_cluster_has_gpus(tmp_path, ray_cluster):
    """The test cluster declares one (logical) GPU: an embed stage on device 'auto' gets one GPU
    worker; ONNX Runtime runs on the CPU here, so the bytes are the local engine's."""
    if not os.environ.get(BUNDLE_ENV):
        try:
            from embed_fixtures import tiny_bundle

            os.environ[BUNDLE_ENV] = str(tiny_bundle())
        except BaseException:
            pytest.skip("needs torch + open_clip to export the tiny bundle")
    from fastcurate.stages.embed.stage import EmbedStage

    c = CASES["embed"]()
    src = write_layout(c.table, tmp_path / "in", 3, seed=0)
    stage = EmbedStage(os.environ[BUNDLE_ENV], device="auto", model_batch_size=5)
    assert stage.worker_resources() == {"GPU": 1.0}
    run_case("embed", src, tmp_path / "local")
    run_case("embed", src, tmp_path / "ray", stage=stage, engine="ray")
    t = json.loads((tmp_path / "ray" / "timings.json").read_text())
    assert t["ray_gpus_per_worker"] == 1.0 and t["ray_workers"] == 1
    assert output_bytes(tmp_path / "local") == output_bytes(tmp_path / "ray")


# ---------------------------------------------------------------------------------------- optional

def test_the_local_engine_never_imports_ray(tmp_path):
    src = write_layout(CASES["curate"]().table, tmp_path / "in", 2, seed=0)
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from contract_cases import run_case
        from fastcurate.cli import build_parser
        build_parser()
        run_case("curate", {str(src)!r}, {str(tmp_path / "o")!r})
        run_case("match", {str(src)!r}, {str(tmp_path / "m")!r}, engine="local")
        import fastcurate.runner.ray  # the engine's module itself imports ray only when used
        print(sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")))
        """
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=_env())
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.strip().splitlines()[-1] == "[]"


def test_ray_missing_gives_the_install_command(monkeypatch):
    import builtins

    from fastcurate.runner.ray import RayExecutor
    from fastcurate.runner.stage import MissingDependencyError

    real = builtins.__import__

    def no_ray(name, *a, **kw):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(MissingDependencyError, match=r"pip install 'fastcurate\[ray\]'"):
        RayExecutor().connect()
    assert isinstance(MissingDependencyError("x"), FastcurateError)
