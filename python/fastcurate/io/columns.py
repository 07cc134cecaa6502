"""Column roles and the row id: one set of names, one flag per role, one rule for every stage.

A stage asks for *roles* (the caption, the image, ...) rather than column names. Each role is
resolved per shard: the column the user named with the role's flag, else the first present of the
role's default list. The lists cover the common writers: img2dataset (``caption``, ``key``,
``url``, ``width``/``height``, ``original_width``/``original_height``), LAION (``TEXT``, ``URL``),
DataComp (``uid``, ``text``), WebDataset tars (read into ``__key__``, ``text``, ``image`` ...),
and fastcurate's own outputs (``uid`` first, so stage outputs always join on it).

The row id (docs/runner.md): the id column if there is one (``uid``, ``key``, ``__key__``, ``id``
or ``--id-column``), else the image URL, else ``<file stem>:<row>``. It is written as the string
column ``uid`` of every stage output, so the outputs of all stages join on ``uid``. Integer ids
become their decimal string; binary ids their hex string. The last fallback depends on the shard
layout, so a pool without ids or URLs gives ids that do not survive re-sharding (a warning says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import InputError, InputTypeError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ROLES", "ROLE_FLAGS", "ROLE_CANDIDATES", "Roles", "resolve_roles", "UID"]

UID = "uid"

ROLES = ("id", "text", "image", "url", "width", "height")

ROLE_FLAGS: Mapping[str, str] = {
    "id": "--id-column",
    "text": "--text-column",
    "image": "--image-column",
    "url": "--url-column",
    "width": "--width-column",
    "height": "--height-column",
}

ROLE_CANDIDATES: Mapping[str, Tuple[str, ...]] = {
    "id": ("uid", "key", "__key__", "id"),
    "text": ("TEXT", "caption", "text", "txt"),
    # binary columns (bytes), Hugging Face image structs {bytes, path}, or string paths
    "image": ("image", "jpg", "jpeg", "png", "webp", "image_bytes", "img", "image_path", "path", "filepath", "file"),
    "url": ("URL", "url", "image_url"),
    # DataComp's size filter is on the original size: prefer img2dataset's original_* columns
    "width": ("original_width", "width", "WIDTH"),
    "height": ("original_height", "height", "HEIGHT"),
}

_ROLE_WHAT = {"id": "id", "text": "caption (text)", "image": "image", "url": "URL", "width": "image width",
              "height": "image height"}


@dataclass(frozen=True)
class Roles:
    """The column that plays each role in one shard (absent roles are missing from ``columns``)."""

    columns: Dict[str, str] = field(default_factory=dict)
    id_source: str = "column"  # "column" | "url" | "row" (see the module docstring)

    def get(self, role: str) -> Optional[str]:
        return self.columns.get(role)

    def __contains__(self, role: str) -> bool:
        return role in self.columns


def _base_type(t: "pa.DataType") -> "pa.DataType":
    import pyarrow as pa

    return t.value_type if pa.types.is_dictionary(t) else t


def _check_type(role: str, name: str, t: "pa.DataType", where: str) -> None:
    import pyarrow as pa

    t = _base_type(t)
    is_str = pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", lambda _: False)(t)
    is_bin = pa.types.is_binary(t) or pa.types.is_large_binary(t) or getattr(pa.types, "is_binary_view", lambda _: False)(t)
    flag = ROLE_FLAGS[role]
    if role in ("text", "url") and not (is_str or pa.types.is_null(t)):
        raise InputTypeError(f"{where}: {_ROLE_WHAT[role]} column {name!r} has type {t}, not string; "
                             f"pick another column with {flag} NAME")
    if role == "id" and not (is_str or is_bin or pa.types.is_integer(t) or pa.types.is_null(t)):
        raise InputTypeError(f"{where}: id column {name!r} has type {t}; ids must be strings or integers; "
                             f"pick another column with {flag} NAME")
    if role == "image" and not (is_bin or is_str or pa.types.is_struct(t) or pa.types.is_null(t)):
        raise InputTypeError(f"{where}: image column {name!r} has type {t}; it must hold bytes, paths or "
                             f"{{bytes, path}} structs; pick another column with {flag} NAME")
    if role in ("width", "height") and not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t)):
        raise InputTypeError(f"{where}: {_ROLE_WHAT[role]} column {name!r} has type {t}, not a number; "
                             f"pick another column with {flag} NAME")


def resolve_roles(schema: "pa.Schema", given: Mapping[str, Optional[str]], needs: Sequence[str],
                  wants: Sequence[str], where: str) -> Roles:
    """The columns of ``schema`` that play the roles a stage ``needs`` (an error when absent) and
    ``wants`` (used when present). ``given`` holds the user's names per role (None: the defaults).

    The id role is always resolved (it makes the ``uid``); errors name the file, its columns and
    the flag that picks one.
    """
    names: List[str] = list(schema.names)
    cols: Dict[str, str] = {}
    for role in dict.fromkeys(["id", *needs, *wants, *[r for r, v in given.items() if v]]):
        if role not in ROLE_FLAGS:
            raise InputError(f"unknown column role {role!r}; the roles are {list(ROLES)}")
        name = given.get(role)
        if name is not None:
            if name not in names:
                raise InputError(f"{where}: no {_ROLE_WHAT[role]} column {name!r}; the columns are {names}; "
                                 f"pass {ROLE_FLAGS[role]} NAME")
        else:
            name = next((c for c in ROLE_CANDIDATES[role] if c in names), None)
        if name is None:
            if role in needs:
                raise InputError(
                    f"{where}: none of the usual {_ROLE_WHAT[role]} columns {list(ROLE_CANDIDATES[role])} is "
                    f"present; the columns are {names}; pass {ROLE_FLAGS[role]} NAME")
            continue
        _check_type(role, name, schema.field(name).type, where)
        cols[role] = name
    if "id" in cols:
        source = "column"
    else:
        url = cols.get("url") or given.get("url") or next((c for c in ROLE_CANDIDATES["url"] if c in names), None)
        if url is not None:
            _check_type("url", url, schema.field(url).type, where)
            cols["id"] = url
            source = "url"
        else:
            source = "row"
    return Roles(cols, source)
