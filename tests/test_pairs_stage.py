"""The pairs stage: pairs.parquet and the row decisions against a plain re-computation (the numpy
reference kernel, the band, the balancing rule), layout independence of the pairs file, the
calibrated band, errors, and a real run: LAION URL groups -> MiniLM text embeddings -> labels ->
pairs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contract_cases import pairs_table, write_layout
from fastcurate.errors import InputError
from fastcurate.kernels.balance import hash_keys
from fastcurate.kernels.pairs import group_rows, label_csr, mine_pairs_reference
from fastcurate.runner.local import run_stage
from fastcurate.stages.pairs.stage import PairsStage


def _parts(out: Path, sub: str = "") -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted((out / sub).glob("part-*.parquet"))])


def _reference(t: pa.Table, cap: int, seed: int, lo: float, hi: float, ratio: float, overlap: float):
    """The pairs the documented rules give, computed without the stage."""
    rows = [r for r in t.to_pylist() if r["uid"] is not None]
    use = [r for r in rows if r["group"] is not None and r["image_emb"] is not None]
    gh = hash_keys([r["group"] for r in use])
    uh = hash_keys([r["uid"] for r in use])
    order, starts = group_rows(gh, uh)
    use = [use[i] for i in order]
    img = np.array([r["image_emb"] for r in use], np.float32)
    txt = np.array([r["text_emb"] for r in use], np.float32)
    lab = label_csr([[d["label"] for d in r["labels"]] for r in use])
    P = mine_pairs_reference(starts, uh[order], seed=seed, max_pairs_per_group=cap, image=img, text=txt, cross=True,
                             labels=lab)
    rel = P.image_sim
    band = (rel >= np.float32(lo)) & (rel <= np.float32(hi))
    ov = P.label_overlap
    typ = np.where(np.isnan(ov), 2, np.where(ov >= np.float32(overlap), 0, 1))
    kept = band.copy()
    s, d = np.flatnonzero(kept & (typ == 0)), np.flatnonzero(kept & (typ == 1))
    if len(s) and len(d):
        if len(s) > ratio * len(d):
            cut, k = s, int(np.floor(ratio * len(d)))
        elif len(d) > ratio * len(s):
            cut, k = d, int(np.floor(ratio * len(s)))
        else:
            cut, k = s[:0], 0
        o = np.lexsort((cut, P.priority[cut]))
        kept[cut[o[k:]]] = False
    pairs = [(use[P.query[i]]["uid"], use[P.target[i]]["uid"], ["same_entity", "different_entity", "unlabeled"][typ[i]],
              float(rel[i])) for i in np.flatnonzero(kept)]
    # the reason of every row
    why = {}
    for r in rows:
        why[r["uid"]] = "no_group" if r["group"] is None else "no_embedding" if r["image_emb"] is None else None
    size = Counter(r["group"] for r in use)
    cand, inb, kp = Counter(), Counter(), Counter()
    for i in range(len(P)):
        for u in (use[P.query[i]]["uid"], use[P.target[i]]["uid"]):
            cand[u] += 1
            inb[u] += int(band[i])
            kp[u] += int(kept[i])
    for r in use:
        u = r["uid"]
        why[u] = ("singleton" if size[r["group"]] < 2 else "capped" if not cand[u] else "no_pair_in_band" if not inb[u]
                  else "balanced_out" if not kp[u] else "kept")
    return pairs, why, kp


def test_pairs_and_row_decisions_equal_the_rules(tmp_path):
    t = pairs_table(500, seed=2)
    src = write_layout(t, tmp_path / "in", 3, seed=1)
    st = PairsStage(max_pairs_per_group=5, seed=11, min_relevance=0.2, max_relevance=0.97, max_type_ratio=1.5)
    stats = run_stage(st, [src], tmp_path / "o", batch_size=41, progress=False)
    pairs, why, kp = _reference(t, 5, 11, 0.2, 0.97, 1.5, 0.5)
    got = pq.read_table(tmp_path / "o" / "pairs.parquet")
    assert list(zip(got.column("query_uid").to_pylist(), got.column("target_uid").to_pylist(),
                    got.column("pair_type").to_pylist())) == [p[:3] for p in pairs]
    assert np.allclose(got.column("relevance").to_numpy(), [p[3] for p in pairs], atol=1e-5)
    kept = _parts(tmp_path / "o")
    drops = _parts(tmp_path / "o", "drops")
    decided = dict(zip(drops.column("uid").to_pylist(), drops.column("reason").to_pylist()))
    decided.pop(None)
    decided.update({u: "kept" for u in kept.column("uid").to_pylist()})
    assert decided == why
    assert dict(zip(kept.column("uid").to_pylist(), kept.column("pair_count").to_pylist())) == \
        {u: kp[u] for u, w in why.items() if w == "kept"}
    s = stats["pairs"]
    p = s["pairs"]
    assert p["kept"] == len(pairs) == got.num_rows
    assert p["candidates"] == p["unscored"] + p["near_duplicates"] + p["unrelated"] + p["in_band"]
    assert p["possible"] == p["candidates"] + p["capped"] and p["in_band"] == p["kept"] + p["balanced_out"]
    assert s["cross_scores"] and s["distribution"]["after_balancing"]["types"]["same_entity"] > 0
    before, after = s["distribution"]["before_balancing"]["types"], s["distribution"]["after_balancing"]["types"]
    big, small = max(after["same_entity"], after["different_entity"]), min(after["same_entity"], after["different_entity"])
    assert big <= 1.5 * small and sum(before.values()) == p["in_band"]
    # the scores in the file are the cosines of the input vectors; labels name their side
    vec = {r["uid"]: r for r in t.to_pylist() if r["uid"] is not None}
    for r in got.to_pylist()[:40]:
        a, b = (np.array(vec[r[k]]["image_emb"], np.float64) for k in ("query_uid", "target_uid"))
        assert r["image_sim"] == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), abs=1e-4)
        x, y = (np.array(vec[r["query_uid"]]["image_emb"], np.float64), np.array(vec[r["target_uid"]]["text_emb"], np.float64))
        assert r["query_image_target_text"] == pytest.approx(x @ y / np.linalg.norm(x) / np.linalg.norm(y), abs=1e-4)
        ql = {d["label"] for d in vec[r["query_uid"]]["labels"]}
        tl = {d["label"] for d in vec[r["target_uid"]]["labels"]}
        assert {(d["label"], d["side"]) for d in r["labels"]} == ({(x, "both") for x in ql & tl} | {(x, "query") for x in ql - tl}
                                                                  | {(x, "target") for x in tl - ql})


def test_pairs_file_does_not_depend_on_layout_or_threads(tmp_path):
    t = pairs_table(300, seed=4)
    a = write_layout(t, tmp_path / "a", 2, seed=0)
    b = write_layout(t, tmp_path / "b", 5, seed=3)
    run_stage(PairsStage(calibration_pairs=300), [a], tmp_path / "oa", threads=1, progress=False)
    run_stage(PairsStage(calibration_pairs=300), [b], tmp_path / "ob", threads=2, batch_size=17, progress=False)
    x = pq.read_table(tmp_path / "oa" / "pairs.parquet")
    y = pq.read_table(tmp_path / "ob" / "pairs.parquet")
    assert x.num_rows > 0 and x.equals(y)


def test_calibrated_band_is_a_quantile_of_cross_group_pairs(tmp_path):
    t = pairs_table(400, seed=6)
    pq.write_table(t, tmp_path / "a.parquet")
    stats = run_stage(PairsStage(unrelated_quantile=0.9, calibration_pairs=5000), [tmp_path / "a.parquet"],
                      tmp_path / "o", progress=False)
    lo = stats["pairs"]["band"]["min"]
    rows = [r for r in t.to_pylist() if r["uid"] and r["group"] and r["image_emb"] is not None]
    e = np.array([r["image_emb"] for r in rows], np.float64)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    g = np.array([r["group"] for r in rows])
    s = e @ e.T
    cross = s[np.triu_indices(len(e), 1)][(g[:, None] != g[None, :])[np.triu_indices(len(e), 1)]]
    assert np.quantile(cross, 0.85) < lo < np.quantile(cross, 0.95)
    assert "quantile 0.9" in stats["pairs"]["band"]["min_from"]


def test_errors_name_the_fix(tmp_path):
    t = pairs_table(60)
    pq.write_table(t.drop_columns(["group"]), tmp_path / "a.parquet")
    with pytest.raises(InputError, match="run `fastcurate group` first"):
        run_stage(PairsStage(), [tmp_path / "a.parquet"], tmp_path / "o1", progress=False)
    pq.write_table(t.drop_columns(["image_emb"]), tmp_path / "b.parquet")
    with pytest.raises(InputError, match="needs the image_emb column"):
        run_stage(PairsStage(relevance="image"), [tmp_path / "b.parquet"], tmp_path / "o2", progress=False)
    with pytest.raises(InputError, match="band is empty"):
        PairsStage(min_relevance=0.9, max_relevance=0.5)
    with pytest.raises(InputError, match="max_type_ratio"):
        PairsStage(max_type_ratio=0.5)


def test_a_uid_repeated_in_a_group_is_kept_once_by_content(tmp_path):
    """Two rows with one uid in one group (web pools repeat image URLs, the default uid): one is
    kept, the one whose vector bytes hash lowest, whatever the row order and layout; the same uid
    in another group is another row of another page and stays."""
    d = 8
    rng = np.random.default_rng(5)
    v = rng.normal(size=(7, d)).astype(np.float16)
    uids = ["u0", "u1", "u2", "u1", "u1", "u3", "u4"]
    groups = ["g1", "g1", "g1", "g1", "g2", "g2", "g2"]

    def table(order):
        flat = pa.array(v[order].reshape(-1), pa.float16())
        return pa.table({"uid": [uids[i] for i in order], "group": [groups[i] for i in order],
                         "image_emb": pa.FixedSizeListArray.from_arrays(flat, d)})

    st = dict(max_pairs_per_group=0, min_relevance=-1.0, max_relevance=1.0, balance=False)
    pq.write_table(table(list(range(7))), tmp_path / "a.parquet")
    rev = [6, 5, 4, 3, 2, 1, 0]
    pq.write_table(table(rev[:3]), tmp_path / "b1.parquet")
    pq.write_table(table(rev[3:]), tmp_path / "b2.parquet")
    sa = run_stage(PairsStage(**st), [tmp_path / "a.parquet"], tmp_path / "oa", progress=False)
    run_stage(PairsStage(**st), [tmp_path / "b1.parquet", tmp_path / "b2.parquet"], tmp_path / "ob", progress=False)
    x = pq.read_table(tmp_path / "oa" / "pairs.parquet")
    assert x.equals(pq.read_table(tmp_path / "ob" / "pairs.parquet"))
    assert {k: v for k, v in sa["rows_dropped"].items() if v} == {"duplicate_uid": 1}
    assert sa["pairs"]["duplicate_uids"] == 1
    assert x.num_rows == 3 + 3  # g1: u0, u1, u2; g2: u1, u3, u4
    # the kept u1 of g1 is the one whose vector bytes hash lowest
    h = hash_keys(pa.array([v[1].tobytes(), v[3].tobytes()], pa.binary()))
    keep = 1 if h[0] <= h[1] else 3
    r = [p for p in x.to_pylist() if {p["query_uid"], p["target_uid"]} == {"u0", "u1"}][0]
    a, b = v[0].astype(np.float64), v[keep].astype(np.float64)
    assert r["image_sim"] == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), abs=1e-3)


@pytest.mark.slow
def test_real_laion_groups_to_pairs(tmp_path):
    """group (URL directories) -> embed (MiniLM, text) -> annotate -> pairs on the 10k LAION rows."""
    from pairs_fixtures import LAION, minilm_text_bundle

    if not LAION.is_file():
        pytest.skip("../shared/data is absent")
    from fastcurate.stages.annotate.stage import AnnotateStage
    from fastcurate.stages.embed.stage import EmbedStage
    from fastcurate.stages.group.stage import GroupStage

    run_stage(GroupStage(group_by="url-dir", dedup=["caption"], near_duplicates=False, max_group_size=20), [LAION],
              tmp_path / "g", progress=False)
    run_stage(EmbedStage(minilm_text_bundle(), text_only=True, device="cpu"), [tmp_path / "g"], tmp_path / "e",
              progress=False)
    run_stage(AnnotateStage(), [tmp_path / "e"], tmp_path / "a", progress=False)
    stats = run_stage(PairsStage(), [tmp_path / "a"], tmp_path / "p", progress=False)
    s = stats["pairs"]
    assert s["relevance"] == "text" and not s["cross_scores"] and s["labels"]
    pairs = pq.read_table(tmp_path / "p" / "pairs.parquet")
    assert pairs.num_rows == s["pairs"]["kept"] > 0
    rel = pairs.column("relevance").to_numpy()
    assert (rel >= s["band"]["min"] - 1e-6).all() and (rel <= s["band"]["max"] + 1e-6).all()
    kept = _parts(tmp_path / "p")
    in_pairs = Counter(pairs.column("query_uid").to_pylist() + pairs.column("target_uid").to_pylist())
    assert dict(zip(kept.column("uid").to_pylist(), kept.column("pair_count").to_pylist())) == dict(in_pairs)
    assert stats["rows_in"] == stats["rows_kept"] + sum(stats["rows_dropped"].values())
