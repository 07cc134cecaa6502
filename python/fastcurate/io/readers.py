"""Shard readers: Parquet, WebDataset tars, CSV/TSV and JSONL, all as Arrow record batches.

Every reader streams (memory holds about one batch, whatever the shard size), reports the schema of
the rows it yields before reading them, and raises :class:`~fastcurate.errors.FormatError` naming
the file and what is wrong with it. How a WebDataset sample or a header-less CSV becomes a row is
specified in docs/runner.md.
"""

from __future__ import annotations

import csv
import json
import os
import re
import tarfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ..errors import FormatError
from .discover import ShardRef
from .prefetch import prefetch

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ShardReader", "open_shard", "IMAGE_EXTS", "WDS_JSON_FIELDS"]

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")
# Scalar fields of a WebDataset sample's .json member that become columns (img2dataset, DataComp).
WDS_JSON_FIELDS = {"uid": "string", "key": "string", "url": "string", "caption": "string", "width": "int64",
                   "height": "int64", "original_width": "int64", "original_height": "int64", "sha256": "string"}


class ShardReader:
    """Reads one shard as record batches. ``schema`` is known before the first batch; ``num_rows``
    is known up front for Parquet (the footer) and None for streamed formats."""

    schema: "pa.Schema"
    num_rows: Optional[int]

    def __init__(self, ref: ShardRef, batch_size: int):
        self.ref = ref
        self.path = ref.path
        self.batch_size = batch_size

    def batches(self, columns: Optional[Sequence[str]] = None) -> Iterator["pa.RecordBatch"]:
        raise NotImplementedError

    def never_null(self, column: str) -> bool:
        """True only when the shard's own metadata proves that ``column`` holds no null (Parquet
        statistics); False when it may hold one or when nothing says."""
        return False


def _pandas_index_columns(schema: "pa.Schema") -> List[str]:
    meta = schema.metadata or {}
    raw = meta.get(b"pandas")
    if not raw:
        return []
    try:
        idx = json.loads(raw).get("index_columns", [])
    except ValueError:
        return []
    return [c for c in idx if isinstance(c, str) and c in schema.names]


def _strip(schema: "pa.Schema", drop: Sequence[str]) -> "pa.Schema":
    import pyarrow as pa

    return pa.schema([f for f in schema if f.name not in drop])  # and no schema metadata


class ParquetReader(ShardReader):
    def __init__(self, ref: ShardRef, batch_size: int):
        super().__init__(ref, batch_size)
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            self._pf = pq.ParquetFile(self.path)
        except (pa.ArrowException, OSError) as e:
            raise FormatError(f"{self.path}: not a readable Parquet file ({_short(e)}); re-download or remove it") from None
        full = self._pf.schema_arrow
        # A pandas index saved by DataFrame.to_parquet() is not data: never pass it on.
        self._drop = _pandas_index_columns(full)
        self.schema = _strip(full, self._drop)
        self.num_rows = int(self._pf.metadata.num_rows)

    def batches(self, columns: Optional[Sequence[str]] = None) -> Iterator["pa.RecordBatch"]:
        import pyarrow as pa

        cols = list(columns) if columns is not None else list(self.schema.names)
        rows = 0
        try:
            # Decoding runs a batch ahead on a background thread (pyarrow releases the GIL), so it
            # overlaps the stage's work on the previous batch.
            for b in prefetch(self._pf.iter_batches(batch_size=self.batch_size, columns=cols, use_threads=True)):
                rows += b.num_rows
                yield b.replace_schema_metadata(None)
        except (pa.ArrowException, OSError) as e:
            raise FormatError(f"{self.path}: unreadable Parquet data after {rows} rows ({_short(e)}); "
                              "the file is damaged: re-download or remove it") from None
        if rows != self.num_rows:
            raise FormatError(f"{self.path}: read {rows} rows but the footer says {self.num_rows}")

    def never_null(self, column: str) -> bool:
        # A top-level primitive column: one leaf whose path is its name. Every row group must carry
        # a null count, and all must be 0; a writer that wrote no statistics proves nothing.
        md = self._pf.metadata
        leaf = [i for i in range(md.num_columns) if md.schema.column(i).path == column]
        if len(leaf) != 1:
            return False
        for g in range(md.num_row_groups):
            st = md.row_group(g).column(leaf[0]).statistics
            if st is None or not st.has_null_count or st.null_count != 0:
                return False
        return True


