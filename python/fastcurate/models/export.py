"""Export CLIP models (open_clip or Hugging Face) and text encoders to a fastcurate model bundle.

Needs the ``export`` extra (torch, open_clip_torch, onnx, onnxscript; transformers for HF models).
Nothing in the runtime imports this module.

Why the dynamo exporter: the TorchScript exporter fails on ``nn.MultiheadAttention``'s fast path,
which every open_clip ViT uses; ``torch.onnx.export(..., dynamo=True)`` handles it.

Why a variable-length text tower: CLIP's text attention is causal and the pooled feature is taken
at the end token, so the tokens after it (padding) never influence the result. Exporting the tower
with a dynamic sequence axis (positional embedding and causal mask sliced to the input length)
lets the runtime cut each batch to its longest caption — web captions average ~23 of 77 tokens.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import InputError, ModelError
from .bundle import atomic_bundle_dir, write_manifest
from .preprocess import OPENAI_MEAN, OPENAI_STD, PreprocessSpec
from .tokenizer import build_clip_tokenizer_json

__all__ = ["export_clip", "export_text_model", "make_text_bundle", "quantize_int8", "convert_fp16"]

_PRECISIONS = ("fp32", "fp16", "int8")
_PARITY_MIN_COS = {"fp32": 0.9999, "fp16": 0.999, "int8": 0.99}
_SAMPLE_CAPTIONS = [
    "a photo of a cat sitting on a red couch",
    "Two dogs playing in the snow, 2019 (photo: AP)",
    "",
    "UPPER case & HTML &amp; entities, café, 東京",
    "a " * 100,
    "IMG_0001.JPG",
]


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ModelError("export needs torch: pip install 'fastcurate[export]'") from None
    return torch


def _onnx_export(module, args: Tuple, path: Path, input_names: List[str], output_names: List[str],
                 dynamic_shapes: Any, opset: int) -> None:
    torch = _torch()
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(
            module, args, dynamo=True, opset_version=opset, input_names=input_names,
            output_names=output_names, dynamic_shapes=dynamic_shapes, optimize=True,
            verbose=False, report=False,
        )
        prog.save(str(path))
    # A single self-contained file is simpler to checksum and move; models > 2 GB keep external data.
    import onnx

    if path.stat().st_size < (1 << 31) and any(p.name.startswith(path.name + ".") or p.suffix == ".data"
                                               for p in path.parent.iterdir()):
        m = onnx.load(str(path), load_external_data=True)
        for p in list(path.parent.iterdir()):
            if p.name != path.name and (p.suffix == ".data" or p.name.startswith(path.name + ".")):
                p.unlink()
        onnx.save(m, str(path))


# --------------------------------------------------------------------------------------------------
# Tower wrappers


def _make_wrappers(model: Any, text_variable_length: bool):
    """(image_module, text_module, kind, variable_length_used) for an open_clip or HF CLIP model."""
    torch = _torch()
    nn: Any = torch.nn  # a module object known only at run time: mypy takes its classes as Any

    if hasattr(model, "vision_model") and hasattr(model, "visual_projection"):  # HF CLIPModel
        class HFImage(nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, pixel_values):
                return self.m.visual_projection(self.m.vision_model(pixel_values=pixel_values).pooler_output)

        class HFText(nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids):
                return self.m.text_projection(self.m.text_model(input_ids=input_ids).pooler_output)

        # HF slices position ids to the input length and pools at the end token: variable length is exact.
        return HFImage(model), HFText(model), "hf", text_variable_length

    if not hasattr(model, "encode_image"):
        raise InputError(f"model must be an open_clip or Hugging Face CLIP model, got {type(model).__name__}")

    class OCImage(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            return self.m.encode_image(pixel_values)

    class OCTextFixed(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            return self.m.encode_text(input_ids)

    # Find the text tower's parts (CLIP keeps them on the model, CustomTextCLIP on model.text).
    from open_clip.transformer import text_global_pool

    tower = model if hasattr(model, "token_embedding") else getattr(model, "text", None)
    pool_type = getattr(tower, "text_pool_type", getattr(tower, "pool_type", None))
    eos_id = getattr(tower, "text_eos_id", getattr(tower, "eos_id", None))
    can_vary = (
        tower is not None
        and all(hasattr(tower, a) for a in ("token_embedding", "positional_embedding", "transformer", "ln_final"))
        and getattr(tower, "attn_mask", None) is not None  # causal
        and getattr(tower, "cls_emb", None) is None
        and not getattr(tower, "use_pad_mask", False)
        and pool_type in ("argmax", "eos")
    )
    if not (text_variable_length and can_vary):
        return OCImage(model), OCTextFixed(model), "open_clip", False

    class OCTextVar(nn.Module):
        def __init__(self, t):
            super().__init__()
            self.t = t

        def forward(self, input_ids):
            t = self.t
            n = input_ids.shape[1]
            x = t.token_embedding(input_ids)
            x = x + t.positional_embedding[:n]
            x = t.transformer(x, attn_mask=t.attn_mask[:n, :n])
            x = t.ln_final(x)
            x = text_global_pool(x, input_ids, pool_type, eos_token_id=eos_id)
            proj = t.text_projection
            if proj is not None:
                x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
            return x

    return OCImage(model), OCTextVar(tower), "open_clip", True


# --------------------------------------------------------------------------------------------------
# Post-processing of ONNX files (no torch needed)


def convert_fp16(src: Union[str, Path], dst: Union[str, Path]) -> None:
    """fp16 weights and compute; inputs and outputs stay float32 so callers need not care."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    m = onnx.load(str(src))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m16 = convert_float_to_float16(m, keep_io_types=True, disable_shape_infer=False)
    onnx.save(m16, str(dst))


