"""`fastcurate dedup` as a stage: exact copies and re-encoded copies dropped, each naming the kept
twin; the keep rule (highest resolution, then the lowest uid hash); duplicates only within groups
with `within`; captions as keys; the real photos (one clothing photo filed under two labels)."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fastcurate.cli import main
from fastcurate.kernels.balance import hash_keys
from fastcurate.runner.local import run_stage
from fastcurate.stages.dedup.stage import DedupStage

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CLOTHING = SHARED / "images" / "clothing_small"


def _jpeg(path: Path, q: int, scale: float = 1.0) -> bytes:
    from PIL import Image

    img = Image.open(path).convert("RGB")
    if scale != 1.0:
        img = img.resize((max(1, int(img.width * scale)), max(1, int(img.height * scale))), Image.BICUBIC)
    b = io.BytesIO()
    img.save(b, "JPEG", quality=q)
    return b.getvalue()


def _read(out: Path, sub: str = "") -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted((out / sub).glob("part-*.parquet"))])


@pytest.fixture(scope="module")
def photos():
    files = sorted((SHARED / "images" / "coco_mini_val").glob("*.jpg"))[:12]
    if len(files) < 12:
        pytest.skip("needs ../shared/data")
    return files


def test_exact_and_near_copies_go_and_name_their_twin(tmp_path, photos):
    rows = []
    for k, f in enumerate(photos[:8]):
        raw = f.read_bytes()
        rows.append((f"orig{k}", raw, f"photo {k}"))
    rows.append(("copy0", photos[0].read_bytes(), "another caption"))            # byte-identical
    rows.append(("re1", _jpeg(photos[1], 40), "re-encoded"))                       # same image, other bytes
    rows.append(("small2", _jpeg(photos[2], 85, 0.5), "downscaled"))               # lower resolution
    rows.append(("other", photos[9].read_bytes(), "a different photo"))
    t = pa.table({"uid": [r[0] for r in rows], "jpg": pa.array([r[1] for r in rows], pa.binary()),
                  "caption": [r[2] for r in rows]})
    pq.write_table(t.slice(0, 6), tmp_path / "a.parquet")
    pq.write_table(t.slice(6), tmp_path / "b.parquet")
    s = run_stage(DedupStage(), [tmp_path], tmp_path / "out", progress=False)
    kept = set(_read(tmp_path / "out").column("uid").to_pylist())
    d = _read(tmp_path / "out", "drops")
    why = {u: (r, det) for u, r, det in zip(d.column("uid").to_pylist(), d.column("reason").to_pylist(),
                                           d.column("detail").to_pylist())}
    assert "other" in kept and {f"orig{k}" for k in range(8)} - {"orig0", "orig1"} <= kept
    # the byte copy: exact; its twin has the same bytes (equal resolution: the lower uid hash stays)
    pair = ["orig0", "copy0"]
    loser = next(u for u in pair if u in why)
    assert why[loser][0] == "duplicate" and why[loser][1] == next(u for u in pair if u != loser)
    lower = min(pair, key=lambda u: int(hash_keys([u])[0]))
    assert loser != lower
    # the re-encoded copy: near; detail names the twin and the distance
    pair = ["orig1", "re1"]
    loser = next(u for u in pair if u in why)
    assert why[loser][0] == "near_duplicate" and why[loser][1].startswith(next(u for u in pair if u != loser))
    assert "phash_distance=" in why[loser][1]
    # the downscaled copy loses to the full-size photo (highest resolution is kept)
    assert why["small2"][0] == "near_duplicate" and why["small2"][1].startswith("orig2")
    assert s["rows_in"] == len(rows) == s["rows_kept"] + sum(s["rows_dropped"].values())
    assert s["dedup"]["exact_groups"] == 1 and s["dedup"]["near_groups"] >= 2


def test_within_groups_and_caption_keys(tmp_path, photos):
    raw = photos[0].read_bytes()
    t = pa.table({"uid": ["a1", "a2", "b1"], "jpg": pa.array([raw, raw, raw], pa.binary()),
                  "caption": ["same text here", "same text here", "other text"], "group": ["g1", "g1", "g2"]})
    pq.write_table(t, tmp_path / "p.parquet")
    s = run_stage(DedupStage(within="group"), [tmp_path / "p.parquet"], tmp_path / "w", progress=False)
    assert s["rows_dropped"]["duplicate"] == 1  # a1/a2 only: b1 is in another group
    assert "b1" in _read(tmp_path / "w").column("uid").to_pylist()
    s = run_stage(DedupStage(exact=("caption",), near=False), [tmp_path / "p.parquet"], tmp_path / "c",
                  progress=False)
    assert s["rows_dropped"]["duplicate"] == 1 and s["rows_kept"] == 2


@pytest.mark.skipif(not (CLOTHING / "labels.csv").exists(), reason="needs ../shared/data")
def test_real_clothing_photos_cli(tmp_path, capsys):
    """1,000 real photos, many on the same backdrop: the one photo filed under two labels is a
    duplicate; different garments on the same backdrop are not."""
    paths = sorted(CLOTHING.rglob("*.jpg"))
    t = pa.table({"uid": [str(p.relative_to(CLOTHING)) for p in paths],
                  "image_path": [str(p) for p in paths]})
    pq.write_table(t, tmp_path / "clothing.parquet")
    out = tmp_path / "out"
    assert main(["dedup", str(tmp_path / "clothing.parquet"), "--out", str(out), "--no-progress"]) == 0
    d = _read(out, "drops")
    dropped = d.column("uid").to_pylist()
    # the same picture filed as shorts and as skirt (two files, different bytes)
    pair = {u for u in dropped + d.column("detail").to_pylist() if u and u.split("/")[-1][:8] in ("6075b4a5", "637a56e4")}
    assert any(u.startswith("shorts/6075b4a5") for u in pair) and any(u.split(" ")[0].startswith("skirt/637a56e4")
                                                                        for u in pair)
    # few drops: the backdrop trap must not make distinct garments duplicates (<= 2 % of 1,000)
    assert len(dropped) <= 20, d.to_pylist()
