"""Export to ONNX and run with ClipEncoder: parity with the torch model, precisions, bundle checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _torch_env import importorskip as tv_importorskip

from embed_fixtures import coco_photos, real_captions, tiny_bundle, tiny_open_clip_model

from fastcurate.models import ClipEncoder, TextEncoder, load_bundle
from fastcurate.errors import FormatError, InputError, ModelError

torch = pytest.importorskip("torch")
open_clip = tv_importorskip("open_clip")
pytest.importorskip("onnxscript")


def _cos(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def test_manifest_and_files():
    b = load_bundle(tiny_bundle(), verify=True)
    assert b.kind == "clip" and b.embed_dim == 32
    assert set(b.variants) == {"fp32", "fp16", "int8"}
    assert b.manifest["opset"] >= 17 and b.manifest["text"]["variable_length"] is True
    assert b.preprocess.size == (64, 64)
    assert b.manifest["parity"]["fp32"]["image_min_cos"] >= 0.9999
    import onnx

    m = onnx.load(str(b.model_path("image", "fp32")))
    dim0 = m.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param  # dynamic batch


def test_images_match_open_clip_end_to_end():
    """Our decode + preprocess + ONNX equals open_clip's preprocess + torch model on real photos."""
    model = tiny_open_clip_model()
    pre = open_clip.image_transform(model.visual.image_size, is_train=False)
    from PIL import Image, ImageOps

    photos = coco_photos(24)
    with torch.no_grad():
        x = torch.stack([pre(ImageOps.exif_transpose(Image.open(p))) for p in photos])
        ref = torch.nn.functional.normalize(model.encode_image(x), dim=-1).numpy()
    with ClipEncoder(tiny_bundle(), device="cpu", batch_size=5, decode_threads=2) as enc:
        assert enc.providers == ["CPUExecutionProvider"]
        got = enc.encode_images([str(p) for p in photos])
        assert got.shape == (24, 32) and got.dtype == np.float32
        assert _cos(got, ref).min() >= 0.9999
        assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
        # bytes, PIL images and a pyarrow binary column give the same result
        import pyarrow as pa

        raw = [p.read_bytes() for p in photos[:6]]
        assert np.allclose(enc.encode_images(raw), got[:6], atol=1e-6)
        assert np.allclose(enc.encode_images(pa.array(raw, pa.binary())), got[:6], atol=1e-6)
        assert np.allclose(enc.encode_images([Image.open(p) for p in photos[:6]]), got[:6], atol=1e-6)


def test_texts_match_open_clip_variable_length():
    model = tiny_open_clip_model()
    tok = open_clip.get_tokenizer("ViT-B-32")
    # "!%" tokenises to [SOT, 0, 260, EOT]: id 0 is a real token, so a row's length is not its
    # count of non-zero ids (cutting there would drop the end token the tower pools at).
    texts = real_captions()[::97][:300] + ["", "a " * 200, "!%", "wow !% ok", "!%" * 3]
    with torch.no_grad():
        ref = torch.nn.functional.normalize(model.encode_text(tok(texts)), dim=-1).numpy()
    enc = ClipEncoder(tiny_bundle(), device="cpu")
    got = enc.encode_texts(texts, batch_size=64)
    assert _cos(got, ref).min() >= 0.9999
    alone = enc.encode_texts(["!%", "!%" * 3], batch_size=1)  # each batch cut to its own row
    assert _cos(alone, ref[-3::2]).min() >= 0.9999
    # TextEncoder over a CLIP bundle is the text tower
    assert np.allclose(TextEncoder(tiny_bundle(), device="cpu").encode_texts(texts[:10]), got[:10], atol=1e-6)


