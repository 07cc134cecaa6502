"""`fastcurate cluster` as a stage: clusters recovered, per-row columns consistent with the
centroids, clusters.parquet (the judge's input) holding each cluster's closest/furthest samples in
order with their captions, the silhouette equal to sklearn's, the t-SNE outputs, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _torch_env import importorskip as tv_importorskip

from contract_cases import embedding_table, write_layout
from fastcurate.cli import main
from fastcurate.errors import InputError
from fastcurate.runner.local import run_stage
from fastcurate.stages.cluster.stage import ClusterStage

pytest.importorskip("faiss")


def _read(out: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted(out.glob("part-*.parquet"))])


def _emb(t: pa.Table) -> np.ndarray:
    col = t.column("image_emb").combine_chunks()
    return col.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(t), -1)


def test_clusters_rows_and_the_judges_table(tmp_path):
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    table = embedding_table(1200, d=24, k=6, seed=2)
    src = write_layout(table, tmp_path / "in", 3, seed=0)
    s = run_stage(ClusterStage(k=6, samples=4, tsne_rows=300), [src], tmp_path / "out", progress=False)
    assert s["rows_dropped"]["no_embedding"] == 1 and s["rows_dropped"]["bad_embedding"] == 1
    out = _read(tmp_path / "out")
    truth = {u: int(c.split()[1]) for u, c in zip(table.column("uid").to_pylist(), table.column("caption").to_pylist())}
    lab = out.column("cluster").to_numpy()
    assert adjusted_rand_score([truth[u] for u in out.column("uid").to_pylist()], lab) > 0.95
    # each row's cosine is to its own (nearest) centroid
    cent = np.load(tmp_path / "out" / "centroids.npy")
    x = _emb(out)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ cent.T
    assert (sims.argmax(axis=1) == lab).mean() > 0.999
    assert np.allclose(sims[np.arange(len(lab)), lab], out.column("cos_to_centroid").to_numpy(), atol=1e-3)
    # ranks: 0..size-1 per cluster, by decreasing cosine
    for c in range(6):
        m = lab == c
        r = out.column("rank_in_cluster").to_numpy()[m]
        assert sorted(r.tolist()) == list(range(m.sum()))
        cs = out.column("cos_to_centroid").to_numpy()[m]
        assert np.all(np.diff(cs[np.argsort(r)]) <= 1e-6)
    # clusters.parquet: sizes, the closest / furthest samples (uids, captions, cosines, embeddings)
    cl = pq.read_table(tmp_path / "out" / "clusters.parquet")
    assert cl.column("size").to_pylist() == np.bincount(lab, minlength=6).tolist()
    by_uid = dict(zip(out.column("uid").to_pylist(), range(out.num_rows)))
    for row in cl.to_pylist():
        assert len(row["closest_uid"]) == 4 == len(row["closest"]) == len(row["closest_emb"])
        idx = [by_uid[u] for u in row["closest_uid"]]
        assert [out.column("rank_in_cluster")[i].as_py() for i in idx] == [0, 1, 2, 3]
        assert row["closest"] == [out.column("caption")[i].as_py() for i in idx]
        assert row["closest_cos"] == sorted(row["closest_cos"], reverse=True)
        far = [by_uid[u] for u in row["furthest_uid"]]
        size = row["size"]
        assert [out.column("rank_in_cluster")[i].as_py() for i in far] == list(range(size - 1, size - 5, -1))
    # the silhouette: exact, equal to sklearn's
    ref = silhouette_score(x, lab, metric="cosine")
    assert s["cluster"]["silhouette"]["exact"] and abs(s["cluster"]["silhouette"]["score"] - ref) < 1e-4
    # the t-SNE map: one point per sampled row, the map PNG (no images in this pool: no thumbnails)
    ts = pq.read_table(tmp_path / "out" / "tsne.parquet")
    assert ts.num_rows == 300 and set(ts.column("uid").to_pylist()) <= set(by_uid)
    assert (tmp_path / "out" / "tsne.png").read_bytes()[:4] == b"\x89PNG"
    assert s["cluster"]["tsne"]["thumbnails"] is None


def test_sampled_silhouette_has_an_interval(tmp_path):
    table = embedding_table(900, d=16, k=4, seed=5)
    pq.write_table(table, tmp_path / "p.parquet")
    s = run_stage(ClusterStage(k=4, silhouette_exact_max=300, tsne_rows=0), [tmp_path / "p.parquet"],
                  tmp_path / "o", progress=False)
    sil = s["cluster"]["silhouette"]
    assert not sil["exact"] and sil["rows"] == 300 and sil["ci95"][0] <= sil["score"] <= sil["ci95"][1]


def test_errors_name_the_fix(tmp_path):
    table = embedding_table(50, d=8, k=2)
    pq.write_table(table, tmp_path / "p.parquet")
    with pytest.raises(InputError, match="only 48 rows have a usable image embedding; lower --k"):
        run_stage(ClusterStage(k=60, tsne_rows=0), [tmp_path / "p.parquet"], tmp_path / "o1", progress=False)
    with pytest.raises(InputError, match="no text_emb column; run `fastcurate embed` first"):
        run_stage(ClusterStage(k=2, space="text", tsne_rows=0), [tmp_path / "p.parquet"], tmp_path / "o2",
                  progress=False)
    other = embedding_table(50, d=12, k=2, seed=1)
    pq.write_table(other, tmp_path / "q.parquet")
    with pytest.raises(InputError, match="different widths"):
        run_stage(ClusterStage(k=2, tsne_rows=0), [tmp_path / "p.parquet", tmp_path / "q.parquet"], tmp_path / "o3",
                  progress=False)


def test_real_photos_cli_with_thumbnails(tmp_path, capsys):
    """The real WebDataset shards, embedded with a tiny random CLIP, clustered; the thumbnail map."""
    from embed_fixtures import WDS, need_data, tiny_bundle

    tv_importorskip("open_clip")
    need_data(WDS)
    emb = tmp_path / "emb"
    assert main(["embed", str(WDS), "--model", str(tiny_bundle()), "--out", str(emb), "--device", "cpu",
                 "--no-progress"]) == 0
    out = tmp_path / "cl"
    assert main(["cluster", str(emb), "--out", str(out), "--k", "3", "--tsne-rows", "40", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "cluster: " in printed and "silhouette" in printed
    s = json.loads((out / "stats.json").read_text())
    assert s["cluster"]["tsne"]["thumbnails"] == "tsne_thumbs.png"
    from PIL import Image

    a = np.asarray(Image.open(out / "tsne_thumbs.png"))
    assert (a < 250).any(axis=2).mean() > 0.02  # pictures were drawn, not a blank canvas