def _short(e: BaseException) -> str:
    s = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return s[:300]


# ------------------------------------------------------------------------------------- WebDataset

def _split_key(name: str) -> Tuple[str, str]:
    # WebDataset convention: the key is the path up to the first dot of the basename.
    d, base = os.path.split(name)
    if "." not in base:
        return name, ""
    stem, ext = base.split(".", 1)
    return (os.path.join(d, stem) if d else stem), ext.lower()


class WebDatasetReader(ShardReader):
    """A tar of samples (members sharing a key are adjacent). One row per sample:

    * ``uid``: the sample's json ``uid``, else its json ``key``, else the tar key (never null);
    * ``__key__``: the tar key; ``image``: the bytes of the first image member (``jpg``, ``png``,
      ...), ``image_format`` its extension; ``txt``: the ``.txt`` member, else the json ``caption``;
      ``json``: the raw ``.json`` member;
    * the scalar fields of :data:`WDS_JSON_FIELDS` that any sample's json holds (null where a
      sample lacks one).
    """

    def __init__(self, ref: ShardRef, batch_size: int):
        super().__init__(ref, batch_size)
        import pyarrow as pa

        self.num_rows = None
        found = self._json_keys()
        fields = [("uid", pa.string()), ("__key__", pa.string()), ("image", pa.binary()), ("image_format", pa.string()),
                  ("txt", pa.string()), ("json", pa.string())]
        self._json_fields = [k for k in WDS_JSON_FIELDS if k in found and k not in ("uid", "caption")]
        for k in self._json_fields:
            fields.append((k, pa.string() if WDS_JSON_FIELDS[k] == "string" else pa.int64()))
        self.schema = pa.schema(fields)

    def _json_keys(self) -> set:
        """The json fields any sample holds: a seek over the member headers, reading only the
        small .json members (an uncompressed tar needs no pass over the image bytes)."""
        keys: set = set()
        try:
            with tarfile.open(self.path, "r:") as tf:
                for m in tf:
                    if m.isfile() and m.name.lower().endswith(".json"):
                        f = tf.extractfile(m)
                        keys.update(_json_obj(f.read() if f is not None else None))
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise FormatError(f"{self.path}: not a readable tar file ({_short(e)}); re-download or remove it") from None
        return keys

    def _samples(self) -> Iterator[Tuple[str, Dict[str, bytes]]]:
        try:
            tf = tarfile.open(self.path, "r|*")  # streaming: memory does not grow with the shard
        except (tarfile.TarError, OSError) as e:
            raise FormatError(f"{self.path}: not a readable tar file ({_short(e)}); re-download or remove it") from None
        key: Optional[str] = None
        parts: Dict[str, bytes] = {}
        n = 0
        try:
            for m in tf:
                if not m.isfile():
                    continue
                k, ext = _split_key(m.name)
                if k != key and key is not None:
                    yield key, parts
                    n += 1
                    parts = {}
                key = k
                f = tf.extractfile(m)
                parts[ext] = f.read() if f is not None else b""
            if key is not None:
                yield key, parts
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise FormatError(f"{self.path}: corrupt or truncated tar after {n} samples ({_short(e)}); "
                              "re-download or remove it") from None
        finally:
            tf.close()

    def batches(self, columns: Optional[Sequence[str]] = None) -> Iterator["pa.RecordBatch"]:
        import pyarrow as pa

        names = self.schema.names
        rows: Dict[str, List[Any]] = {n: [] for n in names}

        def flush() -> "pa.RecordBatch":
            arrays = [pa.array(rows[n], type=self.schema.field(n).type) for n in names]
            b = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
            for n in names:
                rows[n] = []
            return b.select(list(columns)) if columns is not None else b

        for key, parts in self._samples():
            img_ext = next((e for e in IMAGE_EXTS if e in parts), None)
            txt = parts.get("txt")
            text: Optional[str] = None
            if txt is not None:
                try:
                    text = txt.decode("utf-8")
                except UnicodeDecodeError:
                    text = None  # an undecodable caption is a missing caption
            raw_json = parts.get("json")
            obj = _json_obj(raw_json)
            cap = obj.get("caption")
            if text is None and isinstance(cap, str):
                text = cap
            uid = obj.get("uid") if obj.get("uid") is not None else obj.get("key")
            rows["uid"].append(str(uid) if uid is not None else key)
            rows["__key__"].append(key)
            rows["image"].append(parts.get(img_ext) if img_ext else None)
            rows["image_format"].append(img_ext)
            rows["txt"].append(text)
            rows["json"].append(raw_json.decode("utf-8", "replace") if raw_json is not None else None)
            for k in self._json_fields:
                v = obj.get(k)
                if WDS_JSON_FIELDS[k] == "int64":
                    v = v if isinstance(v, int) and not isinstance(v, bool) else None
                else:
                    v = str(v) if v is not None else None
                rows[k].append(v)
            if len(rows["__key__"]) >= self.batch_size:
                yield flush()
        if rows["__key__"]:
            yield flush()


