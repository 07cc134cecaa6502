"""Running a validated pipeline: the plan (which steps are finished, which resume, which rerun and
why), ``--dry-run`` with the expected sizes, and the run itself, one step after the other, each
step's output directory being the next step's input (docs/pipeline.md).

Resume is the runner's: a finished step whose manifest (stage, options, columns, batch size, the
inputs' fingerprint) is unchanged is skipped; an unfinished one resumes at its first unfinished
shard. A step whose options changed since it finished is rerun, and so is every step after it
(their inputs change); the plan says so before anything runs.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from ..errors import FastcurateError, InputError
from .spec import Pipeline, Step, load_pipeline

__all__ = ["run_pipeline", "plan", "StepPlan", "format_plan", "PIPELINE_JSON"]

PathLike = Union[str, "os.PathLike[str]"]
PIPELINE_JSON = "pipeline.json"


@dataclass
class StepPlan:
    """What will happen to one step. ``status``: ``done`` (finished, unchanged: skipped),
    ``resume`` (unfinished: resumes), ``new`` (runs), ``changed`` (finished with other options
    or inputs: rerun; ``why`` says which), ``after`` (runs after an earlier step that runs, so its
    input is not there yet), ``forced`` (--from)."""

    step: Step
    status: str
    why: str = ""
    shards: Optional[int] = None
    shards_done: int = 0
    rows_in: Optional[float] = None
    rows_in_exact: bool = True
    estimate: Any = None
    stats: Optional[Dict[str, Any]] = None
    overwrite: bool = False


def _shards_of(p: Pipeline, s: Step) -> List[Any]:
    from ..io.discover import discover_shards

    src = list(s.inputs or []) if s.input_step is None else [str(p.steps[s.input_step - 1].dir)]
    return discover_shards(src, exclude=[s.dir])


def _footer_rows(shards: List[Any]) -> Optional[int]:
    import pyarrow.parquet as pq

    if not shards or any(sh.format != "parquet" for sh in shards):
        return None
    try:
        return sum(pq.ParquetFile(sh.path).metadata.num_rows for sh in shards)
    except Exception:
        return None


def plan(p: Pipeline, *, from_step: Optional[Union[str, int]] = None, estimate: bool = False,
         threads: Optional[int] = None) -> List[StepPlan]:
    """The status of every step (see :class:`StepPlan`), without running or writing anything.
    With ``estimate``, each step whose input is known says how many rows it expects."""
    from ..io.atomic import read_json
    from ..runner.local import given_columns, make_manifest, output_state

    start = p.step(from_step).index if from_step is not None else None
    plans: List[StepPlan] = []
    rerun: Dict[int, bool] = {}
    rows_out: Dict[int, Optional[float]] = {}
    exact_out: Dict[int, bool] = {}
    for s in p.steps:
        sp = StepPlan(step=s, status="new")
        upstream = s.input_step
        if start is not None and s.index >= start:
            sp.status, sp.why = "forced", "--from: rerun from this step"
        if upstream is not None and rerun.get(upstream) and sp.status != "forced":
            sp.status = "after"
            sp.why = f"its input, the output of {p.steps[upstream - 1].label}, is made first"
            if (s.dir / "stats.json").is_file():
                sp.why += "; the finished run it holds is redone"
        if sp.status == "new":
            shards = _shards_of(p, s)
            manifest = make_manifest(s.stage, shards, given_columns(s.columns), s.effective_batch_size())
            st = output_state(s.dir, manifest)
            sp.shards = st.shards
            if st.kind == "foreign":
                raise InputError(f"{s.dir} holds files that are not a fastcurate run; move them away or choose another "
                                 f"out for the pipeline")
            if st.kind == "done":
                sp.status = "done"
                try:
                    sp.stats = read_json(s.dir / "stats.json")
                except ValueError:
                    sp.stats = None
            elif st.kind == "resume":
                sp.status, sp.shards_done = "resume", st.shards_done
                sp.why = f"{st.shards_done} of {st.shards} shards processed"
            elif st.kind in ("changed", "stale"):
                sp.status = "changed"
                keys = sorted({k.split(".")[0] if not k.startswith("config.") else k for k in st.differs})
                what = ", ".join(k.replace("config.", "option ") for k in keys[:6])
                sp.why = (f"{'finished' if st.kind == 'changed' else 'unfinished'} run with other "
                          f"{'inputs' if keys == ['inputs'] else 'options or inputs'} (differs in: {what})")
                sp.overwrite = True
        if sp.status in ("after", "forced"):
            sp.overwrite = True
        rerun[s.index] = sp.status != "done"
        # rows in: the input's footers, the upstream's finished stats, or its estimate
        if sp.stats is not None:
            sp.rows_in = float(sp.stats["rows_in"])
        elif upstream is not None and not rerun.get(upstream) and plans[upstream - 1].stats is not None:
            sp.rows_in = float(plans[upstream - 1].stats["rows_kept"])  # type: ignore[index]
        elif upstream is None:
            rows = _footer_rows(_shards_of(p, s))
            sp.rows_in = None if rows is None else float(rows)
        elif upstream is not None:
            sp.rows_in = rows_out.get(upstream)
            sp.rows_in_exact = exact_out.get(upstream, False)
        if estimate and sp.status != "done" and (upstream is None or not rerun.get(upstream)):
            try:
                sp.estimate = s.stage.estimate(_shards_of(p, s), s.columns, threads if threads else s.threads)
            except FastcurateError as e:
                sp.estimate = e
        if sp.stats is not None:
            rows_out[s.index], exact_out[s.index] = float(sp.stats["rows_kept"]), True
        elif sp.estimate is not None and not isinstance(sp.estimate, Exception) and sp.estimate.rows_out is not None:
            rows_out[s.index], exact_out[s.index] = float(sp.estimate.rows_out), bool(sp.estimate.exact) and sp.rows_in_exact
        plans.append(sp)
    return plans


def _fmt_rows(v: Optional[float], exact: bool = True) -> str:
    if v is None:
        return "unknown"
    return f"{v:,.0f}" if exact and float(v).is_integer() else f"~{v:,.0f}"


def _fmt_value(v: Any) -> str:
    if isinstance(v, str):
        return '"' + v + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "(none)"
    if isinstance(v, (list, tuple)) and len(v) > 6:
        return "[" + ", ".join(_fmt_value(x) for x in v[:5]) + f", ... ({len(v)} items)]"
    return str(v)


def format_plan(p: Pipeline, plans: List[StepPlan]) -> List[str]:
    """The plan as lines: the steps, their inputs and outputs, every option (given or default),
    the runner's options, what each reads and adds, its status, and the expected sizes."""
    out = [f"pipeline {p.name} ({p.source}) -> {p.out}/"]
    if p.description:
        out.append(f"  {p.description}")
    if p.input:
        out.append(f"input: {', '.join(p.input)}")
    status_text = {"done": "finished: skipped", "resume": "unfinished: resumes", "new": "runs",
                   "changed": "reruns", "after": "runs", "forced": "reruns (--from)"}
    for sp in plans:
        s = sp.step
        st = status_text[sp.status] + (f" ({sp.why})" if sp.why else "")
        out.append("")
        out.append(f"{s.index}. {s.name}" + (f" [{s.id}]" if s.id != s.name else "") + f" -> {s.dir}/  [{st}]")
        src = (f"the output of {p.steps[s.input_step - 1].label}" if s.input_step is not None
               else ", ".join(s.inputs or []))
        shards = f"{sp.shards} shard{'s' if sp.shards != 1 else ''}, " if sp.shards is not None else ""
        out.append(f"   input: {src} ({shards}{_fmt_rows(sp.rows_in, sp.rows_in_exact)} rows)")
        opts = [f"{k} = {_fmt_value(v)}" + ("" if given else " (default)") for k, (v, given) in s.all_options().items()
                if given or s.option_info[k].annotation is not Any]  # Python-object options: only when given
        if opts:
            out.append("   options: " + ", ".join(opts))
        cols = ", ".join(f"{k} = {v}" for k, v in s.columns.items()) or "the usual names"
        bs = f"{s.batch_size}" if s.batch_size is not None else f"{s.stage.batch_size} (the stage's)"
        out.append(f"   runner: engine {s.engine}, on_error {s.on_error}, threads {s.threads or 'all cores'}, "
                   f"batch_size {bs}, columns: {cols}")
        reads = list(s.stage.needs) + [f"{w}?" for w in s.stage.wants] + list(getattr(s.stage, "consumes", ()))
        adds = list(getattr(s.stage, "produces", ()))
        out.append(f"   reads: {', '.join(reads) or '-'}; adds: {', '.join(adds) or '-'}; drops: "
                   f"{', '.join(s.stage.reasons) or '-'}")
        if sp.stats is not None:
            out.append(f"   result: {sp.stats['rows_in']:,} rows in -> {sp.stats['rows_kept']:,} kept")
        elif isinstance(sp.estimate, Exception):
            out.append(f"   expected: not estimated ({sp.estimate})")
        elif sp.estimate is not None:
            e = sp.estimate
            tag = "" if e.exact else " (extrapolated from a sample)"
            out.append(f"   expected: {_fmt_rows(e.rows_out, False)} rows out{tag}")
            for n in e.notes:
                out.append(f"     {n}")
        elif sp.rows_in is not None:
            out.append(f"   expected: at most {_fmt_rows(sp.rows_in, sp.rows_in_exact)} rows out (this stage "
                       "gives no estimate before it runs)")
    rerun = [sp for sp in plans if sp.status in ("changed", "forced")]
    if rerun:
        first = rerun[0]
        after = [sp.step.label for sp in plans if sp.step.index > first.step.index and sp.status != "done"]
        out.append("")
        out.append(f"note: {first.step.label} reruns ({first.why}), and so do the steps after it"
                   + (f": {', '.join(after)}" if after else ""))
    return out


