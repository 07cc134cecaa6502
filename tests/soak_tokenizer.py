"""Long soak of ClipTokenizer against open_clip on random nasty captions (not collected by pytest).

    PYTHONPATH=python python tests/soak_tokenizer.py [--mode nasty|scripts] [--batches 300] [--seed 1]

``nasty`` draws from the hypothesis alphabet of test_embed_tokenizer.py (mojibake, entities,
controls, combining marks, ...) plus random code points; ``scripts`` draws from the code-point
ranges of ten scripts, so most rows take the ftfy-skipped path. Every batch of 200 captions must
give open_clip's ids, and every row the kernel calls ftfy-clean must be a fixed point of ftfy and
of the double html.unescape. Prints the row counts of each kernel path.
"""

from __future__ import annotations

import argparse
import html
import random
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "python"))
sys.path.insert(0, str(HERE))

RANGES = [(0x20, 0x7F)] * 6 + [(0xA0, 0x180), (0x370, 0x400), (0x400, 0x500), (0x900, 0x980), (0x4E00, 0x4F00),
                               (0x1F300, 0x1F700), (0x2000, 0x2070), (0x300, 0x370), (0xE00, 0xE80), (0x600, 0x700),
                               (0xAC00, 0xAD00), (0x1100, 0x1200)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["nasty", "scripts"], default="nasty")
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    import ftfy
    from fastcurate.models.torch_compat import import_open_clip
    open_clip = import_open_clip()

    import test_embed_tokenizer as T
    from embed_fixtures import clip_tokenizer_json
    from fastcurate.models.tokenizer import ClipTokenizer

    ours, ref = ClipTokenizer(clip_tokenizer_json()), open_clip.get_tokenizer("ViT-B-32")
    rng = random.Random(a.seed)
    pool = T._NASTY_CHARS + T._NASTY_SNIPPETS

    def char() -> str:
        if a.mode == "scripts":
            lo, hi = rng.choice(RANGES)
            return chr(rng.randrange(lo, hi))
        r = rng.random()
        if r < 0.6:
            return rng.choice(pool)
        if r < 0.8:
            return chr(rng.randrange(0x20, 0x7F))
        if r < 0.95:
            return chr(rng.randrange(0x80, 0x3000))
        return chr(rng.randrange(0, 0x110000))

    bad, counts, t0 = 0, np.zeros(4, np.int64), time.time()
    for _ in range(a.batches):
        texts = ["".join(char() for _ in range(rng.randrange(0, 40))) for _ in range(200)]
        diff = np.flatnonzero((ours(texts) != ref(texts).numpy()).any(1))
        if diff.size:
            bad += diff.size
            print("MISMATCH", [texts[i] for i in diff[:3]])
        out = np.zeros((len(texts), 77), np.int64)
        _, status = ours._bpe.tokenize("list", texts, out, False)
        counts += np.bincount(status, minlength=4)
        for t in texts:
            try:
                raw = t.encode("utf-8")
            except UnicodeEncodeError:
                continue
            if ours._bpe.ftfy_noop(raw) and (ftfy.fix_text(t) != t or html.unescape(html.unescape(t)) != t):
                bad += 1
                print("UNSOUND ftfy-clean row", repr(t))
    print(f"{a.batches * 200} captions ({a.mode}, seed {a.seed}): {bad} problems; rows per path: C++ {counts[0]}, "
          f"ftfy {counts[1]}, ftfy skipped {counts[3]}; {time.time() - t0:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