def _json_obj(raw: Optional[bytes]) -> Dict[str, Any]:
    if not raw:
        return {}
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


# ------------------------------------------------------------------------------------- CSV / TSV

_HEADER_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\- ]{0,63}$")
_URL = re.compile(r"^(https?|s3|gs|ftp)://", re.I)


def _sniff_header(path: Path, delimiter: str) -> Tuple[bool, List[str]]:
    """Whether the first line is a header, and column names for a header-less file.

    A header is a line of short identifier-like fields, one of which is a column name fastcurate
    knows (any role's default) or which are all single words. A header-less file gets ``url`` for
    its first URL-valued column, ``text`` for its first other column, ``col<i>`` for the rest: the
    CC3M TSV (``caption<TAB>url``) thus reads as ``text``, ``url``.
    """
    from .columns import ROLE_CANDIDATES

    opener = _open_text(path)
    with opener as f:
        reader = csv.reader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
        first = next(reader, None)
    if not first:
        raise FormatError(f"{path}: empty file")
    known = {c.lower() for cands in ROLE_CANDIDATES.values() for c in cands}
    idish = all(_HEADER_FIELD.match(x) for x in first)
    if idish and (any(x.lower() in known for x in first) or all(" " not in x for x in first)):
        return True, []
    names: List[str] = []
    have_url = have_text = False
    for i, v in enumerate(first):
        if not have_url and _URL.match(v.strip()):
            names.append("url")
            have_url = True
        elif not have_text:
            names.append("text")
            have_text = True
        else:
            names.append(f"col{i}")
    return False, names


def _open_text(path: Path) -> Any:
    if path.name.lower().endswith(".gz"):
        import gzip

        return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="")
    return open(path, encoding="utf-8", errors="replace", newline="")