def quantize_int8(src: Union[str, Path], dst: Union[str, Path]) -> None:
    """Dynamic int8 quantisation (weights int8, activations quantised per batch at run time), for CPUs.

    ORT's own graph fusions (attention, LayerNorm, GELU, at the "extended" level) are applied
    first and the fused graph is quantised: on ViT-B-32 this runs about 2x faster than quantising the
    raw exported graph, for the same agreement with fp32 (measured on real inputs: image cosine
    >= 0.9997, text cosine >= 0.998; see benchmarks/RESULTS.md). The fused graph
    uses ONNX Runtime contrib ops, so the int8 variant is for ONNX Runtime only.
    """
    import tempfile

    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="fastcurate-q-") as td:
        fused = Path(td) / "fused.onnx"
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(fused)
        ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantiser logs a "consider pre-processing" hint per call
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantize_dynamic(str(fused), str(dst), weight_type=QuantType.QInt8, per_channel=False,
                                 reduce_range=False)
        finally:
            root.setLevel(level)


# --------------------------------------------------------------------------------------------------


def _variants_to_write(precision: Union[str, Sequence[str]], variants: Optional[Sequence[str]],
                       opset: int) -> Tuple[str, List[str]]:
    """The bundle's default precision and every variant to write (fp32 always, ``variants``
    (default fp16), the requested ones), checked."""
    if opset < 17:
        raise InputError(f"opset must be >= 17, got {opset}")
    prec = [precision] if isinstance(precision, str) else list(precision)
    wanted = list(dict.fromkeys(["fp32"] + list(variants if variants is not None else ["fp16"]) + prec))
    for p in wanted:
        if p not in _PRECISIONS:
            raise InputError(f"precision {p!r} is not one of {_PRECISIONS}")
    return prec[0], wanted


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def _parity(path: Path, name: str, x: np.ndarray, ref: np.ndarray, precision: str) -> float:
    from .session import OrtSession

    sess = OrtSession(path, ["CPUExecutionProvider"], fp16=precision == "fp16")
    got = sess.run({name: x})
    if got.shape != ref.shape:
        raise ModelError(f"{path.name}: ONNX output shape {got.shape} != torch {ref.shape}")
    c = float(_cos(got.astype(np.float64), ref.astype(np.float64)).min())
    if not c >= _PARITY_MIN_COS[precision]:
        raise ModelError(
            f"{path.name}: ONNX/torch parity failed, min cosine {c:.6f} < {_PARITY_MIN_COS[precision]}"
        )
    return c


