"""Helpers the stage sections share: example cards for uids, a stage's numeric column sampled."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

from ..html import card, esc

__all__ = ["uid_cards", "read_column", "read_sample", "find_col"]


def uid_cards(run: Any, stage: Any, uids: Sequence[str], meta: Optional[Dict[str, str]] = None,
              cls: Optional[Dict[str, str]] = None, include_inputs: bool = True) -> List[str]:
    rows = run.stage_rows(stage, uids, include_inputs=include_inputs)
    out = []
    for u in uids:
        r = rows.get(u)
        m = (meta or {}).get(u, f'<span title="uid">{esc(u)}</span>')
        out.append(card(r.thumb if r else None, r.text if r else None, m, (cls or {}).get(u, ""),
                        placeholder=bool(r and r.extra.get("thumbs") and r.thumb is None and _has_images(stage))))
    return out


def _has_images(stage: Any) -> bool:
    return "image" in (stage.stats.get("columns") or {})


def read_column(files: Iterable[Path], name: str, max_rows: Optional[int] = None) -> Optional[np.ndarray]:
    """One numeric column over ``files`` (Parquet), or None when absent; every row up to ``max_rows``."""
    import pyarrow.parquet as pq

    chunks: List[np.ndarray] = []
    n = 0
    for f in files:
        pf = pq.ParquetFile(f)
        if name not in pf.schema_arrow.names:
            return None
        a = pf.read(columns=[name]).column(0).to_numpy(zero_copy_only=False)
        chunks.append(np.asarray(a, dtype=np.float64))
        n += len(a)
        if max_rows is not None and n >= max_rows:
            break
    if not chunks:
        return None
    return np.concatenate(chunks)


def read_sample(path: Path, columns: Sequence[str], n: int, seed: int = 0) -> Any:
    """``n`` rows of a Parquet file drawn evenly (deterministic), only ``columns``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    cols = [c for c in columns if c in pf.schema_arrow.names]
    t = pf.read(columns=cols)
    if t.num_rows <= n:
        return t
    idx = np.unique(np.linspace(0, t.num_rows - 1, n).astype(np.int64))
    return t.take(pa.array(idx))


def find_col(names: Sequence[str], *must: str, avoid: Sequence[str] = ()) -> Optional[str]:
    """The first column whose name contains every one of ``must`` (alternatives split by "|")."""
    for n in names:
        low = n.lower()
        if all(any(a in low for a in m.split("|")) for m in must) and not any(a in low for a in avoid):
            return n
    return None
