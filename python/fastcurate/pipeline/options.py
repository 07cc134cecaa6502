"""A stage's pipeline options, read from its class: the constructor's keyword arguments (names,
type annotations, defaults) and their descriptions (the ``Args:`` section of the constructor's or
the class's docstring). A new stage needs no pipeline code: whatever its constructor takes, a
``[[stage]]`` table can set, with the same names, checked against the same types.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import typing
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Type

__all__ = ["Option", "stage_options", "check_value", "type_text", "RUNNER_OPTIONS", "RESERVED_KEYS", "REQUIRED"]

REQUIRED = inspect.Parameter.empty

# The runner's options, settable per stage (and in [pipeline] as defaults for every stage).
# name -> (type text, description)
RUNNER_OPTIONS: Dict[str, Tuple[str, str]] = {
    "columns": ("table of role = column name",
                "the column per role (id, text, image, url, width, height); default: the role's usual names"),
    "on_error": ('"fail" or "skip"', "a bad shard stops the run (fail) or is skipped and recorded (skip)"),
    "threads": ("integer >= 1", "threads for the stage's kernels (default: all cores); results do not depend on it"),
    "batch_size": ("integer >= 1", "rows per batch and per output row group (default: the stage's own)"),
    "engine": ('"local" or "ray"', "where the stage's shards run: this machine (local) or a Ray cluster (ray: Ray actors, one shard per call)"),
}
# Keys of a [[stage]] table that are the pipeline's, not the stage's.
RESERVED_KEYS: Dict[str, str] = {
    "stage": "the stage to run (a registered stage name)",
    "id": "a name for this step (default: the stage name): names its directory, and `input` and --from use it",
    "input": "where this stage reads: an earlier step's id, or paths (default: the previous step's output; "
             "the first step reads the pipeline's input)",
}


@dataclass
class Option:
    """One constructor keyword argument of a stage class."""

    name: str
    annotation: Any  # a typing object; None when the annotation could not be resolved (anything goes)
    default: Any  # REQUIRED when the argument has no default
    doc: str
    is_path: bool

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def type(self) -> str:
        return type_text(self.annotation)


def _arg_docs(doc: Optional[str]) -> Dict[str, str]:
    """The ``name: description`` entries of a Google-style ``Args:`` section (``a, b: ...``
    documents both; continuation lines are joined)."""
    out: Dict[str, str] = {}
    if not doc:
        return out
    in_args = False
    base: Optional[int] = None
    names: List[str] = []
    for line in inspect.cleandoc(doc).splitlines():
        if re.match(r"^\s*(Args|Arguments|Parameters)\s*:\s*$", line):
            in_args, base, names = True, None, []
            continue
        if not in_args or not line.strip():
            continue
        ind = len(line) - len(line.lstrip())
        if ind == 0:  # the next section
            in_args = False
            continue
        m = re.match(r"^([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*(?:\([^)]*\))?\s*:\s*(.*)$", line.strip())
        if m and (base is None or ind <= base):
            base = ind
            names = [n.strip() for n in m.group(1).split(",")]
            for n in names:
                out[n] = m.group(2).strip()
        elif names:
            for n in names:
                out[n] = (out[n] + " " + line.strip()).strip()
    return out


def _resolve_annotations(fn: Any) -> Dict[str, Any]:
    """The annotations of ``fn`` as typing objects; one that cannot be evaluated (a name imported
    only for type checkers) is left out (then any value is accepted, and the stage checks it)."""
    try:
        return typing.get_type_hints(fn)
    except Exception:
        pass
    glb = getattr(sys.modules.get(fn.__module__), "__dict__", {})
    out = {}
    for name, ann in getattr(fn, "__annotations__", {}).items():
        if isinstance(ann, str):
            try:
                ann = eval(ann, dict(glb), {})  # noqa: S307 - the stage's own source annotation
            except Exception:
                continue
        out[name] = ann
    return out


def _mentions_path(tp: Any) -> bool:
    if tp is os.PathLike or getattr(tp, "__origin__", None) is os.PathLike:
        return True
    if isinstance(tp, typing.ForwardRef):
        return "PathLike" in tp.__forward_arg__
    return any(_mentions_path(a) for a in getattr(tp, "__args__", ()) or ())


def stage_options(cls: Type) -> Dict[str, Option]:
    """The pipeline options of stage class ``cls``: its constructor's named arguments (those
    starting with ``_``, ``*args`` and ``**kwargs`` excepted), in order."""
    init = cls.__init__
    if init is object.__init__:
        return {}
    sig = inspect.signature(init)
    hints = _resolve_annotations(init)
    docs = _arg_docs(init.__doc__)
    for k, v in _arg_docs(cls.__doc__).items():
        docs.setdefault(k, v)
    out: Dict[str, Option] = {}
    for name, prm in list(sig.parameters.items())[1:]:
        if prm.kind in (prm.VAR_POSITIONAL, prm.VAR_KEYWORD) or name.startswith("_"):
            continue
        ann = hints.get(name)
        raw = prm.annotation if prm.annotation is not prm.empty else ""
        is_path = _mentions_path(ann) if ann is not None else "PathLike" in str(raw) or "Path" in str(raw)
        out[name] = Option(name, ann, prm.default, docs.get(name, ""), is_path)
    return out


_NONE = type(None)


def _origin(tp: Any) -> Any:
    return typing.get_origin(tp)


def check_value(value: Any, tp: Any) -> bool:
    """True when the TOML ``value`` fits the annotation ``tp`` (None: anything). TOML has no null,
    so an ``Optional`` argument is simply left out; integers fit ``float``; a path is a string."""
    if tp is None or tp is Any or isinstance(tp, (typing.TypeVar, typing.ForwardRef, str)):
        return True
    origin = _origin(tp)
    if origin is typing.Union or (sys.version_info >= (3, 10) and origin is getattr(__import__("types"), "UnionType", None)):
        return any(check_value(value, a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if tp is _NONE:
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp is os.PathLike or origin is os.PathLike:
        return isinstance(value, str)
    import collections.abc as cabc

    if origin in (list, tuple, set, frozenset, cabc.Sequence, cabc.Iterable, cabc.Collection, cabc.MutableSequence):
        if not isinstance(value, (list, tuple)):
            return False
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        if origin is tuple and len(args) > 1 and Ellipsis not in typing.get_args(tp):
            return len(value) == len(args) and all(check_value(v, a) for v, a in zip(value, args))
        return all(check_value(v, args[0]) for v in value) if args else True
    if origin in (dict, cabc.Mapping, cabc.MutableMapping):
        if not isinstance(value, dict):
            return False
        kv = typing.get_args(tp)
        return all(check_value(v, kv[1]) for v in value.values()) if len(kv) == 2 else True
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True  # an annotation this checker does not know: the stage's own checks decide


def type_text(tp: Any) -> str:
    """A short human description of an annotation, for messages and ``fastcurate run --stages``."""
    if tp is None or tp is Any:
        return "any"
    origin = _origin(tp)
    if origin is typing.Union or (sys.version_info >= (3, 10) and origin is getattr(__import__("types"), "UnionType", None)):
        arms = [a for a in typing.get_args(tp) if a is not _NONE]
        texts = list(dict.fromkeys(type_text(a) for a in arms))
        if "path" in texts and "string" in texts:
            texts.remove("string")
        return " or ".join(texts)
    if origin is typing.Literal:
        return " or ".join(repr(a).replace("'", '"') for a in typing.get_args(tp))
    if tp is bool:
        return "boolean"
    if tp is int:
        return "integer"
    if tp is float:
        return "number"
    if tp is str:
        return "string"
    if tp is os.PathLike or origin is os.PathLike or isinstance(tp, typing.ForwardRef):
        return "path"
    import collections.abc as cabc

    if origin in (list, tuple, set, frozenset, cabc.Sequence, cabc.Iterable, cabc.Collection, cabc.MutableSequence):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return f"list of {type_text(args[0])}" if args else "list"
    if origin in (dict, cabc.Mapping, cabc.MutableMapping):
        return "table"
    return getattr(tp, "__name__", str(tp))