@pytest.mark.parametrize("precision,min_cos", [("fp16", 0.999), ("int8", 0.99)])
def test_other_precisions_agree_with_fp32(precision, min_cos):
    photos = [str(p) for p in coco_photos(8)]
    texts = real_captions()[:64]
    e32 = ClipEncoder(tiny_bundle(), device="cpu", precision="fp32")
    eq = ClipEncoder(tiny_bundle(), device="cpu", precision=precision)
    assert eq.precision == precision
    assert _cos(eq.encode_images(photos), e32.encode_images(photos)).min() >= min_cos
    assert _cos(eq.encode_texts(texts), e32.encode_texts(texts)).min() >= min_cos


def test_bad_images_raise_or_nan():
    enc = ClipEncoder(tiny_bundle(), device="cpu", batch_size=2)
    good = str(coco_photos(1)[0])
    with pytest.raises(FormatError, match=r"image\[1\].*zero-byte"):
        enc.encode_images([good, b"", good])
    out = enc.encode_images([good, b"", b"junk", good], on_error="nan")
    assert np.isnan(out[1]).all() and np.isnan(out[2]).all()
    assert np.allclose(out[0], out[3])
    batches = list(enc.iter_image_batches([good, b"", good]))
    assert [r is None for b in batches for r in b.reasons] == [True, False, True]
    assert batches[0].reasons[1].startswith("empty")


def test_bundle_errors(tmp_path):
    with pytest.raises(ModelError, match="manifest.json"):
        ClipEncoder(tmp_path)
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle(), copy)
    with open(copy / "text.onnx", "ab") as f:
        f.write(b"x")
    with pytest.raises(ModelError, match="corrupted"):
        load_bundle(copy, verify=True)
    (copy / "image.fp16.onnx").unlink()
    with pytest.raises(ModelError, match="missing"):
        load_bundle(copy)
    with pytest.raises(ModelError, match="no 'int4' variant|int4"):
        ClipEncoder(tiny_bundle(), precision="int4")
    with pytest.raises(ModelError, match="device"):
        ClipEncoder(tiny_bundle(), device="tpu")


def test_export_input_errors(tmp_path):
    from fastcurate.models import export_clip

    with pytest.raises(InputError, match="open_clip model name"):
        export_clip("NoSuchModel-99", tmp_path / "x")
    with pytest.raises(InputError, match="not a file"):
        export_clip("ViT-B-32", tmp_path / "x", pretrained=str(tmp_path / "nope.pt"))
    with pytest.raises(InputError, match="opset"):
        export_clip(tiny_open_clip_model(), tmp_path / "x", opset=13)


def test_pretrained_checkpoint_path_loads(tmp_path):
    """The real ViT-B-32 architecture (random weights), saved as a local checkpoint and exported by
    name with pretrained=<path>: the bundle must reproduce that checkpoint, not a fresh random init."""
    from fastcurate.models import export_clip

    torch.manual_seed(1)
    m = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    ckpt = tmp_path / "ckpt.pt"
    torch.save(m.state_dict(), ckpt)
    out = export_clip("ViT-B-32", tmp_path / "b32", pretrained=str(ckpt), variants=[])
    b = load_bundle(out)
    assert b.embed_dim == 512 and b.preprocess.size == (224, 224)
    assert b.manifest["source"]["pretrained"] == str(ckpt)
    texts = ["a photo of a cat", "two dogs"]
    with torch.no_grad():
        ref = torch.nn.functional.normalize(m.encode_text(open_clip.get_tokenizer("ViT-B-32")(texts)), dim=-1).numpy()
    got = ClipEncoder(out, device="cpu").encode_texts(texts)
    assert _cos(got, ref).min() >= 0.9999


