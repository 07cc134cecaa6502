"""`fastcurate report DIR`: sections found by what the directory holds (synthetic run directories in
every stage's layout, and a real curate run), a self-contained page, and the page in a real
headless Chromium (no console error, no request, every image loads, a non-blank screenshot)."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contract_cases import ENTRIES, caption_table, write_layout
from report_fixtures import make_run
from fastcurate.cli import main
from fastcurate.report import build_report, section, Section
from fastcurate.report.sections.dedup import parse_twin


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("report") / "run", 3000, 3)


@pytest.fixture(scope="module")
def report(run_dir):
    return build_report(run_dir, progress=False)


def _imgs(html: str):
    return re.findall(r'<img src="([^"]*)"', html)


def test_every_stage_section_is_found_by_what_the_directory_holds(report, run_dir):
    html = report.read_text()
    assert report == run_dir / "report.html"
    for must in ("Funnel", "01-curate", "08-instruct", "The long tail before and after balancing", "Head entries",
                 "CLIP score", "03-filter threshold = 0.25", "Duplicate groups", "Cluster sizes", "t-SNE map",
                 "Judgments", "Clusters with their judgment", "Low Value", "Captions are file names",
                 "Instructions", "make it", "Mined pairs", "Timings and throughput", "Dropped rows, by reason"):
        assert must in html, must
    # the funnel's numbers are the stats'
    for d in sorted(run_dir.glob("0*-*")):
        st = json.loads((d / "stats.json").read_text())
        assert f"{st['rows_in']:,}" in html and f"{st['rows_kept']:,}" in html
    # self-contained: no external resource, images are data URIs
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert all(u.startswith("data:image/") for u in _imgs(html))
    assert len(report.read_bytes()) < 3_000_000


def test_dropped_rows_are_joined_back_to_their_captions_and_images(report, run_dir):
    html = report.read_text()
    drops = pq.read_table(run_dir / "01-curate" / "drops" / "part-00000.parquet")
    raw = pq.read_table(run_dir / "_raw" / "shard-00000.parquet")
    uid = drops.column("uid")[0].as_py()
    cap = raw.filter(pa.compute.equal(raw.column("uid"), uid)).column("caption")[0].as_py()
    i = html.index(f">{uid}")  # the example card of the first no_match drop
    card = html[html.rindex("<figure", 0, i):i]
    assert cap in card and '<img src="data:image/jpeg;base64,' in card
    # a duplicate group: the kept twin first, then the row that names it
    twin, rest = parse_twin(pq.read_table(run_dir / "04-dedup" / "drops" / "part-00000.parquet").column("detail")[0].as_py())
    assert f"kept · {twin}" in html and rest.startswith("hamming=")


def test_parse_twin_forms():
    assert parse_twin("u17") == ("u17", "")
    assert parse_twin("u17 cos=0.981") == ("u17", "cos=0.981")
    assert parse_twin('{"twin": "a", "cos": 0.97}') == ("a", "cos=0.97")
    assert parse_twin("duplicate of abc, hamming 3") == ("abc", "hamming 3")
    assert parse_twin(None) == (None, "")


def test_single_stage_output_and_custom_sections(run_dir, tmp_path):
    """One stage's --out alone: its sections (the cluster table appears without a judge), and a
    renderer registered for a new stage name plugs in without touching the core."""
    out = build_report(run_dir / "05-cluster", tmp_path / "c.html", progress=False)
    html = out.read_text()
    assert "t-SNE map" in html and ">Clusters<" in html and "Funnel" in html

    @section("cluster")
    def extra(stage, run):
        return Section("A plugged-in section", f"<p>k = {stage.stage_stats['k']}</p>")

    try:
        html = build_report(run_dir / "05-cluster", tmp_path / "c2.html", progress=False).read_text()
        assert "A plugged-in section" in html and "k = 12" in html
    finally:
        from fastcurate.report.sections import _REGISTRY

        _REGISTRY["cluster"].remove(extra)


def test_a_failing_section_is_reported_in_place(run_dir, tmp_path):
    @section("embed")
    def broken(stage, run):
        raise ValueError("no such column: clip_score_2")

    try:
        html = build_report(run_dir, tmp_path / "b.html", progress=False).read_text()
        assert "this section could not be built: ValueError: no such column: clip_score_2" in html
        assert "CLIP score" in html  # the others stand
    finally:
        from fastcurate.report.sections import _REGISTRY

        _REGISTRY["embed"].remove(broken)


def test_real_runs_and_an_unfinished_stage(tmp_path):
    from fastcurate.runner.local import run_stage
    from fastcurate.stages.curate.stage import CurateStage
    from fastcurate.stages.match.stage import MatchStage

    src = write_layout(caption_table(600), tmp_path / "in", 2, seed=0)
    run = tmp_path / "run"
    run_stage(CurateStage(ENTRIES, t=12, plot=False), [src], run / "01-curate", progress=False)
    run_stage(MatchStage(ENTRIES), [run / "01-curate"], run / "02-match", progress=False)
    (run / "03-embed" / "_work").mkdir(parents=True)
    (run / "03-embed" / "_work" / "manifest.json").write_text(json.dumps({"stage": "embed", "inputs": []}))
    html = build_report(run, progress=False).read_text()
    assert "unfinished" in html and "01-curate" in html and "02-match" in html
    assert "null_text" in html or "no_match" in html
    # the same from the command line, into another file
    assert main(["report", str(run), "--out", str(tmp_path / "r.html"), "--no-progress", "--examples", "2"]) == 0
    assert (tmp_path / "r.html").stat().st_size > 10_000
    assert main(["report", str(tmp_path / "nope")]) == 1


def test_thumbnails_are_small_and_bad_images_give_none(tmp_path):
    from PIL import Image

    from fastcurate.report.data import thumbnail

    a = (np.random.default_rng(0).random((900, 1200, 3)) * 255).astype(np.uint8)
    p = tmp_path / "big.jpg"
    Image.fromarray(a).save(p, quality=90)
    uri = thumbnail(str(p), None, 96)
    import base64
    import io

    im = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert max(im.size) == 96 and im.format == "JPEG"
    assert thumbnail(b"not an image", None) is None and thumbnail(None, None) is None
    assert thumbnail(str(tmp_path / "missing.jpg"), None) is None and thumbnail(b"", None) is None


def _chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("Debian's chromium is not installed (scripts/install_system.sh installs it)")
    pw = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    return exe, pw


@pytest.mark.slow
def test_report_in_headless_chromium(report, tmp_path):
    exe, pw = _chromium()
    from PIL import Image

    console, failed, requests = [], [], []
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(report.as_uri(), wait_until="load")
        n_img, bad = page.evaluate("""() => {
            const imgs = Array.from(document.images);
            return [imgs.length, imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt)];
        }""")
        # hover a point of the t-SNE map: its tooltip shows a caption (and a thumbnail that loads)
        page.eval_on_selector("#tsne", "e => e.scrollIntoView()")
        page.hover("#tsne circle[r='3.2']")
        tip = page.eval_on_selector("#tip", "e => [getComputedStyle(e).display, e.textContent, "
                                            "Array.from(e.querySelectorAll('img')).every(i => i.naturalWidth > 0)]")
        page.evaluate("window.scrollTo(0, 0)")
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=False)
        browser.close()
    assert console == [], console
    assert failed == [], failed
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    assert n_img > 20 and bad == [], bad
    assert tip[0] == "block" and "cluster" in tip[1] and tip[2]
    px = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert px.std() > 20, "the screenshot looks blank"
    assert (px < 128).mean() > 0.01  # text and plots, not a white page


def test_row_lookup_in_parquet_and_in_row_formats_agree(tmp_path):
    """The report finds rows by uid in a Parquet shard (row groups) and in the other formats (a
    streamed read): the same captions either way."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from fastcurate.report.data import _lookup

    rows = [{"uid": f"u{i:03d}", "caption": f"a photo of thing {i}"} for i in range(50)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "s.parquet", row_group_size=7)
    with open(tmp_path / "s.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    want = {"u003", "u017", "u049", "missing"}
    got_pq = _lookup(tmp_path / "s.parquet", want, {}, 0)
    got_js = _lookup(tmp_path / "s.jsonl", want, {}, 0)
    assert {u: r.text for u, r in got_pq.items()} == {u: r.text for u, r in got_js.items()} == {
        "u003": "a photo of thing 3", "u017": "a photo of thing 17", "u049": "a photo of thing 49"}
