"""Reading and validating a pipeline file (docs/pipeline.md).

The whole file is checked before anything runs, and every problem is reported at once with the
file, the line and the fix: TOML syntax, unknown tables and keys, wrong types, missing input
files, unknown stages, option values the stage refuses, column roles the input lacks, and the
order of the stages (a stage that consumes a column or file that nothing before it produces).
Everything stage-specific comes from the stage registry (:mod:`fastcurate.stages`) and the stage
classes (their constructor signatures, ``needs``/``wants``, ``consumes``/``produces``), so a new
stage needs no code here.
"""

from __future__ import annotations

import difflib
import glob
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

from ..errors import FastcurateError, InputError
from .options import RESERVED_KEYS, RUNNER_OPTIONS, Option, check_value, stage_options
from .positions import key_lines

if TYPE_CHECKING:

    from ..runner.stage import Stage

__all__ = ["Pipeline", "Step", "PipelineError", "Issue", "load_pipeline", "PIPELINE_KEYS", "ENGINES",
           "is_file_name", "examples_dir", "list_examples", "find_example"]

PathLike = Union[str, "os.PathLike[str]"]
ENGINES = ("local", "ray")
PIPELINE_KEYS: Dict[str, str] = {
    "name": "the pipeline's name (shown in the plan and the report)",
    "description": "what the pipeline does",
    "input": "the first step's input: shard files, directories or globs (a path or a list of paths)",
    "out": "the run directory: one numbered subdirectory per step (01-curate/, 02-embed/, ...)",
    "relative_to": '"file" (default): relative paths start at this file\'s directory; "cwd": at the current '
                   'directory',
    **{k: v[1] + " (the default of every step)" for k, v in RUNNER_OPTIONS.items() if k != "batch_size"},
}
_FILE_SUFFIXES = (".parquet", ".npy", ".npz", ".json", ".jsonl", ".png", ".csv", ".tsv", ".txt", ".html", ".gguf")


def is_file_name(item: str) -> bool:
    """True when a ``consumes``/``produces`` item names a file (``clusters.parquet``), not a column."""
    return item.lower().endswith(_FILE_SUFFIXES)


@dataclass
class Issue:
    """One problem in a pipeline file: where (file, line) and what to do."""

    message: str
    line: Optional[int] = None

    def format(self, source: str) -> str:
        return f"{source}:{self.line}: {self.message}" if self.line else f"{source}: {self.message}"


class PipelineError(InputError):
    """A pipeline file that cannot run; ``issues`` lists every problem found (file:line: fix)."""

    def __init__(self, source: str, issues: List[Issue]):
        self.source = source
        self.issues = issues
        n = len(issues)
        head = f"{source}: {n} problem{'s' if n > 1 else ''} (nothing was run)" if n > 1 else ""
        lines = [i.format(source) for i in issues]
        super().__init__("\n".join(([head] if head else []) + lines))


@dataclass
class Step:
    """One ``[[stage]]`` of a pipeline, validated and built."""

    index: int  # 1-based position
    id: str
    name: str  # the registered stage name
    dir: Path
    stage: "Stage"
    options: Dict[str, Any]  # as given (paths resolved)
    option_info: Dict[str, Option]
    columns: Dict[str, str] = field(default_factory=dict)
    on_error: str = "fail"
    threads: Optional[int] = None
    batch_size: Optional[int] = None
    engine: str = "local"
    inputs: Optional[List[str]] = None  # raw input paths, or None when it reads an earlier step
    input_step: Optional[int] = None  # the index of the step whose output it reads
    line: Optional[int] = None

    @property
    def label(self) -> str:
        return self.dir.name

    def effective_batch_size(self) -> int:
        return int(self.batch_size if self.batch_size is not None else self.stage.batch_size)

    def all_options(self) -> Dict[str, Tuple[Any, bool]]:
        """Every constructor option: (value, given) — the value given, else the default."""
        out = {}
        for name, o in self.option_info.items():
            if name in self.options:
                out[name] = (self.options[name], True)
            else:
                out[name] = (None if o.required else o.default, False)
        return out


