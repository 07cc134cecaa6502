"""What a report reads: the stage output directories of a run and the rows behind sampled uids.

A report never loads a whole run: it reads ``stats.json`` / ``timings.json`` and the stages'
small files, samples drop rows reason by reason (stopping as soon as it has enough), and looks up
the captions and images of the sampled uids in the one input shard a drop file belongs to (a drop
file ``drops/part-NNNNN.parquet`` lists rows of input shard NNNNN), reading from Parquet only the
row groups that hold them.
"""

from __future__ import annotations

import base64
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError


__all__ = ["RunView", "StageView", "RowInfo", "open_run", "thumbnail", "part_index"]


@dataclass
class RowInfo:
    """What the report shows of one row: its caption and a thumbnail (a data URI), when known."""

    uid: str
    text: Optional[str] = None
    thumb: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)


def part_index(path: Path) -> Optional[int]:
    m = re.match(r"part-(\d+)\.parquet$", path.name)
    return int(m.group(1)) if m else None


def thumbnail(value: Any, base: Optional[Path], px: int = 96, quality: int = 70) -> Optional[str]:
    """A JPEG data URI of ``value`` (image bytes, a path, or a ``{bytes, path}`` struct) fitted in
    ``px`` × ``px``; None when there is no image or it does not decode (the report then shows the
    caption alone: it never emits an image that does not load)."""
    try:
        from PIL import Image
    except ImportError:
        return None
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if value is None:
        return None
    try:
        if isinstance(value, (bytes, bytearray, memoryview)):
            if not len(value):
                return None
            im: Any = Image.open(io.BytesIO(bytes(value)))
        elif isinstance(value, str):
            p = Path(value)
            if not p.is_absolute() and base is not None:
                p = base / p
            if not p.is_file():
                return None
            im = Image.open(p)
        else:
            return None
        im.draft("RGB", (px * 2, px * 2))  # JPEG: decode at a reduced DCT scale (a 12 MP photo is never decoded whole)
        im.thumbnail((px, px))
        if im.mode != "RGB":
            im = im.convert("RGB")
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality, optimize=True)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    except Exception:  # noqa: BLE001 - any undecodable image: shown without a thumbnail
        return None


def _read_json(p: Path) -> Dict[str, Any]:
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


