"""`fastcurate semdedup` as a stage: its decisions equal a naive per-cluster SemDeDup over the
stage's own clustering, the kept row of identical twins does not depend on the shard layout, every
drop names an earlier twin above 1 - eps, the per-eps share table is right, and errors say what to
do."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contract_cases import near_duplicate_embeddings, write_layout
from fastcurate.cli import main
from fastcurate.errors import InputError
from fastcurate.kernels.balance import hash_keys
from fastcurate.runner.local import run_stage
from fastcurate.stages.semdedup.stage import SemDedupStage

pytest.importorskip("faiss")


def _kept(out: Path) -> List[str]:
    t = pa.concat_tables([pq.read_table(p, columns=["uid"]) for p in sorted(out.glob("part-*.parquet"))])
    return sorted(t.column("uid").to_pylist())


def _drops(out: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted((out / "drops").glob("*.parquet"))])


def _naive(table: pa.Table, cent: Optional[np.ndarray], eps: float) -> Dict[str, str]:
    """The paper's loop, written plainly: rows of each cluster from the least to the most similar to
    its centroid (ties by uid hash), a row dropped when its cosine to any earlier row exceeds 1 - eps.
    Returns {dropped uid: uid of its most similar earlier row}."""
    col = table.column("image_emb").combine_chunks()
    valid = np.asarray(col.is_valid())
    d = col.type.list_size
    x = col.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(table), d)
    n = np.linalg.norm(x, axis=1)
    ok = valid & (n > 0)
    uids = np.asarray(table.column("uid").to_pylist(), dtype=object)[ok]
    h = hash_keys(pa.array(uids.tolist()))
    # the stage stores unit rows in float16
    y = (x[ok] / n[ok, None]).astype(np.float16).astype(np.float32)
    yn = y / np.linalg.norm(y, axis=1, keepdims=True)
    if cent is None:  # the table's own clustering: fastcurate cluster's columns
        lab = np.asarray(table.column("cluster").to_numpy(zero_copy_only=False))[ok]
        cos = np.asarray(table.column("cos_to_centroid").to_numpy(zero_copy_only=False))[ok]
    else:
        sims = yn @ cent.T
        lab, cos = sims.argmax(axis=1), sims.max(axis=1)
    out: Dict[str, str] = {}
    for c in range(int(lab.max()) + 1 if len(lab) else 0):
        idx = np.flatnonzero(lab == c)
        idx = idx[np.lexsort((h[idx], cos[idx]))]
        for j in range(1, len(idx)):
            s = yn[idx[:j]] @ yn[idx[j]]
            if s.max() > 1 - eps:
                out[uids[idx[j]]] = uids[idx[int(s.argmax())]]
    return out


def test_equals_the_naive_loop_and_does_not_depend_on_the_layout(tmp_path):
    table = near_duplicate_embeddings(600, d=16, seed=3)
    eps = 0.02
    kept = None
    for n_files, seed in ((1, 0), (4, 9)):
        src = write_layout(table, tmp_path / f"in{n_files}", n_files, seed=seed)
        out = tmp_path / f"out{n_files}"
        s = run_stage(SemDedupStage(eps=eps, k=4, eps_report=(0.001, 0.1)), [src], out, progress=False)
        assert s["rows_in"] == s["rows_kept"] + sum(s["rows_dropped"].values())
        assert s["rows_dropped"]["no_embedding"] == 1 and s["rows_dropped"]["bad_embedding"] == 1
        ref = _naive(table, np.load(out / "centroids.npy"), eps)
        drops = _drops(out).to_pydict()
        sem = {u: d for u, r, d in zip(drops["uid"], drops["reason"], drops["detail"]) if r == "semantic_duplicate"}
        assert set(sem) == set(ref) and len(ref) > 100
        # the detail names the most similar earlier row, and the cosine
        assert all(sem[u].split(" cos=")[0] == ref[u] and float(sem[u].split(" cos=")[1]) > 1 - eps for u in sem)
        # per-eps share table: each eps's removed share equals the naive loop's
        n_ok = s["semdedup"]["rows_clustered"]
        for e in (0.001, 0.02, 0.1):
            assert abs(s["semdedup"]["removed_share_by_eps"][f"{e:g}"] - len(_naive(table, np.load(out / "centroids.npy"), e)) / n_ok) < 1e-9
        if kept is None:
            kept = _kept(out)
        else:
            assert _kept(out) == kept
    # an exact copy and its source never both stay (both may go: with compare_to="all" the first of
    # them can itself be a duplicate of a third row)
    uid = table.column("uid").to_pylist()
    cap = table.column("caption").to_pylist()
    exact = [(u, c[len("copy of "):]) for u, c in zip(uid, cap) if c.startswith("copy of ")][: len([c for c in cap if c.startswith("copy of ")]) // 2]
    ks = set(kept)
    assert exact and not any(a in ks and b in ks for a, b in exact)


def test_keep_hard_keeps_the_least_typical_twin_and_easy_the_most(tmp_path):
    table = near_duplicate_embeddings(300, d=16, seed=5)
    src = write_layout(table, tmp_path / "in", 2, seed=1)
    col = table.column("image_emb").combine_chunks()
    x = col.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(table), -1)
    uid = table.column("uid").to_pylist()
    cap = table.column("caption").to_pylist()
    # the perturbed copies (the second half of the copies) and their sources
    copies = [(u, c[len("copy of "):]) for u, c in zip(uid, cap) if c.startswith("copy of ")]
    pairs = copies[len(copies) // 2:]
    row = {u: i for i, u in enumerate(uid)}
    checked = 0
    for keep, pick in (("hard", np.argmin), ("easy", np.argmax)):
        out = tmp_path / keep
        run_stage(SemDedupStage(eps=0.02, k=3, keep=keep), [src], out, progress=False)
        cent = np.load(out / "centroids.npy")
        ks = set(_kept(out))
        for a, b in pairs:
            if (a in ks) == (b in ks):
                continue  # both gone (a chain through a third row)
            y = x[[row[a], row[b]]]
            y /= np.linalg.norm(y, axis=1, keepdims=True)
            c = y @ cent.T
            if c[0].argmax() != c[1].argmax():
                continue  # the twins fell in different clusters
            cos = c.max(axis=1)
            assert (a, b)[int(pick(cos))] in ks, (keep, a, b, cos)
            checked += 1
    assert checked > 20


def test_errors_name_the_fix(tmp_path):
    table = near_duplicate_embeddings(60, d=8, seed=0)
    src = write_layout(table, tmp_path / "in", 1, seed=0)
    with pytest.raises(InputError, match="lower --k"):
        run_stage(SemDedupStage(k=500), [src], tmp_path / "out", progress=False)
    with pytest.raises(InputError, match="eps must be in"):
        SemDedupStage(eps=1.5)
    with pytest.raises(InputError, match="keep must be"):
        SemDedupStage(keep="middle")


def test_cli(tmp_path, capsys):
    table = near_duplicate_embeddings(200, d=16, seed=1)
    src = write_layout(table, tmp_path / "in", 2, seed=0)
    rc = main(["semdedup", str(src), "--out", str(tmp_path / "out"), "--k", "3", "--eps", "0.02",
               "--eps-report", "0.001,0.1", "--no-progress"])
    assert rc == 0
    o = capsys.readouterr()
    assert "semantic duplicates among" in o.out + o.err and "eps 0.1:" in o.out + o.err
    assert (tmp_path / "out" / "centroids.npy").is_file()
    with pytest.raises(SystemExit) as e:  # usage errors exit 2
        main(["semdedup", str(src), "--out", str(tmp_path / "out2"), "--k", "0"])
    assert e.value.code == 2
    assert main(["semdedup", str(src), "--out", str(tmp_path / "out3"), "--k", "5000", "--no-progress"]) == 1


def test_clusters_from_input_reuse_the_cluster_steps_assignment(tmp_path):
    """--clusters input: the decisions equal the naive loop over `fastcurate cluster`'s own labels
    and cosines (no second k-means), with or without its centroids.npy (tile pruning is exact)."""
    import shutil

    from fastcurate.stages.cluster.stage import ClusterStage

    table = near_duplicate_embeddings(600, d=16, seed=3)
    src = write_layout(table, tmp_path / "in", 3, seed=0)
    clus = tmp_path / "clusters"
    run_stage(ClusterStage(k=5, seed=1), [src], clus, progress=False)
    eps = 0.02
    s = run_stage(SemDedupStage(eps=eps, clusters="input"), [clus], tmp_path / "sd", progress=False)
    assert s["semdedup"]["clusters"] == "input" and s["semdedup"]["k"] == 5
    assert s["rows_in"] == s["rows_kept"] + sum(s["rows_dropped"].values())
    assert np.array_equal(np.load(tmp_path / "sd" / "centroids.npy"), np.load(clus / "centroids.npy"))
    t = pa.concat_tables([pq.read_table(p) for p in sorted(clus.glob("part-*.parquet"))])
    ref = _naive(t, None, eps)
    drops = _drops(tmp_path / "sd").to_pydict()
    sem = {u: d.split(" cos=")[0] for u, r, d in zip(drops["uid"], drops["reason"], drops["detail"])
           if r == "semantic_duplicate"}
    assert sem == ref and len(ref) > 100
    # without the centroids file: every pair compared, the same decisions, no centroids written
    bare = tmp_path / "bare"
    bare.mkdir()
    for p in clus.glob("part-*.parquet"):
        shutil.copy(p, bare / p.name)
    s2 = run_stage(SemDedupStage(eps=eps, clusters="input"), [bare], tmp_path / "sd2", progress=False)
    assert _kept(tmp_path / "sd2") == _kept(tmp_path / "sd") and s2["rows_dropped"] == s["rows_dropped"]
    assert not (tmp_path / "sd2" / "centroids.npy").exists()
    # rows that never went through `fastcurate cluster`: the error names the fix
    with pytest.raises(InputError, match="fastcurate cluster"):
        run_stage(SemDedupStage(clusters="input"), [src], tmp_path / "sd3", progress=False)
    with pytest.raises(InputError, match="clusters must be"):
        SemDedupStage(clusters="faiss")
    # no usable embedding at all: an error, not an empty clustering
    t0 = pq.read_table(sorted(clus.glob("part-*.parquet"))[0]).slice(0, 5)
    t0 = t0.set_column(t0.schema.get_field_index("image_emb"), "image_emb", pa.nulls(5, t0.schema.field("image_emb").type))
    (tmp_path / "empty").mkdir()
    pq.write_table(t0, tmp_path / "empty" / "part-00000.parquet")
    with pytest.raises(InputError, match="no row of the input has a usable image embedding"):
        run_stage(SemDedupStage(clusters="input"), [tmp_path / "empty"], tmp_path / "sd5", progress=False)
    # a clustering of another space is refused, naming both
    with pytest.raises(InputError, match="'image' space, this run uses 'text'"):
        run_stage(SemDedupStage(clusters="input", space="text"), [clus], tmp_path / "sd4", progress=False)
