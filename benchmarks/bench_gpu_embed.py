"""GPU embedding benchmark: fastcurate (ONNX Runtime, fp16, IO binding) against open_clip eager.

One short run (a few minutes on a GPU) that a session with a GPU can start in one command and that
checks its own answers. It measures, on one device (``--device cuda`` or ``--device cpu``):

* images/s end to end, from JPEG bytes in memory (the real photos in ../shared/data/images,
  repeated to a pool) to L2-normalised embeddings:
    - open_clip eager (fp32, and fp16 on CUDA): PIL decode + open_clip's preprocess in a thread
      pool of all the machine's CPU threads, batches prefetched, model on the device;
    - fastcurate ClipEncoder, fp16 (and fp32) bundles: CPU decode in the same number of threads,
      exact preprocessing and the fast (JPEG draft) variant; inputs and outputs through ORT IO
      binding on CUDA;
    - fastcurate with GPU decode, when available: nvImageCodec (``nvidia-nvimgcodec-cu12/13``) and
      torchvision's nvJPEG ``decode_jpeg``, resize / crop / normalise in torch on the GPU, the batch
      bound to ORT by device pointer. Not bitwise open_clip's preprocessing: its agreement is
      reported. On ``--device cpu`` a stand-in (PIL decode, the same torch code) exercises it.
  The fastest fastcurate variant is reported against open_clip eager fp32.
* images/s of the models alone (preprocessed batch), torch eager vs ORT;
* texts/s end to end (tokenise + text tower) on the same real captions, open_clip eager vs
  fastcurate (variable-length text tower);
* answers: ORT fp32 vs open_clip fp32 (images: same preprocessed batch and end to end; texts)
  cosine >= 0.999, ORT fp16 vs fp32 >= 0.999. A failed check makes the exit status 1.

Timing: every engine is warmed up, then timed runs of about ``--seconds`` each alternate between
the engines (A B C A B C ...) for ``--rounds`` rounds; medians are reported with the load average.
Results go to ``--out`` (default ``$OUT`` when set, else .bench/gpu): ``gpu_embed.json`` and
``gpu_embed.md``, and the markdown table is printed last.

Random weights (ViT-B-32, seed 0): the cost is the same as with real ones, and nothing can be
downloaded. ``--tiny`` uses a tiny CLIP of the same architecture (for the CPU test).

Usage: python benchmarks/bench_gpu_embed.py --device cuda            (GPU, ~4-5 min)
       python benchmarks/bench_gpu_embed.py --device cpu --tiny --seconds 0.3 --rounds 1 --images 64
Exit status: 0 all checks passed; 1 a check failed; 3 --device cuda but onnxruntime has no CUDA
provider (open_clip's side is still measured and written).
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import platform
import statistics
import subprocess
import importlib.util
import sys
import time
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("fastcurate") is None:  # a checkout run without installing the package
    sys.path.insert(0, str(ROOT / "python"))
SHARED = ROOT.parent / "shared" / "data"
# A GPU session carries the data inside the checkout (../shared does not travel): see docs/embed.md.
CARRIED = ROOT / ".gpu-data"

TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
COS_MIN = 0.999


# ----------------------------------------------------------------------------------------------
# Environment and inputs


def _run(cmd: List[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception as e:  # noqa: BLE001 - a missing tool is reported, not fatal
        return f"n/a ({type(e).__name__})"


def environment(device: str) -> Dict[str, Any]:
    import onnxruntime as ort
    import torch

    env: Dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "onnxruntime": ort.__version__,
        "ort_providers": ort.get_available_providers(),
        "loadavg": os.getloadavg(),
    }
    try:
        from fastcurate.models.torch_compat import import_open_clip
        open_clip = import_open_clip()

        env["open_clip"] = open_clip.__version__
    except Exception:  # noqa: BLE001
        env["open_clip"] = None
    try:
        import PIL

        env["pillow"] = PIL.__version__
    except Exception:  # noqa: BLE001
        pass
    env["nvimgcodec"] = _nvimgcodec_version()
    if device == "cuda" and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env["gpu"] = p.name
        env["gpu_memory_gib"] = round(p.total_memory / 2**30, 1)
        env["cudnn"] = torch.backends.cudnn.version()
        env["nvidia_smi"] = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem",
                                  "--format=csv,noheader"])
    env["git"] = _run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    return env


def _nvimgcodec_version() -> Optional[str]:
    try:
        from nvidia import nvimgcodec  # noqa: F401

        return str(getattr(nvimgcodec, "__version__", "?"))
    except Exception:  # noqa: BLE001 - absent or unloadable
        return None


def find_images(arg: Optional[str]) -> List[Path]:
    cands = [Path(arg)] if arg else [SHARED / "images" / "coco_mini_val", CARRIED / "images"]
    for d in cands:
        files = sorted(p for p in d.glob("*") if p.suffix.lower() in (".jpg", ".jpeg")) if d.is_dir() else []
        if files:
            return files
    raise SystemExit(f"no JPEG photos found in {[str(c) for c in cands]}; pass --images-dir "
                     "(a GPU session carries them in .gpu-data/images, see docs/embed.md)")


def find_captions(arg: Optional[str], n: int) -> List[str]:
    if arg:
        texts = Path(arg).read_text(encoding="utf-8").split("\n")
    elif (SHARED / "captions" / "cc3m_val.tsv").is_file():
        with open(SHARED / "captions" / "cc3m_val.tsv", encoding="utf-8") as f:
            texts = [line.split("\t")[0] for line in f.read().split("\n")]
    elif (CARRIED / "captions.txt").is_file():
        texts = (CARRIED / "captions.txt").read_text(encoding="utf-8").split("\n")
    else:
        raise SystemExit("no captions found; pass --captions FILE (one caption per line)")
    texts = [t for t in texts if t.strip()]
    return [texts[i % len(texts)] for i in range(n)]


# ----------------------------------------------------------------------------------------------
# Timing


def alternate(engines: Dict[str, Callable[[int], None]], sizes: Dict[str, int], rounds: int) -> Dict[str, Dict[str, float]]:
    """Runs engine(n) for each engine in turn, ``rounds`` times; returns items/s (median, all runs)."""
    runs: Dict[str, List[float]] = {k: [] for k in engines}
    for _ in range(rounds):
        for k, f in engines.items():
            t0 = time.perf_counter()
            f(sizes[k])
            runs[k].append(sizes[k] / (time.perf_counter() - t0))
    return {k: {"median": statistics.median(v), "runs": v, "n": sizes[k]} for k, v in runs.items()}


def calibrate(f: Callable[[int], None], unit: int, seconds: float, cap: int) -> int:
    """Warm up, then pick a size (a multiple of ``unit``) that runs for about ``seconds``."""
    f(unit)  # warm-up: sessions, cuDNN autotuning, thread pools
    n = unit * 2
    t0 = time.perf_counter()
    f(n)
    rate = n / max(time.perf_counter() - t0, 1e-6)
    want = int(rate * seconds) // unit * unit
    return int(min(max(want, unit), max(cap // unit * unit, unit)))


def calibrate_all(engines: Dict[str, Callable[[int], None]], unit: int, seconds: float, cap: int,
                  notes: List[str]) -> Dict[str, int]:
    """Calibrates each engine; one that fails is dropped (and noted) so the others still run."""
    sizes = {}
    for k in list(engines):
        try:
            sizes[k] = calibrate(engines[k], unit, seconds, cap)
        except Exception as e:  # noqa: BLE001
            notes.append(f"{k} failed and was dropped: {type(e).__name__}: {e}")
            print(f"!! {k} failed and was dropped: {e}", file=sys.stderr)
            traceback.print_exc()
            del engines[k]
    return sizes


def cos_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def cycle(items: Sequence[Any], n: int) -> List[Any]:
    return [items[i % len(items)] for i in range(n)]


# ----------------------------------------------------------------------------------------------
# open_clip eager, with the same decode pool and prefetching as fastcurate


class OpenClipImages:
    def __init__(self, model, preprocess, device: str, threads: int, batch: int, prefetch: int) -> None:
        self.model, self.pre, self.device, self.batch, self.prefetch = model, preprocess, device, batch, prefetch
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="oc-decode")
        self.dtype = next(model.parameters()).dtype

    def _prep(self, b: bytes):
        from PIL import Image

        return self.pre(Image.open(io.BytesIO(b)))

    def __call__(self, data: Sequence[bytes]) -> np.ndarray:
        import torch

        out: List[Any] = []
        q: deque = deque()
        chunks = (data[i : i + self.batch] for i in range(0, len(data), self.batch))
        exhausted = False
        while True:
            while not exhausted and len(q) <= self.prefetch:
                c = next(chunks, None)
                if c is None:
                    exhausted = True
                    break
                q.append([self.pool.submit(self._prep, b) for b in c])
            if not q:
                break
            x = torch.stack([f.result() for f in q.popleft()])
            if self.device == "cuda":
                x = x.pin_memory().to("cuda", non_blocking=True)
            with torch.no_grad():
                e = self.model.encode_image(x.to(self.dtype))
                out.append(torch.nn.functional.normalize(e.float(), dim=-1))
        return torch.cat(out).cpu().numpy()

    def close(self) -> None:
        self.pool.shutdown()


def open_clip_texts(model, tokenizer, device: str, batch: int) -> Callable[[Sequence[str]], np.ndarray]:
    import torch

    def run(texts: Sequence[str]) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), batch):
                ids = tokenizer(list(texts[i : i + batch])).to(device)
                out.append(torch.nn.functional.normalize(model.encode_text(ids).float(), dim=-1))
        return torch.cat(out).cpu().numpy()

    return run


# ----------------------------------------------------------------------------------------------
# fastcurate with GPU decode: decode -> torch preprocessing on the device -> ORT by device pointer


def torch_preprocess(images: List[Any], spec, device: str):
    """HWC uint8 tensors (RGB) on ``device`` -> float32 [n, 3, H, W], open_clip's transform in torch.

    Resize the shortest side (torchvision's int() for the long side), centre crop with rounded
    offsets, then ToTensor + Normalize. Antialiased bicubic in float, rounded to uint8 levels like
    PIL; not bitwise PIL, so the agreement with the exact path is measured.
    """
    import torch
    import torch.nn.functional as F

    th, tw = spec.size
    mode = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest"}[spec.interpolation]
    out = torch.empty((len(images), 3, th, tw), dtype=torch.float32, device=device)
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=device).view(3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32, device=device).view(3, 1, 1)
    for i, img in enumerate(images):
        x = img.permute(2, 0, 1).unsqueeze(0).float()
        h, w = int(x.shape[2]), int(x.shape[3])
        if spec.resize_mode == "squash":
            nh, nw = th, tw
        elif w <= h:
            nw, nh = th, int(th * h / w)
        else:
            nw, nh = int(th * w / h), th
        kw = {"antialias": True, "align_corners": False} if mode != "nearest" else {}
        x = F.interpolate(x, size=(nh, nw), mode=mode, **kw).clamp_(0, 255).round_()
        top, left = int(round((nh - th) / 2.0)), int(round((nw - tw) / 2.0))
        x = x[0, :, top : top + th, left : left + tw]
        out[i] = (x / 255.0 - mean) / std
    return out


class GpuDecodeImages:
    """fastcurate's fp16 image tower fed from a device-side decode (one worker decodes ahead)."""

    def __init__(self, session, spec, device: str, decoder: str, batch: int, threads: int) -> None:
        self.sess, self.spec, self.device, self.decoder, self.batch = session, spec, device, decoder, batch
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="gpu-decode")
        if decoder == "nvimgcodec":
            from nvidia import nvimgcodec

            self.nv = nvimgcodec
            self.dec = nvimgcodec.Decoder(device_id=0, max_num_cpu_threads=threads)
            self.params = nvimgcodec.DecodeParams(apply_exif_orientation=True, color_spec=nvimgcodec.ColorSpec.SRGB,
                                                  sample_format=nvimgcodec.SampleFormat.I_RGB)

    def _decode(self, data: Sequence[bytes]) -> List[Any]:
        import torch

        if self.decoder == "nvimgcodec":
            imgs = self.dec.decode([self.nv.CodeStream(b) for b in data], params=self.params)
            if any(i is None for i in imgs):
                raise RuntimeError("nvImageCodec could not decode an image of the batch")
            return [torch.from_dlpack(i) for i in imgs]
        if self.decoder == "torchvision":
            from torchvision.io import ImageReadMode, decode_jpeg

            raw = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in data]
            return [t.permute(1, 2, 0) for t in decode_jpeg(raw, mode=ImageReadMode.RGB, device="cuda")]
        # "pil": the CPU stand-in that exercises the same torch preprocessing and pointer binding.
        from PIL import Image

        return [torch.from_numpy(np.array(Image.open(io.BytesIO(b)).convert("RGB"))).to(self.device) for b in data]

    def _prepare(self, data: Sequence[bytes]):
        import torch

        x = torch_preprocess(self._decode(data), self.spec, self.device).contiguous()
        if self.device == "cuda":
            torch.cuda.synchronize()  # ORT reads the buffer on its own stream
        return x

    def _run(self, x) -> np.ndarray:
        sess = self.sess.sess
        b = sess.io_binding()
        b.bind_input(name=self.sess.input_names[0], device_type=self.device, device_id=0,
                     element_type=np.float32, shape=tuple(x.shape), buffer_ptr=x.data_ptr())
        b.bind_output(self.sess.output_names[0], self.device)
        sess.run_with_iobinding(b)
        return b.copy_outputs_to_cpu()[0]

    def __call__(self, data: Sequence[bytes]) -> np.ndarray:
        from fastcurate.models.score import l2_normalize

        out = []
        chunks = [data[i : i + self.batch] for i in range(0, len(data), self.batch)]
        q: deque = deque()
        for c in chunks[:2]:
            q.append(self.worker.submit(self._prepare, c))
        nxt = 2
        while q:
            x = q.popleft().result()
            if nxt < len(chunks):
                q.append(self.worker.submit(self._prepare, chunks[nxt]))
                nxt += 1
            out.append(l2_normalize(self._run(x)))
        return np.concatenate(out)

    def close(self) -> None:
        self.worker.shutdown()