class CsvReader(ShardReader):
    """CSV (comma) or TSV (tab, no quoting, as CC3M ships) with or without a header line."""

    def __init__(self, ref: ShardRef, batch_size: int):
        super().__init__(ref, batch_size)
        import pyarrow as pa
        import pyarrow.csv as pcsv

        self.num_rows = None
        self._delim = "\t" if ref.format == "tsv" else ","
        try:
            header, names = _sniff_header(self.path, self._delim)
        except OSError as e:
            raise FormatError(f"{self.path}: cannot read ({_short(e)})") from None
        self._read = pcsv.ReadOptions(column_names=None if header else names, block_size=8 << 20,
                                      use_threads=True)
        self._parse = pcsv.ParseOptions(delimiter=self._delim, quote_char=False if self._delim == "\t" else '"',
                                        newlines_in_values=False)
        # Captions and ids stay strings (a caption column of digits must not become int64);
        # the other columns' types are inferred.
        self._convert = pcsv.ConvertOptions(strings_can_be_null=False, quoted_strings_can_be_null=False)
        try:
            r = pcsv.open_csv(self.path, read_options=self._read, parse_options=self._parse,
                              convert_options=self._convert)
            inferred = r.schema
            r.close()
        except (pa.ArrowException, OSError) as e:
            raise FormatError(f"{self.path}: not a readable {ref.format.upper()} file ({_short(e)})") from None
        from .columns import ROLE_CANDIDATES

        text_like = set(ROLE_CANDIDATES["text"]) | set(ROLE_CANDIDATES["id"]) | set(ROLE_CANDIDATES["url"])
        types = {f.name: (pa.string() if f.name in text_like or pa.types.is_null(f.type) else f.type) for f in inferred}
        self._convert = pcsv.ConvertOptions(column_types=types, strings_can_be_null=False,
                                            quoted_strings_can_be_null=False)
        self.schema = pa.schema([(n, types[n]) for n in inferred.names])

    def batches(self, columns: Optional[Sequence[str]] = None) -> Iterator["pa.RecordBatch"]:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        rows = 0
        try:
            r = pcsv.open_csv(self.path, read_options=self._read, parse_options=self._parse,
                              convert_options=self._convert)
            for b in _rebatch(r, self.batch_size):
                rows += b.num_rows
                yield b.select(list(columns)) if columns is not None else b
        except (pa.ArrowException, OSError) as e:
            raise FormatError(f"{self.path}: bad {self.ref.format.upper()} data after about {rows} rows ({_short(e)}); "
                              "fix the file or remove it") from None


def _rebatch(batches: Any, size: int) -> Iterator["pa.RecordBatch"]:
    """Block-sized batches cut to at most ``size`` rows (readers' blocks are bytes, not rows)."""
    for b in batches:
        for off in range(0, b.num_rows, size):
            yield b.slice(off, size)


class JsonlReader(ShardReader):
    def __init__(self, ref: ShardRef, batch_size: int):
        super().__init__(ref, batch_size)
        import pyarrow as pa
        import pyarrow.json as pj

        self.num_rows = None
        try:
            if hasattr(pj, "open_json"):
                r = pj.open_json(self.path, read_options=pj.ReadOptions(block_size=8 << 20))
                self.schema = r.schema
                r.close()
            else:  # pragma: no cover - pyarrow < 19 has no streaming JSON reader
                self.schema = pj.read_json(self.path).schema
        except (pa.ArrowException, OSError) as e:
            raise FormatError(f"{self.path}: not a readable JSON-lines file ({_short(e)})") from None

    def batches(self, columns: Optional[Sequence[str]] = None) -> Iterator["pa.RecordBatch"]:
        import pyarrow as pa
        import pyarrow.json as pj

        rows = 0
        try:
            if hasattr(pj, "open_json"):
                src: Any = pj.open_json(self.path, read_options=pj.ReadOptions(block_size=8 << 20),
                                        parse_options=pj.ParseOptions(explicit_schema=self.schema))
            else:  # pragma: no cover
                src = pj.read_json(self.path).to_batches()
            for b in _rebatch(src, self.batch_size):
                rows += b.num_rows
                yield b.select(list(columns)) if columns is not None else b
        except (pa.ArrowException, OSError) as e:
            raise FormatError(f"{self.path}: bad JSON-lines data after about {rows} rows ({_short(e)}); "
                              "fix the file or remove it") from None


_READERS = {"parquet": ParquetReader, "webdataset": WebDatasetReader, "csv": CsvReader, "tsv": CsvReader,
            "jsonl": JsonlReader}


def open_shard(ref: ShardRef, batch_size: int = 65536) -> ShardReader:
    """A reader for ``ref`` by its format (raises FormatError when the file cannot be opened)."""
    return _READERS[ref.format](ref, batch_size)
