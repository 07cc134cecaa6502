"""Writes the benchmark metadata and caption pool in the raw layout that cpp/bench/bench_core reads:

    python benchmarks/dump_core_input.py /tmp/laion --pool laion     # 1M captions, 500k entries
    python benchmarks/dump_core_input.py /tmp/cg --captions 200000 \\
        --parquet .bench/pool_10000000_20_spliced/shard-00000.parquet  # spliced captions + WordNet
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _pool import pool_inputs  # noqa: E402


def write_column(path: Path, arr: pa.Array) -> None:
    arr = arr.cast(pa.large_string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    with open(path, "wb") as f:
        f.write(np.uint64(len(arr)).tobytes())
        f.write((offsets - offsets[0]).tobytes())
        f.write(memoryview(data)[offsets[0] : offsets[-1]])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("prefix")
    ap.add_argument("--captions", type=int, default=1_000_000)
    ap.add_argument("--entries", type=int, default=500_000)
    ap.add_argument("--pool", choices=["laion", "dense"], default="laion", help="see benchmarks/_pool.py")
    ap.add_argument("--parquet", default=None,
                    help="take the first --captions TEXT values of this Parquet file instead (e.g. a shard of "
                         "bench_curate.py --captions spliced) and the shipped WordNet metadata, as curate does")
    a = ap.parse_args()
    if a.parquet:
        import pyarrow.parquet as pq

        from fastcurate.metadata import load_metadata

        entries = load_metadata()
        texts = pq.read_table(a.parquet, columns=["TEXT"]).column("TEXT").combine_chunks()[: a.captions]
    else:
        entries, texts, _ = pool_inputs(a.pool, a.captions, a.entries)
    write_column(Path(a.prefix + ".entries"), pa.array(entries))
    write_column(Path(a.prefix + ".texts"), texts)


if __name__ == "__main__":
    main()