@dataclass
class Pipeline:
    """A validated pipeline: its steps with their built stages, the run directory, the input."""

    source: str  # the file (or "<dict>")
    name: str
    out: Path
    input: List[str]
    steps: List[Step]
    description: str = ""
    raw: Dict[str, Any] = field(default_factory=dict)

    def step(self, key: Union[str, int]) -> Step:
        """A step by 1-based index, directory name (``02-embed``), id, or stage name (when it
        occurs once)."""
        s = str(key).strip()
        for st in self.steps:
            if s in (str(st.index), st.label, st.id):
                return st
        hits = [st for st in self.steps if st.name == s]
        if len(hits) == 1:
            return hits[0]
        names = ", ".join(f"{st.index} / {st.label} / {st.id}" for st in self.steps)
        if len(hits) > 1:
            raise InputError(f"--from {s}: the stage {s} runs {len(hits)} times; name one of its steps: {names}")
        raise InputError(f"--from {s}: no such step; the steps are: {names}")


# ---------------------------------------------------------------------------------------------- helpers
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: Any, where: Tuple, issues: List[Issue], line_of: Any) -> Any:
    """``${VAR}`` and ``${VAR:-default}`` in strings (recursively in lists and tables); an unset
    variable without default is reported through ``line_of(path, message)``."""
    if isinstance(value, str):
        def sub(m: "re.Match[str]") -> str:
            v = os.environ.get(m.group(1))
            if v is None or (v == "" and m.group(2) is not None):
                if m.group(2) is None:
                    line_of(where, f"{m.group(0)} is not set in the environment: export {m.group(1)}=... or "
                                   f"write ${{{m.group(1)}:-default}}")
                    return m.group(0)
                return m.group(2)
            return v
        return _VAR.sub(sub, value)
    if isinstance(value, list):
        return [_expand(v, where + (i,), issues, line_of) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _expand(v, where + (k,), issues, line_of) for k, v in value.items()}
    return value