def _resolve_model(model: Any, pretrained: Optional[str]) -> Tuple[Any, Dict[str, Any]]:
    source: Dict[str, Any] = {}
    if isinstance(model, (str, os.PathLike)):
        p = Path(model)
        if p.is_dir() and (p / "config.json").is_file():  # a Hugging Face CLIPModel directory
            try:
                from transformers import CLIPModel
            except ImportError:
                raise ModelError("exporting a Hugging Face model needs transformers: pip install transformers") from None
            m = CLIPModel.from_pretrained(str(p))
            source = {"library": "transformers", "model": str(p.resolve())}
            return m.eval(), source
        from .torch_compat import import_open_clip

        open_clip = import_open_clip()
        name = str(model)
        if name not in open_clip.list_models():
            raise InputError(
                f"{name!r} is neither an open_clip model name (e.g. ViT-B-32; see open_clip.list_models()) "
                "nor a Hugging Face model directory with config.json"
            )
        if pretrained is not None and not Path(pretrained).is_file():
            raise InputError(
                f"pretrained={pretrained!r} is not a file; pass a local checkpoint path "
                "(no downloads here) or None for random weights"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = open_clip.create_model(name, pretrained=pretrained)
        source = {"library": "open_clip", "model": name, "pretrained": str(pretrained) if pretrained else None,
                  "open_clip_version": getattr(open_clip, "__version__", "?")}
        return m.eval(), source
    lib = "transformers" if hasattr(model, "vision_model") else "open_clip"
    return model.eval(), {"library": lib, "model": type(model).__name__, "pretrained": "<object>"}


def _preprocess_spec(model: Any, kind: str, hf_dir: Optional[Path]) -> PreprocessSpec:
    if kind == "hf":
        cfg = model.config.vision_config
        size = int(cfg.image_size)
        mean, std = OPENAI_MEAN, OPENAI_STD
        if hf_dir is not None and (hf_dir / "preprocessor_config.json").is_file():
            pc = json.loads((hf_dir / "preprocessor_config.json").read_text())
            mean = tuple(pc.get("image_mean", mean))
            std = tuple(pc.get("image_std", std))
        return PreprocessSpec(size=(size, size), resize_mode="shortest", interpolation="bicubic", mean=mean, std=std)
    from open_clip import get_model_preprocess_cfg

    pc = dict(get_model_preprocess_cfg(model))
    s = pc.get("size", 224)
    hw: Tuple[int, int] = (int(s), int(s)) if isinstance(s, int) else (int(s[0]), int(s[1]))
    return PreprocessSpec(
        size=hw, resize_mode=pc.get("resize_mode", "shortest"),
        interpolation=pc.get("interpolation", "bicubic"),
        mean=tuple(pc.get("mean", OPENAI_MEAN)), std=tuple(pc.get("std", OPENAI_STD)),
    )


def _clip_tokenizer_source(kind: str, hf_dir: Optional[Path]) -> Path:
    if kind == "hf" and hf_dir is not None and (hf_dir / "merges.txt").is_file():
        return hf_dir / "merges.txt"
    try:
        from .torch_compat import import_open_clip

        import_open_clip()
        from open_clip.tokenizer import default_bpe
    except ImportError:
        raise ModelError("need open_clip_torch (its BPE vocabulary) to build the CLIP tokenizer") from None
    return Path(default_bpe())


def _check_hf_vocab(vocab_json: Path, tok_path: Path) -> None:
    """HF CLIP tokenizers spell the specials <|startoftext|>; every other id must equal ours."""
    theirs = json.loads(vocab_json.read_text(encoding="utf-8"))
    ours = json.loads(tok_path.read_text(encoding="utf-8"))["model"]["vocab"]
    alias = {"<|startoftext|>": "<start_of_text>", "<|endoftext|>": "<end_of_text>"}
    bad = [t for t, i in theirs.items() if ours.get(alias.get(t, t)) != i]
    if bad:
        raise ModelError(
            f"{vocab_json}: {len(bad)} token ids differ from the CLIP BPE vocabulary built from merges.txt "
            f"(e.g. {bad[:3]}); this tokenizer is not supported"
        )


def export_clip(
    model: Any,
    out_dir: Union[str, Path],
    precision: Union[str, Sequence[str]] = "fp32",
    *,
    pretrained: Optional[str] = None,
    variants: Optional[Sequence[str]] = None,
    opset: int = 18,
    text_variable_length: bool = True,
    overwrite: bool = True,
    check_parity: bool = True,
) -> Path:
    """Export a CLIP model to a bundle directory that :class:`~fastcurate.ClipEncoder` runs.

    Args:
        model: an open_clip model name ("ViT-B-32", "ViT-L-14", ...), a Hugging Face ``CLIPModel``
            directory, or an already built open_clip / Hugging Face CLIP model object.
        out_dir: the bundle directory (replaced atomically).
        precision: the default precision recorded in the manifest ("fp32", "fp16" or "int8"); that
            variant is always written.
        pretrained: for a model name, a local checkpoint path, or None for random initialisation.
        variants: precisions to write (default: fp32 and fp16, plus ``precision``). fp32 is always
            written: it is the reference the others are checked against.
        opset: ONNX opset (>= 17).
        text_variable_length: export the text tower with a dynamic sequence axis (exact for causal
            towers that pool at the end token; other towers fall back to the fixed context).
        check_parity: run ONNX Runtime against torch on sample inputs; fp32 must reach cosine
            >= 0.9999 or a :class:`~fastcurate.errors.ModelError` is raised. The measured cosines
            are recorded in the manifest.

    Returns:
        The bundle path.
    """
    torch = _torch()
    default_precision, wanted = _variants_to_write(precision, variants, opset)
    hf_dir = Path(model) if isinstance(model, (str, os.PathLike)) and Path(model).is_dir() else None
    m, source = _resolve_model(model, pretrained)
    m = m.float()
    img_mod, txt_mod, kind, var_len = _make_wrappers(m, text_variable_length)
    spec = _preprocess_spec(m, kind, hf_dir)
    if kind == "hf":
        ctx = int(m.config.text_config.max_position_embeddings)
    else:
        ctx = int(getattr(m, "context_length", None) or getattr(getattr(m, "text", None), "context_length", None) or 77)

    with atomic_bundle_dir(out_dir, overwrite=overwrite) as tmp:
        tok_path = build_clip_tokenizer_json(_clip_tokenizer_source(kind, hf_dir), tmp / "tokenizer.json")
        if hf_dir is not None and (hf_dir / "vocab.json").is_file():
            _check_hf_vocab(hf_dir / "vocab.json", tok_path)
        (tmp / "preprocess.json").write_text(json.dumps(spec.to_dict(), indent=2) + "\n")
        from .tokenizer import ClipTokenizer

        tok = ClipTokenizer(tok_path, context_length=ctx)
        h, w = spec.size
        gen = torch.Generator().manual_seed(0)
        pix = torch.randn(3, 3, h, w, generator=gen)
        ids_full = torch.from_numpy(tok(_SAMPLE_CAPTIONS))
        ids_short = torch.from_numpy(tok(_SAMPLE_CAPTIONS[:2], pad_to="longest"))
        with torch.no_grad():
            ref_img = img_mod(pix).numpy()
            ref_txt = txt_mod(ids_full).numpy()
            if var_len:  # the reference for a cut batch is the full-context torch model
                ref_short = txt_mod(ids_short).numpy()
                full_short = txt_mod(torch.from_numpy(tok(_SAMPLE_CAPTIONS[:2]))).numpy()
                c = float(_cos(ref_short, full_short).min())
                if c < 0.9999:
                    raise ModelError(f"variable-length text tower is not exact for this model (cos {c:.6f}); "
                                     "export with text_variable_length=False")
        embed_dim = int(ref_img.shape[1])
        if ref_txt.shape[1] != embed_dim:
            raise ModelError(f"image dim {embed_dim} != text dim {ref_txt.shape[1]}")

        batch = torch.export.Dim("batch", min=1, max=4096)
        _onnx_export(img_mod, (pix,), tmp / "image.onnx", ["pixel_values"], ["image_embeds"],
                     {"pixel_values": {0: batch}}, opset)
        seq = torch.export.Dim("seq", min=2, max=ctx) if var_len else None
        _onnx_export(txt_mod, (ids_short if var_len else ids_full,), tmp / "text.onnx", ["input_ids"],
                     ["text_embeds"], {"input_ids": {0: batch, 1: seq} if var_len else {0: batch}}, opset)

        variants_files: Dict[str, Dict[str, str]] = {"fp32": {"image": "image.onnx", "text": "text.onnx"}}
        for p in wanted:
            if p == "fp32":
                continue
            for tower in ("image", "text"):
                f = f"{tower}.{p}.onnx"
                (convert_fp16 if p == "fp16" else quantize_int8)(tmp / f"{tower}.onnx", tmp / f)
            variants_files[p] = {"image": f"image.{p}.onnx", "text": f"text.{p}.onnx"}

        parity: Dict[str, Dict[str, float]] = {}
        if check_parity:
            for p, files in variants_files.items():
                parity[p] = {
                    "image_min_cos": _parity(tmp / files["image"], "pixel_values", pix.numpy(), ref_img, p),
                    "text_min_cos": _parity(tmp / files["text"], "input_ids", ids_full.numpy(), ref_txt, p),
                }
        manifest = {
            "kind": "clip",
            "source": source,
            "embed_dim": embed_dim,
            "default_precision": default_precision,
            "variants": variants_files,
            "opset": opset,
            "inputs": {"image": "pixel_values", "text": "input_ids"},
            "outputs": {"image": "image_embeds", "text": "text_embeds"},
            "text": {"context_length": ctx, "variable_length": bool(var_len), "pad_id": 0},
            "tokenizer": {"file": "tokenizer.json", "kind": "clip", "cleaning": "open_clip lower (ftfy)"},
            "parity": parity,
            "exporter": {"torch": torch.__version__},
        }
        write_manifest(tmp, manifest)
    return Path(out_dir)


def make_text_bundle(
    onnx_path: Union[str, Path],
    tokenizer_json: Union[str, Path],
    out_dir: Union[str, Path],
    *,
    pooling: str = "mean",
    normalize: bool = True,
    output: Optional[str] = None,
    max_length: int = 256,
    precision: str = "fp32",
    source: Optional[Dict[str, Any]] = None,
    overwrite: bool = True,
) -> Path:
    """Wrap any ONNX text encoder (token ids -> hidden states or pooled vectors) and its
    ``tokenizer.json`` into a "text" bundle for :class:`~fastcurate.TextEncoder`. No torch.

    ``pooling`` is "mean" (masked mean of the output, sentence-transformers style), "cls" or "none"
    (the output is already one vector per text). The embedding size is read from the ONNX output.
    """
    import onnxruntime as ort

    onnx_path, tokenizer_json = Path(onnx_path), Path(tokenizer_json)
    for p in (onnx_path, tokenizer_json):
        if not p.is_file():
            raise InputError(f"{p} does not exist")
    if pooling not in ("mean", "cls", "none"):
        raise InputError(f"pooling must be 'mean', 'cls' or 'none', got {pooling!r}")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    outs = sess.get_outputs()
    out = next((o for o in outs if o.name == output), outs[0]) if output else outs[0]
    dim = out.shape[-1]
    if not isinstance(dim, int):
        from .tokenizer import HFTokenizer

        feeds = HFTokenizer(tokenizer_json)(["probe"])
        feeds = {k: v for k, v in feeds.items() if k in {i.name for i in sess.get_inputs()}}
        dim = int(sess.run([out.name], feeds)[0].shape[-1])
    with atomic_bundle_dir(out_dir, overwrite=overwrite) as tmp:
        fname = "text.onnx" if precision == "fp32" else f"text.{precision}.onnx"
        shutil.copyfile(onnx_path, tmp / fname)
        shutil.copyfile(tokenizer_json, tmp / "tokenizer.json")
        manifest = {
            "kind": "text",
            "source": source or {"onnx": str(onnx_path.resolve()), "tokenizer": str(tokenizer_json.resolve())},
            "embed_dim": int(dim),
            "default_precision": precision,
            "variants": {precision: {"text": fname}},
            "text": {"pooling": pooling, "normalize": bool(normalize), "output": out.name, "max_length": int(max_length)},
            "tokenizer": {"file": "tokenizer.json", "kind": "hf"},
        }
        write_manifest(tmp, manifest)
    return Path(out_dir)


def export_text_model(
    model_dir: Union[str, Path],
    out_dir: Union[str, Path],
    *,
    pooling: str = "mean",
    normalize: bool = True,
    max_length: int = 256,
    opset: int = 18,
    overwrite: bool = True,
    check_parity: bool = True,
) -> Path:
    """Export a Hugging Face text encoder directory (e.g. sentence-transformers all-MiniLM-L6-v2,
    with ``config.json``, safetensors and ``tokenizer.json``) to a "text" bundle.

    The ONNX model outputs ``last_hidden_state``; pooling happens in the runtime so that the same
    code serves any encoder. Parity against the torch model (mean-pooled, normalised) is checked.
    """
    torch = _torch()
    try:
        from transformers import AutoModel
    except ImportError:
        raise ModelError("export_text_model needs transformers: pip install transformers") from None
    model_dir = Path(model_dir)
    tj = model_dir / "tokenizer.json"
    if not tj.is_file():
        raise InputError(f"{model_dir} has no tokenizer.json")
    m = AutoModel.from_pretrained(str(model_dir)).eval().float()

    module: Any = torch.nn.Module

    class Wrap(module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state

    from .tokenizer import HFTokenizer

    tok = HFTokenizer(tj, max_length=max_length)
    feeds = tok(_SAMPLE_CAPTIONS)
    args = tuple(torch.from_numpy(feeds[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))
    wrap = Wrap(m)
    with torch.no_grad():
        ref = wrap(*args).numpy()
    tmpdir = Path(out_dir).resolve().parent / f".{Path(out_dir).name}.onnx-tmp"
    tmpdir.mkdir(parents=True, exist_ok=True)
    try:
        b = torch.export.Dim("batch", min=1, max=4096)
        s = torch.export.Dim("seq", min=2, max=max_length)
        dyn = {k: {0: b, 1: s} for k in ("input_ids", "attention_mask", "token_type_ids")}
        _onnx_export(wrap, args, tmpdir / "model.onnx", ["input_ids", "attention_mask", "token_type_ids"],
                     ["last_hidden_state"], dyn, opset)
        if check_parity:
            import onnxruntime as ort

            sess = ort.InferenceSession(str(tmpdir / "model.onnx"), providers=["CPUExecutionProvider"])
            got = sess.run(["last_hidden_state"], feeds)[0]
            mask = feeds["attention_mask"][..., None]
            pa = (got * mask).sum(1) / mask.sum(1)
            pb = (ref * mask).sum(1) / mask.sum(1)
            c = float(_cos(pa, pb).min())
            if c < _PARITY_MIN_COS["fp32"]:
                raise ModelError(f"ONNX/torch parity failed for {model_dir}: min cosine {c:.6f}")
        return make_text_bundle(tmpdir / "model.onnx", tj, out_dir, pooling=pooling, normalize=normalize,
                                output="last_hidden_state", max_length=max_length,
                                source={"library": "transformers", "model": str(model_dir.resolve())},
                                overwrite=overwrite)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
