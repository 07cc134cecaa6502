"""ONNX Runtime sessions: provider choice, CPU fp16 workaround, GPU IO binding.

Thread safety: ``OrtSession.run`` may be called from several threads (ORT sessions are thread-safe
for ``run``); the fastcurate encoders call it from one thread and overlap decoding instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import ModelError

__all__ = ["OrtSession", "choose_providers"]

_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def _ort():
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError(
            "onnxruntime is not installed: pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA), "
            "never both; plus 'fastcurate[embed]'"
        ) from None
    return ort


def choose_providers(device: str = "auto") -> List[str]:
    """Execution providers for ``device``: "auto", "cpu", "cuda" or "tensorrt".

    "auto" takes CUDA when this onnxruntime build offers it, else CPU. TensorRT is opt-in because
    its first run builds an engine per input shape, which costs minutes.
    """
    ort = _ort()
    avail = set(ort.get_available_providers())
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "auto":
        return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in avail else []) + ["CPUExecutionProvider"]
    if device in ("cuda", "gpu"):
        if "CUDAExecutionProvider" not in avail:
            raise ModelError(
                f"device={device!r} but this onnxruntime has no CUDA provider (has {sorted(avail)}); "
                "install onnxruntime-gpu instead of onnxruntime (never both)"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "tensorrt":
        if "TensorrtExecutionProvider" not in avail:
            raise ModelError(f"device='tensorrt' but onnxruntime offers only {sorted(avail)}")
        return ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ModelError(f"device must be 'auto', 'cpu', 'cuda' or 'tensorrt', got {device!r}")


class OrtSession:
    """One ONNX model in an ORT session, with a numpy-in / numpy-out ``run``."""

    def __init__(
        self,
        path: Path,
        providers: Sequence[str],
        intra_op_threads: Optional[int] = None,
        fp16: bool = False,
        spin: bool = False,
    ) -> None:
        ort = _ort()
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads:
            so.intra_op_num_threads = int(intra_op_threads)
        if not spin:
            # ORT's worker threads busy-wait between ops by default; that steals the cores the image
            # decode pool needs while it overlaps inference (and other tenants' on shared machines).
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        kwargs = {}
        if fp16 and providers[0] == "CPUExecutionProvider":
            # ORT's NCHWc layout pass crashes (segfault at session creation) on fp16 Conv on CPU.
            kwargs["disabled_optimizers"] = ["NchwcTransformer"]
        try:
            self.sess = ort.InferenceSession(str(path), sess_options=so, providers=list(providers), **kwargs)
        except Exception as e:
            raise ModelError(f"cannot load {path} in onnxruntime: {e}") from None
        self.path = Path(path)
        self.providers: List[str] = list(self.sess.get_providers())
        self.input_names = [i.name for i in self.sess.get_inputs()]
        self.output_names = [o.name for o in self.sess.get_outputs()]
        self.on_gpu = self.providers[0] in _GPU_PROVIDERS

    def run(self, feeds: Dict[str, np.ndarray], output: Optional[str] = None) -> np.ndarray:
        """Run and return the first (or the named) output as numpy."""
        return self.run_many(feeds, [output or self.output_names[0]])[0]

    def run_many(self, feeds: Dict[str, np.ndarray], outputs: Sequence[str]) -> List[np.ndarray]:
        """Run and return the named outputs as numpy, in that order."""
        names = list(outputs)
        if not self.on_gpu:
            return list(self.sess.run(names, feeds))
        # GPU: bind inputs/outputs explicitly so ORT does one host->device copy per input and one
        # device->host copy of each (small) output, and never re-allocates between batches.
        binding = self.sess.io_binding()
        for k, v in feeds.items():
            binding.bind_cpu_input(k, np.ascontiguousarray(v))
        for name in names:
            binding.bind_output(name, "cuda")
        self.sess.run_with_iobinding(binding)
        return list(binding.copy_outputs_to_cpu())