def gpu_decoders(device: str) -> List[str]:
    """Device-side decoders that work here (each tried on one real JPEG)."""
    if device != "cuda":
        return ["pil"]
    found = []
    if _nvimgcodec_version() is not None:
        found.append("nvimgcodec")
    try:
        from torchvision.io import decode_jpeg  # noqa: F401

        found.append("torchvision")
    except Exception:  # noqa: BLE001
        pass
    return found


# ----------------------------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    ap.add_argument("--model", default="ViT-B-32", help="open_clip model name (random weights)")
    ap.add_argument("--tiny", action="store_true", help="a tiny CLIP instead (tests)")
    ap.add_argument("--seconds", type=float, default=3.0, help="about this long per timed run")
    ap.add_argument("--rounds", type=int, default=3, help="alternating timed runs per engine")
    ap.add_argument("--images", type=int, default=8192, help="most images in one timed run (pool size)")
    ap.add_argument("--texts", type=int, default=8192, help="most captions in one timed run")
    ap.add_argument("--batch", type=int, default=None, help="image batch (default 256 on cuda, 32 on cpu)")
    ap.add_argument("--text-batch", type=int, default=None, help="text batch (default 256 on cuda, 16 on cpu)")
    ap.add_argument("--decode-threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--prefetch", type=int, default=None, help="batches decoded ahead (default 4 cuda, 2 cpu)")
    ap.add_argument("--images-dir", default=None)
    ap.add_argument("--captions", default=None, help="a file with one caption per line")
    ap.add_argument("--bundle-dir", default=None, help="where to export (default: a temporary dir)")
    ap.add_argument("--reuse-bundle", action="store_true",
                    help="use the fp16 bundle already in --bundle-dir (exported from this same seed-0 model)")
    ap.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / ".bench" / "gpu"))
    a = ap.parse_args(argv)

    import onnxruntime as ort
    import torch
    from fastcurate.models.torch_compat import import_open_clip
    open_clip = import_open_clip()

    from fastcurate.models import ClipEncoder, export_clip, load_bundle
    from fastcurate.models.preprocess import Preprocessor

    dev = a.device
    if dev == "cuda" and not torch.cuda.is_available():
        print("--device cuda but torch sees no GPU", file=sys.stderr)
        return 2
    if dev == "cuda" and hasattr(ort, "preload_dlls"):
        # onnxruntime-gpu finds CUDA / cuDNN in the nvidia-* wheels that torch uses (torch, imported
        # above, has loaded most of them already).
        try:
            ort.preload_dlls()
        except Exception as e:  # noqa: BLE001
            print(f"onnxruntime.preload_dlls failed ({e}); relying on torch's CUDA libraries", file=sys.stderr)
    B = a.batch or (256 if dev == "cuda" else 32)
    TB = a.text_batch or (256 if dev == "cuda" else 16)
    prefetch = a.prefetch or (4 if dev == "cuda" else 2)
    T = a.decode_threads
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    env = environment(dev)
    ort_cuda = "CUDAExecutionProvider" in env["ort_providers"]
    print(f"# bench_gpu_embed device={dev} model={'tiny' if a.tiny else a.model} batch={B} text_batch={TB} "
          f"decode_threads={T} prefetch={prefetch}")
    for k, v in env.items():
        print(f"#   {k}: {v}")
    res: Dict[str, Any] = {"env": env, "args": vars(a), "batch": B, "text_batch": TB, "checks": {}, "images_e2e": {},
                           "model_only": {}, "texts_e2e": {}, "agreement": {}, "notes": []}
    checks: Dict[str, Dict[str, Any]] = res["checks"]

    def check(name: str, value: float, minimum: float = COS_MIN) -> None:
        checks[name] = {"value": float(value), "min": minimum, "ok": bool(value >= minimum)}
        print(f"check {name}: {value:.6f} (>= {minimum}) {'ok' if value >= minimum else 'FAILED'}")

    # ---------------- model and bundle ----------------
    torch.manual_seed(0)
    if a.tiny:
        model = open_clip.CLIP(**TINY_CFG)
        size = TINY_CFG["vision_cfg"]["image_size"]
        oc_pre = open_clip.image_transform(size, is_train=False)
    else:
        model, _, oc_pre = open_clip.create_model_and_transforms(a.model, pretrained=None)
    model.eval()
    oc_tok = open_clip.get_tokenizer("ViT-B-32")
    import tempfile

    bdir = Path(a.bundle_dir) if a.bundle_dir else Path(tempfile.mkdtemp(prefix="fc-gpu-bundle-")) / "bundle"
    t0 = time.perf_counter()
    if not (a.reuse_bundle and (bdir / "manifest.json").is_file() and "fp16" in load_bundle(bdir).variants):
        export_clip(copy.deepcopy(model), bdir, variants=["fp16"])
    res["export_s"] = time.perf_counter() - t0
    res["export_parity"] = load_bundle(bdir).manifest.get("parity")
    print(f"export fp32 + fp16 bundles: {res['export_s']:.1f} s; ORT CPU parity at export {res['export_parity']}")
    model32 = model.to(dev)
    model16 = copy.deepcopy(model32).half() if dev == "cuda" else None

    photos = find_images(a.images_dir)
    jpegs = [p.read_bytes() for p in photos]
    captions = find_captions(a.captions, max(a.texts, 64))
    res["inputs"] = {"photos": len(photos), "photo_dir": str(photos[0].parent), "captions": len(set(captions))}
    print(f"inputs: {len(photos)} real photos from {photos[0].parent}, {len(set(captions))} real captions")

    ort_dev = "cuda" if (dev == "cuda" and ort_cuda) else "cpu"
    if dev == "cuda" and not ort_cuda:
        res["notes"].append("onnxruntime has no CUDAExecutionProvider: fastcurate's GPU path was not measured; "
                            "install onnxruntime-gpu (see docs/embed.md)")
        print("!! onnxruntime has no CUDAExecutionProvider: only open_clip's side is measured", file=sys.stderr)

    def enc(precision: str, fast: bool = False) -> ClipEncoder:
        return ClipEncoder(bdir, device=ort_dev, precision=precision, fast_preprocess=fast, decode_threads=T,
                           batch_size=B, text_batch_size=TB, prefetch=prefetch)

    status = 0
    try:
        # ---------------- answers first ----------------
        exact = Preprocessor(load_bundle(bdir).preprocess)
        sample = jpegs[: min(len(jpegs), 64)]
        x = exact.normalize(np.stack([exact.load_uint8(b) for b in sample]))
        with torch.no_grad():
            ref_img = model32.encode_image(torch.from_numpy(x).to(dev)).float().cpu().numpy()
            ref_txt = model32.encode_text(oc_tok(captions[:256]).to(dev)).float().cpu().numpy()
        oc_imgs32 = OpenClipImages(model32, oc_pre, dev, T, B, prefetch)
        oc_e2e = oc_imgs32(sample)
        res["ort_device"] = ort_dev
        gpu_engines: Dict[str, GpuDecodeImages] = {}
        try:  # fastcurate's side: a failure here (e.g. the CUDA provider) still lets open_clip be measured
            if dev == "cpu" or ort_cuda:
                e32, e16 = enc("fp32"), enc("fp16")
                s32, s16 = e32.image_session, e16.image_session
                res["providers"] = s16.providers
                if dev == "cuda" and s16.providers[0] != "CUDAExecutionProvider":
                    # ORT falls back to the CPU when the CUDA provider cannot load (missing cuDNN, ...).
                    ort_cuda = False
                    res["notes"].append(f"the ORT session fell back to {s16.providers}: fastcurate's numbers are CPU numbers")
                    print(f"!! ORT session providers {s16.providers}: the CUDA provider did not load", file=sys.stderr)
                o32 = np.concatenate([s32.run({s32.input_names[0]: x[i : i + B]}) for i in range(0, len(x), B)])
                o16 = np.concatenate([s16.run({s16.input_names[0]: x[i : i + B]}) for i in range(0, len(x), B)])
                check("image fp32 ORT vs open_clip (same batch), min cos", cos_rows(o32, ref_img).min())
                check("image fp16 vs fp32 ORT, min cos", cos_rows(o16, o32).min())
                t32, t16 = e32.encode_texts(captions[:256]), e16.encode_texts(captions[:256])
                check("text fp32 ORT vs open_clip, min cos", cos_rows(t32, ref_txt).min())
                check("text fp16 vs fp32 ORT, min cos", cos_rows(t16, t32).min())
                check("images end to end fp32 (exact decode) vs open_clip, min cos",
                      cos_rows(e32.encode_images(sample), oc_e2e).min())
                ex16 = e16.encode_images(sample)
                fast16 = enc("fp16", fast=True)
                c = cos_rows(fast16.encode_images(sample), ex16)
                res["agreement"]["fast preprocess vs exact (fp16)"] = {"mean": float(c.mean()), "min": float(c.min())}
                for d in gpu_decoders(dev):
                    try:
                        g = GpuDecodeImages(s16, exact.spec, dev, d, B, T)
                        c = cos_rows(g(sample), ex16)
                        gpu_engines[d] = g
                        res["agreement"][f"GPU decode ({d}) vs exact (fp16)"] = {"mean": float(c.mean()), "min": float(c.min())}
                    except Exception as e:  # noqa: BLE001 - a decoder that fails is reported, not fatal
                        res["notes"].append(f"GPU decode with {d} failed: {type(e).__name__}: {e}")
                        print(f"!! GPU decode with {d} failed: {e}", file=sys.stderr)
                for k, v in res["agreement"].items():
                    print(f"agreement {k}: cos mean {v['mean']:.5f} min {v['min']:.5f}")
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            res["error_fastcurate"] = traceback.format_exc()
            res["notes"].append("fastcurate's side failed before timing (see error_fastcurate); only open_clip is timed")
            ort_cuda = False
            status = 1
            if dev == "cpu":
                raise

        # ---------------- images end to end ----------------
        img_engines: Dict[str, Callable[[int], None]] = {"open_clip eager fp32": lambda n: oc_imgs32(cycle(jpegs, n))}
        closers: List[Callable[[], None]] = [oc_imgs32.close]
        if model16 is not None:
            oc_imgs16 = OpenClipImages(model16, oc_pre, dev, T, B, prefetch)
            closers.append(oc_imgs16.close)
            img_engines["open_clip eager fp16"] = lambda n: oc_imgs16(cycle(jpegs, n))
        if dev == "cpu" or ort_cuda:
            img_engines["fastcurate fp16, CPU decode exact"] = lambda n: e16.encode_images(cycle(jpegs, n))
            img_engines["fastcurate fp16, CPU decode fast"] = lambda n: fast16.encode_images(cycle(jpegs, n))
            for d, g in gpu_engines.items():
                img_engines[f"fastcurate fp16, GPU decode ({d})"] = (lambda g: lambda n: g(cycle(jpegs, n)))(g)
                closers.append(g.close)
            img_engines["fastcurate fp32, CPU decode exact"] = lambda n: e32.encode_images(cycle(jpegs, n))
        sizes = calibrate_all(img_engines, B, a.seconds, a.images, res["notes"])
        res["images_e2e"] = alternate(img_engines, sizes, a.rounds)

        # ---------------- models alone ----------------
        xb = np.ascontiguousarray(np.concatenate([x] * (B // len(x) + 1))[:B])
        xt = torch.from_numpy(xb).to(dev)
        model_engines: Dict[str, Callable[[int], None]] = {}

        def torch_model(m, dtype):
            def run(n: int) -> None:
                with torch.no_grad():
                    for _ in range(n // B):
                        m.encode_image(xt.to(dtype))
                if dev == "cuda":
                    torch.cuda.synchronize()

            return run

        model_engines["open_clip eager fp32"] = torch_model(model32, torch.float32)
        if model16 is not None:
            model_engines["open_clip eager fp16"] = torch_model(model16, torch.float16)
        if dev == "cpu" or ort_cuda:
            for p, s in (("fp16", s16), ("fp32", s32)):
                model_engines[f"ORT {p} (host batch, IO binding)"] = (
                    lambda s: lambda n: [s.run({s.input_names[0]: xb}) for _ in range(n // B)])(s)
        msizes = calibrate_all(model_engines, B, a.seconds / 2, 64 * B, res["notes"])
        res["model_only"] = alternate(model_engines, msizes, a.rounds)

        # ---------------- texts end to end ----------------
        txt_engines: Dict[str, Callable[[int], None]] = {}
        oc_t32 = open_clip_texts(model32, oc_tok, dev, TB)
        txt_engines["open_clip eager fp32"] = lambda n: oc_t32(captions[:n])
        if model16 is not None:
            oc_t16 = open_clip_texts(model16, oc_tok, dev, TB)
            txt_engines["open_clip eager fp16"] = lambda n: oc_t16(captions[:n])
        if dev == "cpu" or ort_cuda:
            txt_engines["fastcurate fp16"] = lambda n: e16.encode_texts(captions[:n])
            txt_engines["fastcurate fp32"] = lambda n: e32.encode_texts(captions[:n])
        tsizes = calibrate_all(txt_engines, TB, a.seconds, a.texts, res["notes"])
        res["texts_e2e"] = alternate(txt_engines, tsizes, a.rounds)
        for c in closers:
            c()
    except Exception:  # noqa: BLE001 - whatever was measured is still written
        traceback.print_exc()
        res["error"] = traceback.format_exc()
        status = 1

    if any(not c["ok"] for c in checks.values()):
        status = 1
    if dev == "cuda" and not ort_cuda and status == 0:
        status = 3
    res["loadavg_after"] = os.getloadavg()
    res["wall_s"] = time.perf_counter() - t_start
    md = summary(res, dev)
    (out_dir / "gpu_embed.json").write_text(json.dumps(res, indent=2, default=str))
    (out_dir / "gpu_embed.md").write_text(md)
    print(f"\nwrote {out_dir / 'gpu_embed.json'} and gpu_embed.md ({res['wall_s']:.0f} s in all)\n")
    print(md)
    return status


def summary(res: Dict[str, Any], dev: str) -> str:
    env = res["env"]
    gpu = env.get("nvidia_smi") or env.get("gpu") or f"{env['cpu_count']} CPU threads"
    lines = [
        f"device: {dev} ({gpu}); torch {env['torch']} (CUDA {env['torch_cuda']}), onnxruntime {env['onnxruntime']} "
        f"{'with' if 'CUDAExecutionProvider' in env['ort_providers'] else 'without'} CUDA, open_clip {env.get('open_clip')}, "
        f"nvImageCodec {env.get('nvimgcodec')}; batch {res['batch']} images / {res['text_batch']} texts; "
        f"load {env['loadavg'][0]:.1f} -> {res['loadavg_after'][0]:.1f}; git {env.get('git')}",
        "",
        "| measurement | engine | items/s (median) | vs open_clip eager fp32 |",
        "|---|---|---|---|",
    ]
    for section, label in (("images_e2e", "images end to end (JPEG bytes)"), ("model_only", "image model alone"),
                           ("texts_e2e", "texts end to end")):
        r = res.get(section) or {}
        base = r.get("open_clip eager fp32", {}).get("median")
        for k, v in r.items():
            ratio = f"{v['median'] / base:.2f}x" if base else "-"
            lines.append(f"| {label} | {k} | {v['median']:,.1f} | {ratio} |")
        ours = {k: v["median"] for k, v in r.items() if k.startswith(("fastcurate", "ORT"))}
        if ours and base:
            best = max(ours, key=ours.get)
            lines.append(f"| {label} | **best fastcurate: {best}** | **{ours[best]:,.1f}** | **{ours[best] / base:.2f}x** |")
    lines.append("")
    for k, v in res["checks"].items():
        lines.append(f"- check {k}: {v['value']:.6f} (>= {v['min']}) {'ok' if v['ok'] else '**FAILED**'}")
    for k, v in res["agreement"].items():
        lines.append(f"- agreement {k}: cos mean {v['mean']:.5f}, min {v['min']:.5f}")
    for n in res["notes"]:
        lines.append(f"- note: {n}")
    for key in ("error_fastcurate", "error"):
        if res.get(key):
            lines.append(f"- **{key}**: " + res[key].strip().splitlines()[-1])
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
