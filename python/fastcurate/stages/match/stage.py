"""The matcher alone as a stage (docs/curate.md#matching): every row gets the ids of the metadata
entries its caption contains, as ``entry_ids``; no row is dropped. Useful to inspect matching, to
feed content labels (``annotate``), or to count entries without balancing."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np

from ...errors import InputError
from ...io.atomic import atomic_write_npy
from ...io.columns import Roles
from ...kernels.balance import count_entries
from ...metadata import entries_of, save_metadata
from ...runner.stage import Batch, Context, Result, Stage

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["MatchStage"]

PathLike = Union[str, "os.PathLike[str]"]


class MatchStage(Stage):
    """Adds ``entry_ids`` (MetaCLIP semantics, or plain substrings) to every row."""

    name = "match"
    version = 1
    needs = ("text",)
    produces = ("entry_ids", "entry_counts.npy", "metadata.json")
    reasons: ClassVar[Mapping[str, str]] = {}

    def __init__(self, metadata: Optional[Union[PathLike, Sequence[str]]] = None, *, mode: str = "metaclip",
                 case_sensitive: bool = True):
        """
        Args:
            metadata: a metadata file (``.json`` list or text, one entry per line), a list of
                entries, or None for the shipped WordNet 3.0 metadata.
            mode: ``metaclip`` (MetaCLIP's spaced-token semantics) or ``substring``.
            case_sensitive: False folds ASCII letters.
        """
        if mode not in ("metaclip", "substring"):
            raise InputError(f"mode must be 'metaclip' or 'substring', got {mode!r}")
        self.entries = entries_of(metadata)
        if not self.entries:
            raise InputError("the metadata holds no entries")
        self.mode = mode
        self.case_sensitive = case_sensitive
        self._matcher: Any = None

    def __getstate__(self) -> Dict[str, Any]:
        d = dict(self.__dict__)
        d["_matcher"] = None
        return d

    def config(self) -> Dict[str, Any]:
        import hashlib
        import json

        sha = hashlib.sha256(json.dumps(self.entries, ensure_ascii=False).encode("utf-8")).hexdigest()
        return {"metadata_sha256": sha, "mode": self.mode, "case_sensitive": self.case_sensitive}

    def output_fields(self, schema: "pa.Schema", roles: Roles) -> List["pa.Field"]:
        import pyarrow as pa

        return [pa.field("entry_ids", pa.list_(pa.int32()))]

    def setup(self, ctx: Context, state: Optional[Dict[str, Any]]) -> None:
        from ...kernels.matcher import Matcher

        self._matcher = Matcher(self.entries, mode=self.mode, case_sensitive=self.case_sensitive)

    def process(self, ctx: Context, shard: Any, batches: Iterator[Batch]) -> Iterator[Result]:
        counts = np.zeros(len(self.entries), np.uint64)
        for b in batches:
            r = self._matcher.match(b.require("text"), threads=ctx.threads)
            count_entries(r, len(self.entries), out=counts)
            yield Result(columns={"entry_ids": r.to_arrow()})
        # Per-shard counts live in the shard's work directory: a resumed run sums the same arrays.
        atomic_write_npy(ctx.shard_work(shard) / "counts.npy", counts)

    def finalize(self, ctx: Context, shards: List[Dict[str, Any]], state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        counts = np.zeros(len(self.entries), np.uint64)
        written = {r["file"] for r in shards}
        for s in ctx.inputs:
            f = ctx.work / "shards" / f"{s.index:05d}" / "counts.npy"
            if str(s.path) in written and f.is_file():
                counts += np.load(f)
        atomic_write_npy(ctx.out / "entry_counts.npy", counts)
        save_metadata(self.entries, ctx.out / "metadata.json")
        return {"n_entries": len(self.entries), "entries_matched": int(np.count_nonzero(counts)),
                "matches": int(counts.sum()), "mode": self.mode, "case_sensitive": self.case_sensitive}