def _stale_dirs(p: Pipeline) -> List[Path]:
    import re

    if not p.out.is_dir():
        return []
    mine = {s.dir.name for s in p.steps}
    return sorted(d for d in p.out.iterdir() if d.is_dir() and re.fullmatch(r"\d{2,}-.+", d.name) and d.name not in mine)


def _engine_runner(engine: str) -> Callable[..., Dict[str, Any]]:
    if engine == "local":
        from ..runner.local import run_stage

        return run_stage
    try:
        from ..runner.ray import run_stage_ray  # type: ignore[import-not-found]
    except ImportError as e:
        raise InputError(f'engine "ray" is not available: {e}; install Ray (pip install \'fastcurate[ray]\') and a '
                         'fastcurate with the Ray engine, or use engine = "local"') from None
    return run_stage_ray


def _write_pipeline_json(p: Pipeline) -> None:
    from ..io.atomic import atomic_write_json

    p.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(p.out / PIPELINE_JSON, {
        "name": p.name, "source": p.source, "description": p.description, "input": p.input,
        "steps": [{"index": s.index, "dir": s.dir.name, "id": s.id, "stage": s.name,
                   "input": (p.steps[s.input_step - 1].dir.name if s.input_step is not None else s.inputs),
                   "options": {k: v for k, v in s.options.items() if _jsonable(v)}, "columns": s.columns,
                   "engine": s.engine} for s in p.steps]})


