"""The group stage: URL-directory keys, key columns, and the cleaning it composes from the filter and
dedup stages, checked against running those stages one after the other; real LAION URLs (280
groups of two or more) and the clothing photos."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contract_cases import group_table
from fastcurate.errors import InputError
from fastcurate.runner.local import run_stage
from fastcurate.stages.dedup.stage import DedupStage
from fastcurate.stages.filter.stage import FilterStage
from fastcurate.stages.group.stage import GroupStage, url_dir

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def _read(out: Path, sub: str = "") -> pa.Table:
    parts = sorted((out / sub).glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts])


@pytest.mark.parametrize("url, key", [
    ("https://Img.Example.com/a/b/c.jpg?x=1#f", "img.example.com/a/b/"),
    ("http://user:pw@cdn.example.com:8080/p/q.png", "cdn.example.com:8080/p/"),
    ("http://example.com/x.jpg", "example.com/"),
    ("http://example.com", "example.com/"),
    ("//example.com/a/b.jpg", "example.com/a/"),
    ("dress/abc.jpg", "dress/"),
    ("/data/img/abc.jpg?v=2", "/data/img/"),
    ("abc.jpg", "./"),
    ("file:///data/img/abc.jpg", "/data/img/"),
    ("http://[::1]:bad/x.jpg", "http://[::1]:bad/"),  # a malformed port: the text up to the file name
    ("  ", None),
    (None, None),
])
def test_url_dir(url, key):
    assert url_dir(url) == key


def test_options_are_checked():
    with pytest.raises(InputError, match="group_by"):
        GroupStage(group_by="page")
    with pytest.raises(InputError, match="key_column is for"):
        GroupStage(group_by="url-dir", key_column="x")
    with pytest.raises(InputError, match=">= 2"):
        GroupStage(max_group_size=1)
    with pytest.raises(InputError, match="unknown dedup keys"):
        GroupStage(dedup=["pixels"])
    assert GroupStage(group_by="url-dir", dedup=["caption"], near_duplicates=False, image_size="off").needs == ("url", "text")


def test_equals_the_filter_then_dedup_stages_run_in_turn(tmp_path):
    """The stage's decisions = size limits, then FilterStage on the rows left, then DedupStage
    (within the group) on the rows the filter kept, then groups left with one row."""
    t = group_table(150, seed=3)
    src = tmp_path / "in.parquet"
    pq.write_table(t, src)
    stage = GroupStage(key_column="page_url", max_group_size=12)
    stats = run_stage(stage, [src], tmp_path / "g", batch_size=23, progress=False)
    kept = _read(tmp_path / "g")
    drops = _read(tmp_path / "g", "drops")
    got = dict(zip(drops.column("uid").to_pylist(), drops.column("reason").to_pylist()))
    got.update({u: "kept" for u in kept.column("uid").to_pylist()})
    assert got.pop(None) == "null_id"  # rows without an id (the runner's)
    # the reference, stage by stage
    rows = [r for r in t.to_pylist() if r["uid"] is not None]
    size = Counter(r["page_url"] for r in rows if r["page_url"])
    want = {}
    for r in rows:
        k = r["page_url"]
        want[r["uid"]] = ("no_group" if not k else "oversized_group" if size[k] > 12 else "singleton" if size[k] < 2
                          else None)
    open_uids = [u for u, w in want.items() if w is None]
    sub = t.filter(pa.compute.is_in(t.column("uid"), pa.array(open_uids)))
    pq.write_table(sub, tmp_path / "open.parquet")
    run_stage(FilterStage(language=None), [tmp_path / "open.parquet"], tmp_path / "f", progress=False)
    fd = _read(tmp_path / "f", "drops")
    want.update(dict(zip(fd.column("uid").to_pylist(), fd.column("reason").to_pylist())))
    fk = _read(tmp_path / "f").append_column("group", _read(tmp_path / "f").column("page_url"))
    pq.write_table(fk, tmp_path / "fk.parquet")
    run_stage(DedupStage(within="group"), [tmp_path / "fk.parquet"], tmp_path / "d", progress=False)
    dd = _read(tmp_path / "d", "drops")
    want.update(dict(zip(dd.column("uid").to_pylist(), dd.column("reason").to_pylist())))
    dk = _read(tmp_path / "d")
    left = Counter(dk.column("group").to_pylist())
    for u, g in zip(dk.column("uid").to_pylist(), dk.column("group").to_pylist()):
        want[u] = "kept" if left[g] >= 2 else "singleton_after_cleaning"
    assert got == want
    assert set(want.values()) >= {"kept", "no_group", "oversized_group", "too_few_words", "duplicate",
                                  "near_duplicate", "singleton_after_cleaning", "image_too_small"}
    # group and group_size of the kept rows: the kept rows' own counts; duplicates name a kept twin of their group
    sizes = Counter(kept.column("group").to_pylist())
    assert kept.column("group_size").to_pylist() == [sizes[g] for g in kept.column("group").to_pylist()]
    assert kept.column("group").to_pylist() == kept.column("page_url").to_pylist()
    page = dict(zip(t.column("uid").to_pylist(), t.column("page_url").to_pylist()))
    for u, r, d in zip(drops.column("uid").to_pylist(), drops.column("reason").to_pylist(),
                       drops.column("detail").to_pylist()):
        if r in ("duplicate", "near_duplicate"):
            twin = d.split()[0]
            assert got[twin] in ("kept", "singleton_after_cleaning") and page[twin] == page[u]
    s = stats["group"]["steps"]
    assert s["cleaned"]["rows"] == kept.num_rows and s["cleaned"]["pairs"] == sum(v * (v - 1) // 2 for v in sizes.values())


def test_key_columns_auto_integer_ids_and_errors(tmp_path):
    t = pa.table({"uid": [f"u{i}" for i in range(6)], "caption": [f"a long enough caption number {i}" for i in range(6)],
                  "document_id": pa.array([7, 7, 8, None, 9, 9], pa.int64()), "page_url": ["x"] * 6})
    pq.write_table(t, tmp_path / "a.parquet")
    st = GroupStage(image_size="off", dedup=["caption"], near_duplicates=False)
    # the auto list is group, page_url, page, document_id: page_url wins here
    run_stage(st, [tmp_path / "a.parquet"], tmp_path / "o1", progress=False)
    assert _read(tmp_path / "o1").column("group").to_pylist() == ["x"] * 6
    st2 = GroupStage(key_column="document_id", image_size="off", dedup=[], near_duplicates=False)
    stats = run_stage(st2, [tmp_path / "a.parquet"], tmp_path / "o2", progress=False)
    k = _read(tmp_path / "o2")
    assert sorted(zip(k.column("uid").to_pylist(), k.column("group").to_pylist())) == [("u0", "7"), ("u1", "7"),
                                                                                       ("u4", "9"), ("u5", "9")]
    assert stats["rows_dropped"]["no_group"] == 1 and stats["rows_dropped"]["singleton"] == 1
    pq.write_table(t.drop_columns(["document_id", "page_url"]), tmp_path / "b.parquet")
    with pytest.raises(InputError, match="--group-by url-dir"):
        run_stage(GroupStage(image_size="off", dedup=[], near_duplicates=False), [tmp_path / "b.parquet"],
                  tmp_path / "o3", progress=False)
    with pytest.raises(InputError, match="no group key column 'page'"):
        run_stage(GroupStage(key_column="page", image_size="off", dedup=[], near_duplicates=False),
                  [tmp_path / "b.parquet"], tmp_path / "o4", progress=False)


def test_real_laion_urls_give_280_groups(tmp_path):
    src = DATA / "captions" / "laion_10k.parquet"
    if not src.is_file():
        pytest.skip("../shared/data is absent")
    st = GroupStage(group_by="url-dir", dedup=["caption"], near_duplicates=False)
    stats = run_stage(st, [src], tmp_path / "g", progress=False)
    s = stats["group"]["steps"]
    assert s["grouped"]["groups"] == 280 and s["grouped"]["rows_in_groups_of_2_or_more"] == 1901
    assert stats["rows_in"] == 10_000 == stats["rows_kept"] + sum(stats["rows_dropped"].values())
    assert stats["rows_dropped"]["singleton"] == 10_000 - 1901
    # the two groups above 100 rows: thumbs.dreamstime.com/t/ (151) and rlv.zcache.com/ (130)
    assert stats["rows_dropped"]["oversized_group"] == 281 and stats["group"]["largest_group_before"] == 151
    kept = _read(tmp_path / "g")
    sizes = Counter(kept.column("group").to_pylist())
    assert all(v >= 2 for v in sizes.values()) and len(sizes) == s["cleaned"]["groups"]
    assert kept.column("group_size").to_pylist() == [sizes[g] for g in kept.column("group").to_pylist()]


@pytest.mark.slow
def test_real_clothing_photos_grouped_by_folder(tmp_path):
    """The clothing photos grouped by their folder (url-dir of the image path): exact and
    near-duplicate photos are found only within a folder; one photo appears under two labels."""
    import csv

    root = DATA / "images" / "clothing_small"
    if not root.is_dir():
        pytest.skip("../shared/data is absent")
    rows = list(csv.DictReader(open(root / "labels.csv")))
    per: Counter = Counter()
    pick = []
    for r in rows:
        if per[r["class"]] < 30:
            per[r["class"]] += 1
            pick.append(r)
    t = pa.table({"uid": [r["path"] for r in pick], "image_path": [str(root / r["path"]) for r in pick],
                  "url": [r["path"] for r in pick], "caption": [f"a photo of a {r['class']} for sale" for r in pick]})
    pq.write_table(t, tmp_path / "c.parquet")
    stats = run_stage(GroupStage(group_by="url-dir", max_group_size=30, min_image_size=300), [tmp_path / "c.parquet"],
                      tmp_path / "g", progress=False)
    kept = _read(tmp_path / "g")
    assert set(kept.column("group").to_pylist()) <= {f"{c}/" for c in per}
    assert stats["rows_in"] == len(pick) == stats["rows_kept"] + sum(stats["rows_dropped"].values())
    d = _read(tmp_path / "g", "drops")
    for u, r, det in zip(d.column("uid").to_pylist(), d.column("reason").to_pylist(), d.column("detail").to_pylist()):
        if r in ("duplicate", "near_duplicate"):
            assert det.split()[0].split("/")[0] == u.split("/")[0]
    assert json.dumps(stats["group"]["dedup"])  # statistics recorded


def test_group_and_filter_flags_default_to_the_stages_defaults(tmp_path):
    """`fastcurate group` and `fastcurate filter` share their caption and image-size flags (one
    definition); each flag's default is the stage constructor's, and group's language test is off."""
    import inspect

    from fastcurate.cli import build_parser
    from fastcurate.stages.filter.cli import name_list
    from fastcurate.stages.filter.stage import FilterStage
    from fastcurate.stages.group.stage import GroupStage

    p = build_parser()
    for cmd, stage in (("filter", FilterStage), ("group", GroupStage)):
        a = p.parse_args([cmd, str(tmp_path), "--out", str(tmp_path / "o")])
        d = {k: v.default for k, v in inspect.signature(stage.__init__).parameters.items()}
        assert (a.words_above, a.chars_above, a.min_image_size, a.max_aspect_ratio, a.image_size) == \
            (d["words_above"], d["chars_above"], d["min_image_size"], d["max_aspect_ratio"], d["image_size"]), cmd
        assert name_list(a.rules) == tuple(d["rules"]), cmd
        assert (None if a.language == "none" else a.language) == d["language"], cmd
    # group's dedup flags: the dedup stage's defaults, as GroupStage's
    from fastcurate.stages.dedup.stage import DedupStage

    a = p.parse_args(["group", str(tmp_path), "--out", str(tmp_path / "o")])
    dd = {k: v.default for k, v in inspect.signature(DedupStage.__init__).parameters.items()}
    gd = {k: v.default for k, v in inspect.signature(GroupStage.__init__).parameters.items()}
    assert name_list(a.dedup) == tuple(dd["exact"]) == tuple(gd["dedup"])
    assert (a.radius, a.dhash_radius, not a.no_near) == (dd["radius"], dd["dhash_radius"], dd["near"]) == \
        (gd["radius"], gd["dhash_radius"], gd["near_duplicates"])
    assert name_list(" none ") == () and name_list("url, filename,") == ("url", "filename")