class StageView:
    """One stage output directory (finished, or unfinished: then ``stats`` is empty)."""

    def __init__(self, d: Path, run: "RunView", label: Optional[str] = None):
        self.dir = d
        self.run = run
        self.label = label or d.name
        self.stats: Dict[str, Any] = _read_json(d / "stats.json")
        self.timings: Dict[str, Any] = _read_json(d / "timings.json")
        man = self.stats.get("manifest") or _read_json(d / "_work" / "manifest.json")
        self.manifest: Dict[str, Any] = man
        self.name: str = self.stats.get("stage") or man.get("stage") or re.sub(r"^\d+-", "", d.name)
        self.finished = bool(self.stats)

    def __repr__(self) -> str:
        return f"StageView({self.label})"

    @property
    def anchor(self) -> str:
        return "s-" + re.sub(r"[^A-Za-z0-9_-]", "-", self.label)

    @property
    def stage_stats(self) -> Dict[str, Any]:
        v = self.stats.get(self.name)
        return v if isinstance(v, dict) else {}

    def parts(self) -> List[Path]:
        return sorted(self.dir.glob("part-*.parquet"))

    def drop_parts(self) -> List[Path]:
        return sorted((self.dir / "drops").glob("part-*.parquet"))

    def file(self, name: str) -> Optional[Path]:
        p = self.dir / name
        return p if p.is_file() else None

    def input_files(self) -> List[Path]:
        return [Path(i["file"]) for i in self.manifest.get("inputs", [])]

    def given_columns(self) -> Dict[str, Optional[str]]:
        return dict(self.manifest.get("columns", {}))

    def input_stage(self) -> Optional["StageView"]:
        """The stage whose output this stage read (all its inputs in one stage output directory)."""
        dirs = {f.parent for f in self.input_files()}
        if len(dirs) != 1:
            return None
        d = dirs.pop()
        for s in self.run.stages:
            if s.dir.resolve() == d.resolve():
                return s
        from ..io.discover import is_stage_output

        if d.is_dir() and is_stage_output(d):
            return self.run.extra_stage(d)
        return None

    def upstream(self) -> List["StageView"]:
        """This stage's input stage, its input stage, ... (nearest first)."""
        out: List[StageView] = []
        s = self.input_stage()
        while s is not None and s not in out:
            out.append(s)
            s = s.input_stage()
        return out

    def find_file(self, name: str) -> Optional[Path]:
        """``name`` in this stage's directory, else in the nearest upstream stage's."""
        for s in [self] + self.upstream():
            p = s.file(name)
            if p is not None:
                return p
        return None

    # ---- samples of dropped rows
    def sample_drops(self, per_reason: int, reasons: Optional[Sequence[str]] = None
                     ) -> Dict[str, List[Tuple[str, Optional[str], Optional[int]]]]:
        """Up to ``per_reason`` dropped rows per reason: (uid, detail, drop part index), read
        file by file until every reason with a count has enough."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        counts = self.stats.get("rows_dropped", {})
        want = [r for r in (reasons or counts) if counts.get(r, 0) and r != "bad_shard"] if counts else list(reasons or [])
        got: Dict[str, List[Tuple[str, Optional[str], Optional[int]]]] = {r: [] for r in want}
        if not want:
            return got
        for f in self.drop_parts():
            need = [r for r in want if len(got[r]) < min(per_reason, counts.get(r, per_reason) or per_reason)]
            if not need:
                break
            try:
                t = pq.read_table(f, columns=["uid", "reason", "detail"])
            except Exception:  # noqa: BLE001 - a damaged drop file: the report shows what it can
                continue
            idx = part_index(f)
            reason = t.column("reason")
            for r in need:
                m = pc.equal(reason, r)
                sub = t.filter(m).slice(0, per_reason - len(got[r]))
                for u, d in zip(sub.column("uid").to_pylist(), sub.column("detail").to_pylist()):
                    got[r].append((u, d, idx))
        return got


class RunView:
    """A pipeline run directory (numbered stage subdirectories, ``pipeline.json``) or one stage's
    output directory, with a row cache shared by the sections."""

    def __init__(self, root: Path, stages: List[StageView], meta: Dict[str, Any], *, max_examples: int = 6,
                 thumb_px: int = 96, seed: int = 0):
        self.root = root
        self.stages = stages
        self.meta = meta
        self.max_examples = max_examples
        self.thumb_px = thumb_px
        self.seed = seed
        self._extra: Dict[Path, StageView] = {}
        self._rows: Dict[str, RowInfo] = {}
        self._uids: Dict[Path, Any] = {}  # a Parquet file's uid column, read once for every section
        self.notes: List[str] = []

    def extra_stage(self, d: Path) -> StageView:
        """A stage output directory outside the run (the input of a single-stage report)."""
        key = d.resolve()
        if key not in self._extra:
            self._extra[key] = StageView(d, self)
        return self._extra[key]

    def after(self, stage: StageView) -> List[StageView]:
        return self.stages[self.stages.index(stage) + 1:] if stage in self.stages else []

    # ---- rows by uid
    def rows(self, uids: Iterable[str], files: Sequence[Path], columns: Optional[Dict[str, Optional[str]]] = None,
             thumbs: bool = True) -> Dict[str, RowInfo]:
        """Caption and thumbnail of each of ``uids``, looked up in ``files`` (shards in any
        format; a stage's parts or its inputs) in order, stopping when all are found; cached."""
        want = [u for u in dict.fromkeys(uids) if u is not None]
        out = {u: c for u in want if (c := self._rows.get(u)) is not None and (c.extra.get("thumbs") or not thumbs)}
        todo = set(want) - set(out)
        for f in files:
            if not todo:
                break
            if not Path(f).is_file():
                continue
            try:
                found = _lookup(Path(f), todo, columns or {}, self.thumb_px if thumbs else 0, self._uids)
            except Exception as e:  # noqa: BLE001 - an unreadable input: the report says so and goes on
                self.notes.append(f"could not read rows from {f}: {e}")
                continue
            for u, r in found.items():
                self._rows[u] = r
                out[u] = r
            todo -= set(found)
        return out

    def locate(self, files: Sequence[Path], uids: Sequence[str]) -> Dict[str, Tuple[Path, int]]:
        """Where each of ``uids`` is among the Parquet ``files`` (file, row), from the cached uid
        columns; uids found nowhere are left out."""
        import pyarrow as pa
        import pyarrow.compute as pc

        vs = pa.array(sorted(set(uids)), pa.string())
        out: Dict[str, Tuple[Path, int]] = {}
        for f in files:
            if len(out) == len(vs):
                break
            uid = _uid_column(Path(f), {}, self._uids)
            hit = np.flatnonzero(pc.fill_null(pc.is_in(uid, value_set=vs), False).to_numpy(zero_copy_only=False))
            for u, j in zip(uid.take(pa.array(hit)).to_pylist(), hit.tolist()):
                out.setdefault(u, (Path(f), j))
        return out

    def stage_rows(self, stage: StageView, uids: Iterable[str], thumbs: bool = True,
                   include_inputs: bool = True) -> Dict[str, RowInfo]:
        """Rows of ``uids`` from ``stage``'s kept rows, then from its inputs (dropped rows)."""
        uids = list(uids)
        files = stage.parts() + (stage.input_files() if include_inputs else [])
        return self.rows(uids, files, stage.given_columns(), thumbs)


def _uid_column(path: Path, given: Dict[str, Optional[str]], cache: Dict[Path, Any]) -> Any:
    """The ``uid`` of every row of a Parquet file, as the runner makes it (cached)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from ..io.columns import resolve_roles
    from ..io.discover import ShardRef
    from ..runner.shard import make_uid

    key = path.resolve()
    if key in cache:
        return cache[key]
    pf = pq.ParquetFile(path)
    schema = pf.schema_arrow
    if "uid" in schema.names:
        uid = pf.read(columns=["uid"]).column(0).combine_chunks()
        if not pa.types.is_string(uid.type):
            uid = pc.cast(uid, pa.string())
    else:
        g: Dict[str, Optional[str]] = {r: None for r in ("id", "text", "image", "url", "width", "height")}
        g.update({k: v for k, v in given.items() if k in g})
        roles = resolve_roles(schema, g, (), (), str(path))
        if roles.id_source == "row":
            uid = pa.array([f"{path.name.split('.')[0]}:{i}" for i in range(pf.metadata.num_rows)], pa.string())
        else:
            col = roles.columns["id"]
            arr = pf.read(columns=[col]).column(0).combine_chunks()
            uid = make_uid(pa.RecordBatch.from_arrays([arr], names=[col]), roles, ShardRef(0, path, "parquet"), 0)
    cache[key] = uid
    return uid


def _lookup(path: Path, uids: set, given: Dict[str, Optional[str]], px: int,
            cache: Optional[Dict[Path, Any]] = None) -> Dict[str, RowInfo]:
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..io.columns import resolve_roles
    from ..io.discover import ShardRef, shard_format

    fmt = shard_format(path) or "parquet"
    value_set = pa.array(sorted(uids), pa.string())
    out: Dict[str, RowInfo] = {}
    g: Dict[str, Optional[str]] = {r: None for r in ("id", "text", "image", "url", "width", "height")}
    g.update({k: v for k, v in given.items() if k in g})
    shard = ShardRef(0, path, fmt)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
        roles = resolve_roles(schema, g, (), ("text", "image"), str(path))
        uid = _uid_column(path, given, cache if cache is not None else {})
        hit = np.flatnonzero(pc.fill_null(pc.is_in(uid, value_set=value_set), False).to_numpy(zero_copy_only=False))
        if not len(hit):
            return out
        cols = [c for c in (roles.get("text"), roles.get("image") if px else None) if c]
        starts = np.cumsum([0] + [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)])
        groups = np.searchsorted(starts, hit, side="right") - 1
        uid_list = uid.take(pa.array(hit)).to_pylist()
        k = 0
        for rg in np.unique(groups):
            local = hit[groups == rg] - starts[rg]
            t = pf.read_row_group(int(rg), columns=cols) if cols else None
            for j in local:
                u = uid_list[k]
                k += 1
                out[u] = _row_info(u, t, int(j), roles, path.parent, px)
        return out
    from ..io.readers import open_shard
    from ..runner.shard import _valid_batches

    reader = open_shard(shard, 4096)
    roles = resolve_roles(reader.schema, g, (), ("text", "image"), str(path))
    cols = list(dict.fromkeys(c for c in (roles.get("id"), roles.get("text"), roles.get("image")) if c))
    for b in _valid_batches(reader.batches(cols), roles, shard, lambda _u, _r: None):
        m = pc.fill_null(pc.is_in(b.uid, value_set=value_set), False).to_numpy(zero_copy_only=False)
        for j in np.flatnonzero(m):
            u = b.uid[int(j)].as_py()
            out[u] = _row_info(u, pa.Table.from_batches([b.data]), int(j), roles, path.parent, px)
        if len(out) == len(uids):
            break
    return out


def _row_info(uid: str, t: Any, j: int, roles: Any, base: Path, px: int) -> RowInfo:
    text = img = None
    if t is not None:
        tc, ic = roles.get("text"), roles.get("image")
        if tc and tc in t.column_names:
            text = t.column(tc)[j].as_py()
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
        if ic and ic in t.column_names and px:
            img = thumbnail(t.column(ic)[j].as_py(), base, px)
    return RowInfo(uid, text if isinstance(text, str) else None, img, {"thumbs": bool(px)})


def open_run(path: Any, *, max_examples: int = 6, thumb_px: int = 96, seed: int = 0) -> RunView:
    """A run directory (``pipeline.json`` or numbered stage subdirectories) or one stage output."""
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"{root}: no such directory; give a pipeline run directory or a stage output directory")
    meta = _read_json(root / "pipeline.json")
    stages: List[StageView] = []
    run = RunView(root, stages, meta, max_examples=max_examples, thumb_px=thumb_px, seed=seed)
    from ..io.discover import is_stage_output

    if is_stage_output(root):
        stages.append(StageView(root, run, label=root.name))
    else:
        order = [s.get("dir") for s in meta.get("steps", [])] if meta else []
        subs = [d for d in root.iterdir() if d.is_dir() and is_stage_output(d)]
        if order:
            rank = {n: i for i, n in enumerate(order)}
            subs = [d for d in subs if d.name in rank]
            subs.sort(key=lambda d: rank[d.name])
            missing = [n for n in order if not (root / n).is_dir()]
            if missing:
                run.notes.append(f"steps not run yet: {', '.join(missing)}")
        else:
            subs.sort(key=lambda d: d.name)
        stages.extend(StageView(d, run) for d in subs)
    if not stages:
        raise InputError(f"{root}: holds no stage output (no stats.json here or in its subdirectories); give the "
                         "directory of a `fastcurate run` or of one stage's --out")
    return run
