"""The Ray engine: the per-shard work of any stage in Ray actors (docs/scale.md).

``run_stage(stage, inputs, out, engine="ray")`` (CLI: ``--engine ray``) runs the same run life
cycle as the local engine (:func:`fastcurate.runner.local.run_stage`: manifest, resume, error
policy, reduce, finalize, ``stats.json``, all in the driver); only the calls of
:func:`~fastcurate.runner.shard.scan_shard` (the global pass) and
:func:`~fastcurate.runner.shard.process_shard` (the per-shard pass) run in a pool of Ray actors,
one shard per call. The reduce of the global pass (entry counts, hash index, centroids) stays in
the driver, over the per-shard summaries and the arrays the workers wrote under ``_work/``.

Why actors fed by the driver, not Ray Data's ``map_batches``: no row crosses Ray. Each call reads
its shard and writes its part files itself (atomically, marker last) and returns a small JSON
record, so Ray Data's block streaming brings nothing and costs much: on the 2-core machines of
this project a ``map_batches`` over 20 one-row blocks ran one task at a time and took 2.5-2.7 s
for 2 s of work where plain Ray calls took 1.1-1.3 s (``benchmarks/bench_ray.py --probe``). Actors give
what a stage needs: one ``setup`` per worker (a compiled matcher, an ONNX session on a GPU), a
restart and a retry when a worker process dies (``max_restarts`` / ``max_task_retries``), and a
driver that sees every shard's outcome in shard order, so bad shards, ``--on-error`` and the
messages are those of the local engine.

Requirements: every worker sees the inputs and the output directory at the same paths (one
machine, or a shared file system such as NFS/Lustre on a cluster) and has fastcurate (and the
stage's extras) installed. Results are byte-identical to the local engine's: a shard's output is
a pure function of the shard, the stage and the reduced global state, whatever worker runs it.

Thread-safety: a :class:`RayExecutor` serves one run at a time.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import socket
import sys
import traceback
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from ..errors import FastcurateError, InputError
from ..io.discover import ShardRef
from .executor import BAD_SHARD_ERRORS, Executor, Outcome, run_phase_fn
from .stage import Context, MissingDependencyError, Stage

if TYPE_CHECKING:
    from typing import Callable

__all__ = ["RayExecutor", "RayConnectionError", "WorkerLostError", "run_stage_ray", "check_address",
           "plan_pool", "RAY_EXTRA"]

RAY_EXTRA = "pip install 'fastcurate[ray]'"
PathLike = Union[str, "os.PathLike[str]"]


class RayConnectionError(FastcurateError, ConnectionError):
    """The Ray cluster named by the address cannot be reached; the message says how to fix it."""


class WorkerLostError(FastcurateError, RuntimeError):
    """A shard's worker died more often than the retries allow (a crash or out of memory each time)."""


class _RemoteTraceback(Exception):
    """The traceback of an error raised in a Ray worker (the ``__cause__`` of the re-raised error)."""

    def __init__(self, tb: str):
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f"\n\nin the Ray worker:\n{self.tb}"