def _jsonable(v: Any) -> bool:
    import json

    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def run_pipeline(
    spec: Union[PathLike, Mapping[str, Any], Pipeline],
    *,
    dry_run: bool = False,
    from_step: Optional[Union[str, int]] = None,
    engine: Optional[str] = None,
    input: Optional[Sequence[PathLike]] = None,
    out: Optional[PathLike] = None,
    progress: bool = True,
    estimate: Optional[bool] = None,
    log: Optional[Callable[[str], None]] = None,
) -> Dict[str, Any]:
    """Validate and run a pipeline (a TOML file, a shipped example's name, or a dict of the same
    shape); returns ``{"out", "steps": [{"dir", "stage", "status", "stats"}]}``.

    The whole pipeline is validated before anything runs (:class:`~.spec.PipelineError` lists
    every problem with its line). Finished steps are skipped, an unfinished one resumes, a step
    whose options changed reruns with everything after it. ``from_step`` (index, directory name,
    id, or stage name) reruns that step and all after it. ``dry_run`` prints the plan with the
    expected sizes and runs nothing. ``engine`` overrides every step's (``local`` or ``ray``).
    """
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    p = spec if isinstance(spec, Pipeline) else load_pipeline(spec, input=input, out=out, engine=engine)
    plans = plan(p, from_step=from_step, estimate=dry_run if estimate is None else estimate)
    if dry_run:
        for line in format_plan(p, plans):
            print(line)
        return {"out": str(p.out), "dry_run": True,
                "steps": [{"dir": str(sp.step.dir), "stage": sp.step.name, "status": sp.status, "why": sp.why,
                           "rows_in": sp.rows_in,
                           "expected_rows_out": (sp.estimate.rows_out if sp.estimate is not None
                                                 and not isinstance(sp.estimate, Exception) else None),
                           "stats": sp.stats} for sp in plans]}
    # resolve every engine before the first step runs
    runners = {s.engine: _engine_runner(s.engine) for s in p.steps}
    for d in _stale_dirs(p):
        log(f"note: {d} is not a step of this pipeline (left by an earlier version of it); remove it if unneeded")
    todo = [sp for sp in plans if sp.status != "done"]
    if not todo:
        log(f"pipeline {p.name}: every step is finished in {p.out}/; nothing to do (--from STEP reruns from a step)")
    else:
        done = [sp.step.label for sp in plans if sp.status == "done"]
        if done:
            log(f"pipeline {p.name}: resuming in {p.out}/: {', '.join(done)} finished (skipped)")
        for sp in plans:
            if sp.status == "changed":
                later = [q.step.label for q in plans if q.step.index > sp.step.index]
                log(f"{sp.step.label}: {sp.why}: rerunning it" + (f" and the steps after it ({', '.join(later)})"
                                                                   if later else ""))
                break
    _write_pipeline_json(p)
    results = []
    t0 = time.perf_counter()
    for sp in plans:
        s = sp.step
        if sp.status == "done":
            results.append({"dir": str(s.dir), "stage": s.name, "status": "done", "stats": sp.stats})
            continue
        if sp.status == "forced" and s.dir.exists():
            from ..io.discover import is_stage_output

            if is_stage_output(s.dir):
                shutil.rmtree(s.dir)
            elif any(s.dir.iterdir()):
                raise InputError(f"{s.dir} holds files that are not a fastcurate run; move them away")
        src = [str(p.steps[s.input_step - 1].dir)] if s.input_step is not None else list(s.inputs or [])
        log(f"[{s.index}/{len(p.steps)}] {s.name} -> {s.dir}/" + (f" ({sp.why})" if sp.why and sp.status != "new" else ""))
        stats = runners[s.engine](s.stage, src, s.dir, columns=s.columns, on_error=s.on_error,
                                  overwrite=sp.overwrite, threads=s.threads, batch_size=s.batch_size,
                                  progress=progress)
        from ..runner.cli import format_summary

        log(format_summary(stats, str(s.dir)))
        results.append({"dir": str(s.dir), "stage": s.name, "status": sp.status, "stats": stats})
    if todo:
        log(f"pipeline {p.name}: {len(todo)} step{'s' if len(todo) > 1 else ''} run in "
            f"{time.perf_counter() - t0:.1f} s; report: fastcurate report {p.out}")
    return {"out": str(p.out), "dry_run": False, "steps": results}