def test_hf_clip_model_export(tmp_path):
    transformers = pytest.importorskip("transformers")
    from fastcurate.models import export_clip

    cfg = transformers.CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, eos_token_id=49407,
                         bos_token_id=49406, pad_token_id=0),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    torch.manual_seed(0)
    m = transformers.CLIPModel(cfg).eval()
    out = export_clip(m, tmp_path / "hf", variants=[])
    b = load_bundle(out)
    assert b.embed_dim == 16 and b.manifest["source"]["library"] == "transformers"
    enc = ClipEncoder(out, device="cpu")
    texts = ["a cat", "a photo of two dogs on a red couch", ""]
    ids = torch.from_numpy(enc.tokenizer(texts))
    with torch.no_grad():
        ref = m.text_projection(m.text_model(input_ids=ids).pooler_output).numpy()
        px = torch.randn(2, 3, 32, 32)
        ref_i = m.visual_projection(m.vision_model(pixel_values=px).pooler_output).numpy()
    assert _cos(enc.encode_texts(texts), ref).min() >= 0.9999
    got_i = enc.image_session.run({"pixel_values": px.numpy()})
    assert _cos(got_i, ref_i).min() >= 0.9999


def test_runtime_never_imports_torch():
    photo = str(coco_photos(1)[0])
    code = (
        "import sys; import fastcurate.models as fe; "
        f"enc = fe.ClipEncoder({str(tiny_bundle())!r}, device='cpu'); "
        f"i = enc.encode_images([{photo!r}]); t = enc.encode_texts(['a cat']); fe.clip_score(i, t); "
        "bad = [m for m in ('torch', 'open_clip', 'torchvision', 'transformers') if m in sys.modules]; "
        "assert not bad, bad"
    )
    run_fresh(code)


def fe_path() -> str:
    import fastcurate

    return str(Path(list(fastcurate.__path__)[0]))


def run_fresh(code: str) -> str:
    """Run ``code`` in a fresh interpreter that imports this test's fastcurate; its stdout."""
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(fe_path()).parent)] + env.get("PYTHONPATH", "").split(os.pathsep))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_hf_clip_directory_export_and_vocab_check(tmp_path):
    transformers = pytest.importorskip("transformers")
    from fastcurate.models import export_clip

    cfg = transformers.CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, eos_token_id=49407,
                         bos_token_id=49406, pad_token_id=0),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    torch.manual_seed(0)
    d = tmp_path / "hfdir"
    transformers.CLIPModel(cfg).save_pretrained(d)
    (d / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}))
    out = export_clip(str(d), tmp_path / "b", variants=[])
    b = load_bundle(out)
    assert b.manifest["source"]["library"] == "transformers" and b.preprocess.mean == (0.5, 0.5, 0.5)
    # a vocab.json that disagrees with the BPE vocabulary is refused, not silently mis-tokenised
    (d / "vocab.json").write_text(json.dumps({"a": 5, "<|endoftext|>": 49407}))
    with pytest.raises(ModelError, match="token ids differ"):
        export_clip(str(d), tmp_path / "b2", variants=[])
    assert not (tmp_path / "b2").exists()  # atomic: no half-written bundle


def test_torchvision_and_open_clip_import_beside_this_torch():
    """fastcurate.models.torch_compat in a fresh process (torchvision not yet imported): open_clip
    imports; torchvision's Python parts work; where the compiled ops could not load (a CPU torch
    beside PyPI's CUDA torchvision, as in the test setup), calling one raises torchvision's error."""
    code = (
        "import torch; from fastcurate.models.torch_compat import import_open_clip, _SCHEMA_LIBS; "
        "oc = import_open_clip(); import torchvision, torchvision.transforms as T; from PIL import Image; "
        "assert T.CenterCrop(4)(Image.new('RGB', (8, 8))).size == (4, 4); "
        "assert 'ViT-B-32' in oc.list_models(); "
        "from torchvision.models import ResNet50_Weights; assert len(ResNet50_Weights.IMAGENET1K_V2.meta['categories']) == 1000\n"
        "try:\n    torchvision.ops.nms(torch.rand(3, 4), torch.rand(3), 0.5); print('ops', len(_SCHEMA_LIBS))\n"
        "except RuntimeError as e:\n    assert _SCHEMA_LIBS, e; print('no-ops')\n"
    )
    out = run_fresh(code)
    # real ops never come with declared schemas; missing ops always do
    assert out.strip() in ("ops 0", "no-ops"), out