def import_ray() -> Any:
    """``ray``, with usage statistics off (unless the user set ``RAY_USAGE_STATS_ENABLED``)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(f"the Ray engine needs ray, which is not installed: {RAY_EXTRA}") from None
    return ray


# ----------------------------------------------------------------------------------------- address

def _split(address: str) -> Tuple[str, int]:
    hostport = address.split("://", 1)[1] if "://" in address else address
    hostport = hostport.rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise RayConnectionError(f"Ray address {address!r} is not host:port (or ray://host:port); give e.g. "
                                 "--ray-address 10.0.0.5:6379, the address `ray start --head` printed")
    return host.strip("[]") or "127.0.0.1", int(port)


def _http2_answers(sock: socket.socket) -> bool:
    """Speak the first words of HTTP/2 (Ray's GCS and client server are gRPC servers): the client
    preface and an empty SETTINGS frame; a gRPC server answers with a SETTINGS frame."""
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    head = b""
    while len(head) < 9:
        chunk = sock.recv(9 - len(head))
        if not chunk:
            return False
        head += chunk
    return head[3] == 0x04  # frame type SETTINGS


def check_address(address: str, timeout: float = 10.0) -> None:
    """Raise :class:`RayConnectionError` unless a Ray cluster (a gRPC server) answers at
    ``address`` within ``timeout`` seconds. ``ray.init`` itself waits minutes on an address that
    is down, so the runner asks first. ``auto`` and ``local`` are left to Ray."""
    if address in ("auto", "local"):
        return
    host, port = _split(address)
    fix = (f"start it (`ray start --head --port {port}` on that machine), check --ray-address / RAY_ADDRESS, "
           "or drop --engine ray to run here")
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.timeout:
        raise RayConnectionError(f"no Ray cluster at {address}: no answer within {timeout:g} s; {fix}") from None
    except OSError as e:
        raise RayConnectionError(f"no Ray cluster at {address}: {e.strerror or e}; {fix}") from None
    if os.environ.get("RAY_USE_TLS", "0") not in ("", "0"):
        sock.close()
        return  # a TLS cluster: the plain HTTP/2 probe cannot speak to it; Ray will
    try:
        sock.settimeout(timeout)
        ok = _http2_answers(sock)
    except OSError:
        ok = False
    finally:
        sock.close()
    if not ok:
        raise RayConnectionError(f"something listens at {address} but it is not a Ray cluster (no gRPC answer "
                                 f"within {timeout:g} s); give the address `ray start --head` printed (its GCS "
                                 "port, 6379 by default)")


# ----------------------------------------------------------------------------------------- pool

def plan_pool(cluster: Mapping[str, float], n_shards: int, *, cpus_per_worker: float = 1.0,
              gpus_per_worker: Optional[float] = None, stage_resources: Optional[Mapping[str, float]] = None,
              workers: Optional[int] = None) -> Tuple[int, float, float]:
    """How many workers, with how many CPUs and GPUs each: ``(n, num_cpus, num_gpus)``.

    A stage that asks for a GPU (``stage_resources["GPU"]``; or ``gpus_per_worker`` > 0) gets GPU
    workers when the cluster has GPUs, one per ``gpus_per_worker`` GPUs; else it runs on CPU
    workers, one per ``cpus_per_worker`` CPUs. Never more workers than shards or ``workers``."""
    if cpus_per_worker <= 0:
        raise InputError(f"cpus_per_worker must be > 0, got {cpus_per_worker}")
    want_gpu = float(gpus_per_worker) if gpus_per_worker is not None else float((stage_resources or {}).get("GPU", 0))
    if want_gpu < 0:
        raise InputError(f"gpus_per_worker must be >= 0, got {gpus_per_worker}")
    cpus = float(cluster.get("CPU", 0))
    gpus = float(cluster.get("GPU", 0))
    if want_gpu > 0 and gpus >= want_gpu:
        n = int(gpus // want_gpu)
        num_gpus = want_gpu
        cpu_each = min(cpus_per_worker, cpus / n) if cpus else 0.0
    else:
        if gpus_per_worker and gpus_per_worker > 0:
            raise InputError(f"--ray-gpus-per-worker {gpus_per_worker:g} but the Ray cluster has {gpus:g} GPUs")
        if cpus < cpus_per_worker:
            raise InputError(f"the Ray cluster has {cpus:g} CPUs, fewer than the {cpus_per_worker:g} a worker needs "
                             "(--ray-cpus-per-worker)")
        n = int(cpus // cpus_per_worker)
        num_gpus = 0.0
        cpu_each = cpus_per_worker
    if workers is not None:
        if workers < 1:
            raise InputError(f"workers must be >= 1, got {workers}")
        n = min(n, workers)
    return max(1, min(n, max(1, n_shards))), cpu_each, num_gpus


class _StderrLog:
    """A worker's ``ctx.log``: a line on stderr, which Ray forwards to the driver's terminal."""

    def __init__(self, stage: str):
        self.stage = stage

    def __call__(self, msg: str) -> None:
        print(f"fastcurate {self.stage}: {msg}", file=sys.stderr, flush=True)


def _portable(e: BaseException) -> BaseException:
    """``e`` if it survives pickling (to travel back to the driver), else its text in a FastcurateError."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return FastcurateError(f"{type(e).__name__}: {e}")


class ShardWorker:
    """The Ray actor that runs shards: one stage instance per worker process, set up once for the
    per-shard pass. Its inputs come in a box (``[ObjectRef]``) with each call, so an actor that
    Ray restarts after its process died loads them again and the retried call runs as the first
    did. Returns ``("ok", record, None)``, ``("bad", error, None)`` for a bad shard, or
    ``("error", error, traceback)``; the driver decides, as the local engine does."""

    def __init__(self) -> None:
        from ..io.memory_pool import prefer_jemalloc

        prefer_jemalloc()  # the driver's choice, in each worker process (docs/curate.md "Speed")
        self.job: Any = None
        self.job_key: Optional[str] = None
        self.set_up = False

    def _load(self, job_box: List[Any]) -> Tuple[Stage, Context, Dict[str, Optional[str]], int]:
        import ray

        key = job_box[0].hex()
        if self.job_key != key:
            self.teardown()
            self.job = ray.get(job_box[0])
            self.job_key = key
        return self.job

    def run(self, phase: str, shard: ShardRef, job_box: List[Any], state_box: List[Any]) -> Tuple[str, Any, Optional[str]]:
        try:
            stage, ctx, given, batch_size = self._load(job_box)
            if phase == "process" and not self.set_up:
                import ray

                state = ray.get(state_box[0]) if state_box else None
                stage.setup(ctx, state)
                self.set_up = True
        except Exception as e:  # a setup error is the stage's, not the shard's: it stops the run
            return ("error", _portable(e), traceback.format_exc())
        try:
            rec = run_phase_fn(phase)(stage, ctx, shard, given, batch_size, None)
        except BAD_SHARD_ERRORS as e:
            return ("bad", _portable(e), None)
        except Exception as e:
            return ("error", _portable(e), traceback.format_exc())
        return ("ok", rec, None)

    def teardown(self) -> None:
        if self.set_up and self.job is not None:
            self.job[0].teardown()
        self.set_up = False


# ----------------------------------------------------------------------------------------- executor

class RayExecutor(Executor):
    """Runs the per-shard work in a pool of Ray actors (see the module docstring).

    Args:
        address: the cluster (``host:port`` of its GCS, ``ray://host:port``, ``auto``). A process
            that has already joined Ray uses that one. None: ``RAY_ADDRESS`` if set, else a new local Ray
            (kept until this process exits, so that the next run, e.g. the next stage of a
            pipeline, joins it instead of paying Ray's start again; ``ray.shutdown()`` ends it).
        num_cpus: CPUs of a new local Ray (None: all cores). Not for an existing cluster.
        cpus_per_worker: CPUs each worker reserves; the stage's kernels get that many threads
            unless the run gives ``threads``.
        gpus_per_worker: GPUs each worker reserves; None: what the stage asks for
            (:meth:`Stage.worker_resources`), when the cluster has GPUs, else 0.
        workers: at most this many workers (default: as many as the cluster's CPUs (or GPUs) allow).
        max_retries: how often a shard is redone after its worker process died (killed, out of
            memory, a crash); then the run stops with :class:`WorkerLostError`.
        connect_timeout: seconds to wait for an answer from ``address``.
        patience_s: when no shard finishes for this long, say so (and why it may be), then wait on.
    """

    name = "ray"

    def __init__(self, address: Optional[str] = None, *, num_cpus: Optional[int] = None,
                 cpus_per_worker: float = 1.0, gpus_per_worker: Optional[float] = None,
                 workers: Optional[int] = None, max_retries: int = 3, connect_timeout: float = 10.0,
                 patience_s: float = 300.0, log: Optional["Callable[[str], None]"] = None):
        if cpus_per_worker <= 0:
            raise InputError(f"cpus_per_worker must be > 0, got {cpus_per_worker}")
        if max_retries < 0:
            raise InputError(f"max_retries must be >= 0, got {max_retries}")
        if num_cpus is not None and num_cpus < 1:
            raise InputError(f"num_cpus must be >= 1, got {num_cpus}")
        self.address = address
        self.num_cpus = num_cpus
        self.cpus_per_worker = float(cpus_per_worker)
        self.gpus_per_worker = gpus_per_worker
        self.workers = workers
        self.max_retries = int(max_retries)
        self.connect_timeout = float(connect_timeout)
        self.log = log or (lambda msg: print(f"fastcurate: {msg}", file=sys.stderr, flush=True))
        self._ray: Any = None
        self._actors: List[Any] = []
        self._job_ref: Any = None
        self._state_ref: Any = None
        self._ok = False
        self._plan: Tuple[int, float, float] = (0, 0.0, 0.0)
        self._joined = ""
        self.patience_s = float(patience_s)

    # -- connection
    def connect(self) -> None:
        ray = import_ray()
        self._ray = ray
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        if ray.is_initialized():
            joined = ray.get_runtime_context().gcs_address
            if self.address is not None and self.address.split("://")[-1] != joined:
                self.log(f"this process has already joined Ray at {joined}; using it, not {self.address}")
            if self.num_cpus is not None:
                self.log(f"this process has already joined Ray at {joined}; num_cpus={self.num_cpus} is not applied")
            self._joined = "existing"
            return
        if address is not None:
            if self.num_cpus is not None:
                raise InputError("num_cpus sizes a new local Ray; an existing cluster keeps its own: drop it or the "
                                 "address")
            check_address(address, self.connect_timeout)
            kw: Dict[str, Any] = {"address": address}
        else:
            kw = {"num_cpus": self.num_cpus, "include_dashboard": False}
        try:
            ray.init(logging_level=logging.WARNING, **kw)
        except Exception as e:
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise RayConnectionError(f"could not start or join {where}: {type(e).__name__}: {e}; check the address "
                                     "(`ray status` on the cluster) or drop --engine ray to run here") from None
        self._joined = address or "local"

    # -- the pool
    def start(self, stage: Stage, ctx: Context, given: Mapping[str, Optional[str]], batch_size: int) -> None:
        super().start(stage, ctx, given, batch_size)
        # one executor may serve several runs in turn (the stages of a pipeline): nothing carries over
        self._actors, self._job_ref, self._state_ref, self._ok = [], None, None, False

    def _ensure_pool(self, n_shards: int) -> None:
        """Start the workers (once per run, for both passes) and put the job in the object store."""
        if self._actors:
            return
        ray = self._ray
        wants = dict(self.stage.worker_resources())
        n, cpus, gpus = plan_pool(ray.cluster_resources(), n_shards, cpus_per_worker=self.cpus_per_worker,
                                  gpus_per_worker=self.gpus_per_worker, stage_resources=wants,
                                  workers=self.workers)
        if (wants.get("GPU", 0) > 0 or (self.gpus_per_worker or 0) > 0) and gpus == 0:
            self.log("the Ray cluster has no GPUs: the workers run on CPUs")
        # Workers get absolute paths (their working directory may differ), no progress bars, a
        # picklable log, and one kernel thread per reserved CPU unless the run gives threads
        # (results do not depend on the threads).
        threads = self.ctx.threads or max(1, int(math.ceil(cpus)))
        wctx = replace(self.ctx, out=Path(os.path.abspath(self.ctx.out)), work=Path(os.path.abspath(self.ctx.work)),
                       threads=threads, progress=False, log=_StderrLog(self.stage.name))
        self._job_ref = ray.put((self.stage, wctx, dict(self.given), self.batch_size))
        self._plan = (n, cpus, gpus)
        cls = ray.remote(ShardWorker)
        opts: Dict[str, Any] = {"num_cpus": cpus, "max_restarts": self.max_retries,
                                "max_task_retries": self.max_retries}
        if gpus:
            opts["num_gpus"] = gpus
        self._actors = [cls.options(**opts).remote() for _ in range(n)]

    def setup(self, state: Optional[Dict[str, Any]]) -> None:
        self._state_ref = None  # put with the first call of the per-shard pass

    def map(self, phase: str, shards: Sequence[ShardRef], state: Optional[Dict[str, Any]],
            bar: Any) -> Iterator[Tuple[ShardRef, Outcome]]:
        if not shards:
            return
        ray = self._ray
        self._ensure_pool(len(shards))
        state_box: List[Any] = []
        if phase == "process" and state is not None:
            if self._state_ref is None:
                self._state_ref = ray.put(state)
            state_box = [self._state_ref]
        job_box = [self._job_ref]
        todo = list(shards)
        nxt = 0
        inflight: Dict[Any, Tuple[Any, ShardRef]] = {}
        ready: Dict[int, Tuple[str, Any, Optional[str]]] = {}

        def submit(actor: Any) -> None:
            nonlocal nxt
            s = todo[nxt]
            nxt += 1
            inflight[actor.run.remote(phase, s, job_box, state_box)] = (actor, s)

        for actor in self._actors:
            if nxt < len(todo):
                submit(actor)
        for s in todo:
            while s.index not in ready:
                done, _ = ray.wait(list(inflight), num_returns=1, timeout=self.patience_s)
                if not done:  # say why nothing moves rather than hang silently
                    self.log(f"{phase}: no shard finished in {self.patience_s:g} s ({len(inflight)} running on "
                             f"{len(self._actors)} Ray workers); on a busy cluster workers wait for free CPUs/GPUs "
                             "(`ray status` shows them)")
                    continue
                actor, got = inflight.pop(done[0])
                try:
                    res = ray.get(done[0])
                except ray.exceptions.RayTaskError as e:  # the call itself failed (not the stage)
                    raise FastcurateError(f"{got.path}: the {phase} failed in a Ray worker: {e}") from None
                except ray.exceptions.RayError as e:
                    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                    raise WorkerLostError(
                        f"{got.path}: the Ray worker running its {phase} died {self.max_retries + 1} times "
                        f"({type(e).__name__}: {first}). A shard that kills its worker every time (out of memory, "
                        "a crash in a kernel) stops the run: give workers more memory or CPUs "
                        "(--ray-cpus-per-worker), lower --batch-size, or run it with --engine local to see the "
                        "error") from None
                ready[got.index] = res
                if res[0] == "ok" and bar is not None:
                    bar.update(int(res[1]["rows"]))
                if nxt < len(todo):
                    submit(actor)
            kind, payload, tb = ready.pop(s.index)
            if kind == "error":
                raise payload from (_RemoteTraceback(tb) if tb else None)
            yield s, payload

    def before_finalize(self, state: Optional[Dict[str, Any]]) -> None:
        # finalize runs here, on the driver's instance, which the workers' setup did not touch
        self.stage.setup(self.ctx, state)
        self._ok = True

    def close(self) -> None:
        ray = self._ray
        if ray is None:
            return
        try:
            if self._actors:
                if self._ok:  # a clean end: let each worker release its models first
                    try:
                        ray.get([a.teardown.remote() for a in self._actors], timeout=60)
                    except Exception:
                        pass
                for a in self._actors:
                    try:
                        ray.kill(a, no_restart=True)
                    except Exception:
                        pass
        finally:
            self._actors = []
            self._job_ref = None
            self._state_ref = None

    def timings(self) -> Dict[str, Any]:
        n, cpus, gpus = self._plan
        return {"ray_workers": n, "ray_cpus_per_worker": cpus, "ray_gpus_per_worker": gpus,
                "ray_cluster": self._joined}


def run_stage_ray(stage: Stage, inputs: Union[PathLike, Sequence[PathLike]], out: PathLike, *,
                  address: Optional[str] = None, num_cpus: Optional[int] = None, cpus_per_worker: float = 1.0,
                  gpus_per_worker: Optional[float] = None, workers: Optional[int] = None, max_retries: int = 3,
                  connect_timeout: float = 10.0, **kwargs: Any) -> Dict[str, Any]:
    """:func:`fastcurate.runner.run_stage` on Ray: the same arguments (``columns``, ``on_error``,
    ``overwrite``, ``threads``, ``batch_size``, ``progress``, ``log``) plus the
    :class:`RayExecutor`'s. Returns the content of ``stats.json``."""
    from .local import run_stage

    ex = RayExecutor(address, num_cpus=num_cpus, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker,
                     workers=workers, max_retries=max_retries, connect_timeout=connect_timeout,
                     log=kwargs.get("log"))
    return run_stage(stage, inputs, out, engine=ex, **kwargs)