def _suggest(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _toml_type(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "a table"
    return type(v).__name__


def _toml_literal(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_literal(x) for x in v) + "]"
    return repr(v)


def _tomllib() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python < 3.11
        import tomli as tomllib
    return tomllib


def _registry() -> Dict[str, str]:
    from ..stages import STAGES

    return STAGES


def _producers(item: str) -> List[str]:
    """Registered stages whose class declares that it produces ``item`` (any alternative)."""
    from ..stages import stage_class

    alts = item.split("|")
    out = []
    for name in _registry():
        try:
            cls = stage_class(name)
        except Exception:
            continue
        if any(a in getattr(cls, "produces", ()) for a in alts):
            out.append(name)
    return out


# ---------------------------------------------------------------------------------------------- loading
def examples_dir() -> Path:
    """The shipped example pipelines (``fastcurate/pipeline/examples/*.toml``)."""
    return Path(__file__).parent / "examples"


def list_examples() -> Dict[str, str]:
    """Example name -> its first comment line (what it does)."""
    out = {}
    for p in sorted(examples_dir().glob("*.toml")):
        first = next((ln.lstrip("# ").strip() for ln in p.read_text(encoding="utf-8").splitlines()
                      if ln.startswith("#")), "")
        out[p.stem] = first
    return out


def find_example(name: str) -> Optional[Path]:
    p = examples_dir() / f"{name.replace('-', '_')}.toml"
    return p if p.is_file() else None


def load_pipeline(spec: Union[PathLike, Mapping[str, Any]], *, input: Optional[Sequence[PathLike]] = None,
                  out: Optional[PathLike] = None, engine: Optional[str] = None) -> Pipeline:
    """Read and validate a pipeline (a TOML file path, the name of a shipped example, or the same
    structure as a dict) and build its stages. Raises :class:`PipelineError` listing every
    problem with its line; nothing is run or written.

    ``input``, ``out``, ``engine`` override the file's (relative paths from the current
    directory)."""
    tomllib = _tomllib()
    if isinstance(spec, Mapping):
        source, text, data, base = "<dict>", None, dict(spec), Path.cwd()
    else:
        path = Path(spec)
        if not path.is_file() and find_example(str(spec)) is not None and not str(spec).endswith(".toml"):
            path = find_example(str(spec))  # type: ignore[assignment]
        if not path.is_file():
            ex = ", ".join(list_examples())
            raise InputError(f"{spec}: no such pipeline file (or shipped example; the examples are: {ex})")
        source = str(path)
        text = path.read_text(encoding="utf-8")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            msg = str(e)
            m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
            line = int(m.group(1)) if m else None
            msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg)
            raise PipelineError(source, [Issue(f"TOML syntax error: {msg}" + (f" (column {m.group(2)})" if m else "")
                                               + "; see https://toml.io for the syntax", line)]) from None
        base = path.resolve().parent
    lines = key_lines(text) if text is not None else {}
    return _Validator(source, data, lines, base, input, out, engine).run()


class _Validator:
    def __init__(self, source: str, data: Dict[str, Any], lines: Dict[Tuple, int], base: Path,
                 input_override: Optional[Sequence[PathLike]], out_override: Optional[PathLike],
                 engine_override: Optional[str]):
        self.source = source
        self.data = data
        self.lines = lines
        self.base = base
        self.issues: List[Issue] = []
        self.input_override = input_override
        self.out_override = out_override
        self.engine_override = engine_override
        self.from_dict = source == "<dict>"

    # ---- positions
    def line(self, path: Tuple) -> Optional[int]:
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return None

    def err(self, path: Tuple, msg: str) -> None:
        where = ""
        if self.from_dict:  # no lines: name the key instead
            where = "".join(f"[{x}]" if isinstance(x, int) else (f".{x}" if i else str(x)) for i, x in enumerate(path))
            where = f"{where}: " if where else ""
        self.issues.append(Issue(where + msg, self.line(path)))

    def fail_if_issues(self) -> None:
        if self.issues:
            raise PipelineError(self.source, sorted(self.issues, key=lambda i: (i.line or 0)))

    # ---- paths
    def path_base(self) -> Path:
        rel = self.data.get("pipeline", {}).get("relative_to", "file") if isinstance(self.data.get("pipeline"), dict) else "file"
        return Path.cwd() if rel == "cwd" else self.base

    def resolve(self, p: str) -> str:
        q = Path(os.path.expanduser(p))
        return os.path.normpath(str(q if q.is_absolute() else self.path_base() / q))

    def check_inputs(self, paths: List[str], where: Tuple) -> List[str]:
        out = []
        for i, p in enumerate(paths):
            r = self.resolve(p)
            w = where + ((i,) if isinstance(self._raw_at(where), list) else ())
            if glob.has_magic(r):
                if not glob.glob(r, recursive=True):
                    self.err(w, f"input {p!r} matches no file (resolved to {r}); fix the path or the pattern")
            elif not os.path.exists(r):
                self.err(w, f"input {p!r} does not exist (resolved to {r}); fix the path"
                            + (" (relative paths start at the pipeline file's directory; set relative_to = \"cwd\" "
                               "in [pipeline] to start at the current directory)" if not os.path.isabs(p) else ""))
            out.append(r)
        return out

    def _raw_at(self, path: Tuple) -> Any:
        v: Any = self.data
        for k in path:
            try:
                v = v[k]
            except (KeyError, IndexError, TypeError):
                return None
        return v

    # ---- runner options
    def runner_option(self, key: str, value: Any, where: Tuple) -> Any:
        if key == "columns":
            from ..io.columns import ROLES

            if not isinstance(value, dict):
                self.err(where, f"columns must be a table of role = column name, e.g. columns = {{ text = \"caption\" }}; "
                                f"got {_toml_type(value)}")
                return {}
            out = {}
            for role, name in value.items():
                if role not in ROLES:
                    self.err(where + (role,), f"unknown column role {role!r}{_suggest(role, ROLES)}; the roles are "
                                              f"{', '.join(ROLES)}")
                elif not isinstance(name, str):
                    self.err(where + (role,), f"columns.{role} must be a column name (a string), got {_toml_type(name)}")
                else:
                    out[role] = name
            return out
        if key == "on_error":
            if value not in ("fail", "skip"):
                self.err(where, f'on_error must be "fail" or "skip", got {_toml_literal(value)}')
            return value
        if key in ("threads", "batch_size"):
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                self.err(where, f"{key} must be an integer >= 1, got {_toml_literal(value)}")
            return value
        if key == "engine":
            if value not in ENGINES:
                self.err(where, f'engine must be "local" or "ray", got {_toml_literal(value)}')
            elif value == "ray":
                import importlib.util

                try:
                    ok = importlib.util.find_spec("fastcurate.runner.ray") is not None
                except Exception:
                    ok = False
                if not ok:
                    self.err(where, 'engine = "ray" needs the Ray engine (fastcurate.runner.ray), which this build '
                                    'of fastcurate does not have; use engine = "local"')
                elif importlib.util.find_spec("ray") is None:
                    self.err(where, "engine = \"ray\" needs Ray: pip install 'fastcurate[ray]'")
            return value
        raise AssertionError(key)

    # ---- the whole file
    def run(self) -> Pipeline:
        data = self.data
        for k in data:
            if k not in ("pipeline", "stage"):
                hint = _suggest(k, ["pipeline", "stage"])
                self.err((k,), f"unknown top-level key {k!r}{hint}: a pipeline file has a [pipeline] table and "
                               "[[stage]] tables")
        pl = data.get("pipeline", {})
        if not isinstance(pl, dict):
            self.err(("pipeline",), "pipeline must be a table: write [pipeline]")
            pl = {}
        pl = _expand(pl, ("pipeline",), self.issues, self.err)
        for k in pl:
            if k not in PIPELINE_KEYS:
                self.err(("pipeline", k), f"unknown key {k!r} in [pipeline]{_suggest(k, list(PIPELINE_KEYS))}; the keys "
                                          f"are {', '.join(PIPELINE_KEYS)}"
                         + (" (batch_size is set per [[stage]])" if k == "batch_size" else ""))
        for k in ("name", "description", "out"):
            if k in pl and not isinstance(pl[k], str):
                self.err(("pipeline", k), f"{k} must be a string, got {_toml_type(pl[k])}")
        if pl.get("relative_to", "file") not in ("file", "cwd"):
            self.err(("pipeline", "relative_to"), f'relative_to must be "file" or "cwd", got {_toml_literal(pl["relative_to"])}')
        defaults: Dict[str, Any] = {}
        for k in RUNNER_OPTIONS:
            if k in pl and k != "batch_size":
                defaults[k] = self.runner_option(k, pl[k], ("pipeline", k))
        if self.engine_override is not None:
            defaults["engine"] = self.runner_option("engine", self.engine_override, ())
        # input and out
        p_input: List[str] = []
        self.input_given = bool(self.input_override) or "input" in pl
        if self.input_override:
            p_input = [os.path.normpath(os.path.abspath(os.fspath(p))) for p in self.input_override]
            for p in p_input:
                if not glob.has_magic(p) and not os.path.exists(p):
                    self.issues.append(Issue(f"--input {p} does not exist"))
        elif "input" in pl:
            v = pl["input"]
            vals = [v] if isinstance(v, str) else v
            if not (isinstance(vals, list) and vals and all(isinstance(x, str) for x in vals)):
                self.err(("pipeline", "input"), "input must be a path or a non-empty list of paths")
            else:
                p_input = self.check_inputs(vals, ("pipeline", "input"))
        if self.out_override is not None:
            out = Path(os.path.abspath(os.fspath(self.out_override)))
        elif isinstance(pl.get("out"), str):
            out = Path(self.resolve(pl["out"]))
        else:
            out = Path()
            if "out" not in pl:
                self.err(("pipeline",) if "pipeline" in data else (), 'no run directory: add out = "runs/NAME" to [pipeline] '
                                                                      "(or pass --out DIR)")
        if out != Path() and out.exists() and not out.is_dir():
            self.err(("pipeline", "out"), f"out = {out} is a file; give a directory")
        name = pl.get("name") if isinstance(pl.get("name"), str) else (Path(self.source).stem if not self.from_dict else "pipeline")

        stages = data.get("stage")
        if stages is None:
            self.err((), "no stages: add [[stage]] tables, each with stage = \"NAME\" (the stages are "
                         f"{', '.join(sorted(_registry()))})")
            stages = []
        elif not (isinstance(stages, list) and all(isinstance(s, dict) for s in stages)):
            self.err(("stage",), "stage must be an array of tables: write each step as [[stage]] (two brackets)")
            stages = []
        steps: List[Step] = []
        ids: Dict[str, int] = {}
        for i, raw in enumerate(stages):
            st = self.step(i, raw, defaults, p_input, out, ids, len(steps))
            if st is not None:
                steps.append(st)
                ids.setdefault(st.id, st.index)
        self.fail_if_issues()
        self.check_order(steps, p_input)
        self.fail_if_issues()
        return Pipeline(source=self.source, name=str(name), out=out, input=p_input, steps=steps,
                        description=str(pl.get("description", "")), raw=data)

    def step(self, i: int, raw: Dict[str, Any], defaults: Dict[str, Any], p_input: List[str], out: Path,
             ids: Dict[str, int], n_ok: int) -> Optional[Step]:
        from ..stages import stage_class

        where = ("stage", i)
        index = i + 1
        n_issues = len(self.issues)
        raw = _expand(raw, where, self.issues, self.err)
        if len(self.issues) > n_issues:  # an unset variable: the values are not known, check nothing else
            return None
        sname = raw.get("stage")
        if sname is None:
            self.err(where, f"[[stage]] number {index} has no stage = \"NAME\"; the stages are "
                            f"{', '.join(sorted(_registry()))}")
            return None
        if not isinstance(sname, str):
            self.err(where + ("stage",), f"stage must be a string (a stage name), got {_toml_type(sname)}")
            return None
        if sname not in _registry():
            self.err(where + ("stage",), f"unknown stage {sname!r}{_suggest(sname, list(_registry()))}; the stages in "
                                         f"this build are {', '.join(sorted(_registry()))}")
            return None
        try:
            cls = stage_class(sname)
            info = stage_options(cls)
        except FastcurateError as e:  # an optional dependency of the stage module is missing
            self.err(where + ("stage",), f"stage {sname}: {e}")
            return None
        sid = raw.get("id", sname)
        if not isinstance(sid, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", sid):
            self.err(where + ("id",), f"id must be a name of letters, digits, '-', '_' or '.', got {_toml_literal(sid)}")
            sid = sname
        elif "id" in raw and sid in ids:
            self.err(where + ("id",), f"id {sid!r} is already the id of step {ids[sid]}; give each step its own id")
        label = f"{index:02d}-{sid}"
        run: Dict[str, Any] = dict(defaults)
        opts: Dict[str, Any] = {}
        for k, v in raw.items():
            if k in RESERVED_KEYS:
                continue
            if k in RUNNER_OPTIONS:
                run[k] = self.runner_option(k, v, where + (k,))
                continue
            if k not in info:
                known = list(info) + list(RUNNER_OPTIONS) + list(RESERVED_KEYS)
                self.err(where + (k,), f"unknown option {k!r} for stage {sname}{_suggest(k, known)}; its options are "
                                       f"{', '.join(info) or '(none)'}, and the runner's {', '.join(RUNNER_OPTIONS)} "
                                       f"(fastcurate run --stages lists them)")
                continue
            o = info[k]
            if o.annotation is Any and not self.from_dict:
                self.err(where + (k,), f"option {k!r} of stage {sname} takes a Python object and cannot be set in a "
                                       "pipeline file (pass it through fc.run_pipeline with a dict)")
                continue
            if not check_value(v, o.annotation):
                self.err(where + (k,), f"option {k!r} of stage {sname} must be {o.type}, got {_toml_type(v)} "
                                       f"{_toml_literal(v)}" + (f" ({o.doc})" if o.doc else ""))
                continue
            if o.is_path and isinstance(v, str):
                r = self.resolve(v)
                if not os.path.exists(r):
                    self.err(where + (k,), f"{k} = {_toml_literal(v)}: no such file or directory (resolved to {r}); "
                                           "fix the path" + (f" ({o.doc})" if o.doc else ""))
                    continue
                v = r
            opts[k] = v
        if self.engine_override is not None:
            run["engine"] = self.engine_override
        for k, o in info.items():
            if o.required and k not in opts and not any(i.line == self.line(where + (k,)) for i in self.issues):
                self.err(where, f"stage {sname} needs option {k} ({o.type}" + (f": {o.doc}" if o.doc else "") + f"); "
                                f"add {k} = ... to this [[stage]]")
        # input
        inputs: Optional[List[str]] = None
        input_step: Optional[int] = None
        if "input" in raw:
            v = raw["input"]
            vals = [v] if isinstance(v, str) else v
            if not (isinstance(vals, list) and vals and all(isinstance(x, str) for x in vals)):
                self.err(where + ("input",), "input must be an earlier step's id, or a path, or a list of paths")
            elif len(vals) == 1 and vals[0] in ids:
                input_step = ids[vals[0]]
            elif len(vals) == 1 and re.fullmatch(r"[A-Za-z0-9_.-]+", vals[0]) and vals[0] in _registry() \
                    and not os.path.exists(self.resolve(vals[0])):
                self.err(where + ("input",), f"input = {vals[0]!r}: no earlier step has that id; the earlier steps are "
                                             f"{', '.join(ids) or '(none)'}")
            else:
                inputs = self.check_inputs(vals, where + ("input",))
        elif i == 0:
            if not p_input and not self.input_given:
                self.err(where, "the first step has no input: add input = \"PATH\" to [pipeline] (or to this "
                                "[[stage]], or pass --input)")
            inputs = list(p_input)
        else:
            input_step = n_ok  # the previous step (1-based index == count of steps before)
            if n_ok != i:  # an earlier table failed: its index is unknown; the order check is skipped
                input_step = None
                inputs = []
        # build the stage only from a table without problems: its constructor checks the values
        stage = self.build(cls, sname, opts, where) if len(self.issues) == n_issues else None
        if stage is None:
            return None
        return Step(index=index, id=sid, name=sname, dir=out / label, stage=stage, options=opts, option_info=info,
                    columns=dict(run.get("columns") or {}), on_error=run.get("on_error", "fail"),
                    threads=run.get("threads"), batch_size=run.get("batch_size"), engine=run.get("engine", "local"),
                    inputs=inputs, input_step=input_step, line=self.line(where))

    def build(self, cls: Any, sname: str, opts: Dict[str, Any], where: Tuple) -> Any:
        """The stage object: its constructor checks the values (a bad value is reported at its line)."""
        try:
            return cls(**opts)
        except (FastcurateError, ValueError, TypeError, OSError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            key = next((k for k in opts if re.search(rf"(?<![\w.]){re.escape(k)}(?![\w])", msg)), None)
            self.err(where + ((key,) if key else ("stage",)), f"stage {sname}: {msg}")
            return None

    # ---- the order of the stages
    def check_order(self, steps: List[Step], p_input: List[str]) -> None:
        """Columns and files flow from step to step: a step's input holds the columns of the
        input it read plus the ones its stage adds, and the files its stage writes. A stage's
        ``consumes`` must be there, and its ``needs`` roles must resolve."""
        by_index = {s.index: s for s in steps}
        cols_out: Dict[int, Optional[Dict[str, Any]]] = {}
        files_out: Dict[int, Set[str]] = {}
        for s in steps:
            where = ("stage", s.index - 1)
            if s.input_step is not None:
                src = by_index.get(s.input_step)
                cols = cols_out.get(s.input_step)
                files = files_out.get(s.input_step, set())
                what = f"the output of step {src.label}" if src else "the previous step's output"
            else:
                cols, files, err = self.raw_input_columns(s.inputs or [])
                what = "its input" if s.inputs != p_input else "the pipeline's input"
                if err:
                    self.err(where + ("input",) if s.inputs != p_input else ("pipeline", "input"), err)
                    cols_out[s.index], files_out[s.index] = None, set()
                    continue
            # roles
            if cols is not None:
                self.check_roles(s, cols, where, what)
            for item in getattr(s.stage, "consumes", ()):
                alts = item.split("|")
                is_file = all(is_file_name(a) for a in alts)
                have = files if is_file else (set(cols) if cols is not None else None)
                if have is None or any(a in have for a in alts):
                    continue
                shown = " or ".join(alts)
                makers = _producers(item)
                earlier = [t for t in steps if t.index < s.index and any(a in getattr(t.stage, "produces", ()) for a in alts)]
                if is_file:
                    fix = (f"set input = \"{earlier[-1].id}\" in this [[stage]] to read the output of step "
                           f"{earlier[-1].label}, which writes it, or move this step right after it") if earlier else \
                          (f"put a {' or '.join(makers)} step right before this one" if makers else
                           "no registered stage writes it")
                    self.err(where + ("stage",), f"stage {s.name} reads {shown} from its input directory, but {what} "
                                                 f"holds none: {fix}")
                else:
                    fix = (f"put a {' or '.join(makers)} step before this one" if makers else
                           "no registered stage adds it; give an input that has it")
                    self.err(where + ("stage",), f"stage {s.name} needs the column {shown}, which {what} does not "
                                                 f"have and no step before it adds: {fix}")
            produced = [p for p in getattr(s.stage, "produces", ())]
            if cols is None:
                cols_out[s.index] = None
            else:
                nxt = dict(cols)
                nxt.setdefault("uid", "string")
                for p in produced:
                    if not is_file_name(p):
                        for alt in p.split("|"):
                            nxt[alt] = None
                cols_out[s.index] = nxt
            files_out[s.index] = {p for p in produced if is_file_name(p)}

    def raw_input_columns(self, inputs: List[str]) -> Tuple[Optional[Dict[str, Any]], Set[str], Optional[str]]:
        """The columns (name -> Arrow type) of the first shard of a raw input, and the files of
        the stage-output directories among the inputs; an error text when it cannot be read."""
        from ..io.discover import discover_shards, is_stage_output
        from ..io.readers import open_shard

        if not inputs:
            return None, set(), None
        try:
            shards = discover_shards(inputs)
            reader = open_shard(shards[0], 1024)
            schema = reader.schema
        except FastcurateError as e:
            return None, set(), f"the input cannot be read: {e}"
        files: Set[str] = set()
        for p in inputs:
            d = Path(p)
            if d.is_dir() and is_stage_output(d):
                files |= {f.name for f in d.iterdir() if f.is_file()}
        return {f.name: f.type for f in schema}, files, None

    def check_roles(self, s: Step, cols: Dict[str, Any], where: Tuple, what: str) -> None:
        import pyarrow as pa

        from ..io.columns import resolve_roles

        schema = pa.schema([pa.field(k, v if isinstance(v, pa.DataType) else pa.null()) for k, v in cols.items()])
        given: Dict[str, Optional[str]] = {r: None for r in ("id", "text", "image", "url", "width", "height")}
        given.update(s.columns)
        try:
            resolve_roles(schema, given, tuple(s.stage.needs), tuple(s.stage.wants), f"{what}")
        except FastcurateError as e:
            msg = str(e).replace("--text-column NAME", "columns = { text = \"NAME\" }")
            msg = re.sub(r"--(\w+)-column NAME", lambda m: f"columns = {{ {m.group(1)} = \"NAME\" }}", msg)
            msg = re.sub(r"pass --(\w+)-column", lambda m: f"set columns = {{ {m.group(1)} = \"NAME\" }}", msg)
            key = ("columns",) if s.columns else ("stage",)
            self.err(where + key, f"stage {s.name}: {msg}")
