"""MetaCLIP metadata: build the entry list from its four sources, and read/write it.

MetaCLIP's metadata is an ordered list of strings (``metadata.json``: a JSON array); an entry's id
is its index. Its builder combines, in this order, each source optional:

1. WordNet synsets: the name of every synset (as NLTK's ``Synset.name()`` gives it: the first
   lemma, lower-cased, cut at the first ``.``), ``_`` -> space. Read here straight from the
   WordNet 3.0 database files (``data.adj``, ``data.adv``, ``data.noun``, ``data.verb``, e.g.
   Debian's ``wordnet-base`` in ``/usr/share/wordnet``) so NLTK is not needed.
2. Wikipedia unigrams with count >= 100, from a counts file or a text corpus.
3. Wikipedia bigrams with PMI >= 30 (NLTK's ``BigramAssocMeasures.pmi``: log2(n_ab * N / (n_a n_b))),
   from unigram + bigram counts files or a text corpus.
4. Wikipedia titles with page views >= 70, from a counts file.

MetaCLIP also seeds the list with the numbers "0".."99" and drops empty entries and single
punctuation characters; it deduplicates with a Python set (losing the order), here the first
occurrence wins so that ids are reproducible.

The package ships the WordNet 3.0 build (``load_metadata()`` with no path), with WordNet's licence
in ``fastcurate/data/WORDNET_LICENSE``.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import re
import string
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from .errors import FormatError, InputError, InputTypeError
from .io.atomic import atomic_write_bytes

__all__ = [
    "build_metadata",
    "load_metadata",
    "entries_of",
    "save_metadata",
    "load_wordnet_entries",
    "wordnet_entries",
    "unigram_entries",
    "bigram_entries",
    "title_entries",
    "default_metadata_path",
    "DEFAULT_WORDNET_DIR",
    "UNIGRAM_MIN_COUNT",
    "BIGRAM_MIN_PMI",
    "TITLE_MIN_VIEWS",
]

PathLike = Union[str, "os.PathLike[str]"]

DEFAULT_WORDNET_DIR = "/usr/share/wordnet"
UNIGRAM_MIN_COUNT = 100
BIGRAM_MIN_PMI = 30.0
TITLE_MIN_VIEWS = 70

# NLTK's all_synsets() order: adjectives (incl. satellites), adverbs, nouns, verbs.
_WORDNET_FILES = ("data.adj", "data.adv", "data.noun", "data.verb")
_SYNTACTIC_MARKER = re.compile(r"\((?:a|p|ip)\)$")
_DATA_DIR = Path(__file__).resolve().parent / "data"
_DEFAULT_NAME = "metadata_wordnet30.json.gz"


def default_metadata_path() -> Path:
    """Path of the shipped default metadata (WordNet 3.0 synsets, built by :func:`build_metadata`)."""
    return _DATA_DIR / _DEFAULT_NAME


def _open_text(path: PathLike) -> io.TextIOBase:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found")
    if p.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8")  # type: ignore[return-value]
    return open(p, encoding="utf-8")  # type: ignore[return-value]


def load_wordnet_entries(
    wordnet_dir: Optional[PathLike] = None, *, lowercase: bool = True, cut_at_dot: bool = True
) -> List[str]:
    """WordNet synset entries the MetaCLIP way (one per synset, duplicates kept, file order).

    MetaCLIP takes ``ss.name()[:ss.name().find('.')].replace('_', ' ')`` over NLTK's
    ``wn.all_synsets()``. NLTK's synset name is the first lemma *lower-cased*, and cutting at the
    first ``.`` also shortens lemmas that hold a dot ("St._Louis" -> "st"); both are kept by default
    so the entries equal MetaCLIP's. Adjective syntactic markers ("(a)", "(p)", "(ip)") are removed,
    as NLTK does.
    """
    d = Path(wordnet_dir) if wordnet_dir is not None else Path(os.environ.get("WNHOME_DICT", DEFAULT_WORDNET_DIR))
    missing = [f for f in _WORDNET_FILES if not (d / f).exists()]
    if missing:
        raise InputError(
            f"{d}: no WordNet database here (missing {', '.join(missing)}); install Debian's wordnet-base "
            "(apt-get install wordnet-base) or pass the directory that holds data.noun etc."
        )
    entries: List[str] = []
    for fname in _WORDNET_FILES:
        path = d / fname
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if line.startswith("  "):  # licence header lines
                    continue
                parts = line.split(" ", 5)
                # synset_offset lex_filenum ss_type w_cnt word lex_id ...
                if len(parts) < 6:
                    raise FormatError(f"{path}:{lineno}: not a WordNet data line")
                lemma = _SYNTACTIC_MARKER.sub("", parts[4])
                if lowercase:
                    lemma = lemma.lower()
                if cut_at_dot:
                    dot = lemma.find(".")
                    if dot >= 0:
                        lemma = lemma[:dot]
                entries.append(lemma.replace("_", " "))
    return entries


def wordnet_entries(
    wordnet_dir: Optional[PathLike] = None, *, lowercase: bool = True, cut_at_dot: bool = True
) -> List[str]:
    """The WordNet part of MetaCLIP's metadata, ready to match: :func:`load_wordnet_entries`
    without empty entries and with duplicates removed (first occurrence wins)."""
    seen = set()
    out: List[str] = []
    for e in load_wordnet_entries(wordnet_dir, lowercase=lowercase, cut_at_dot=cut_at_dot):
        if e and e not in seen:
            seen.add(e)
            out.append(e)
    return out


def _is_int(s: str) -> bool:
    return s.isdigit() or (s[:1] == "-" and s[1:].isdigit())


def _read_unigram_counts(path: PathLike) -> Iterator[Tuple[str, int]]:
    """Lines 'word count' (MetaCLIP's enwiki-unigram.txt) or 'count<TAB>word' (its 1gram.txt.gz)."""
    with _open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) == 2 and _is_int(parts[1]):
                yield parts[0], int(parts[1])
            elif len(parts) == 2 and _is_int(parts[0]):
                yield parts[1], int(parts[0])
            else:
                raise FormatError(f"{path}:{lineno}: expected 'word count' or 'count<TAB>word', got {line.strip()[:80]!r}")


def _read_bigram_counts(path: PathLike) -> Iterator[Tuple[str, str, int]]:
    """Lines 'count<TAB>w1<TAB>w2' (MetaCLIP's 2gram.txt.gz) or 'w1 w2 count'."""
    with _open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) == 3 and _is_int(parts[0]):
                yield parts[1], parts[2], int(parts[0])
            elif len(parts) == 3 and _is_int(parts[2]):
                yield parts[0], parts[1], int(parts[2])
            else:
                raise FormatError(f"{path}:{lineno}: expected 'count<TAB>w1<TAB>w2' or 'w1 w2 count', got {line.strip()[:80]!r}")


def _corpus_tokens(corpus: Union[PathLike, Sequence[PathLike]]) -> Iterator[List[str]]:
    paths = [corpus] if isinstance(corpus, (str, os.PathLike)) else list(corpus)
    for p in paths:
        with _open_text(p) as f:
            for line in f:
                yield line.split()


def _corpus_counts(corpus: Union[PathLike, Sequence[PathLike]]) -> Tuple[Counter, Counter]:
    uni: Counter = Counter()
    bi: Counter = Counter()
    for toks in _corpus_tokens(corpus):
        uni.update(toks)
        bi.update(zip(toks, toks[1:]))  # bigrams do not cross line boundaries
    return uni, bi


def unigram_entries(
    counts_file: Optional[PathLike] = None,
    *,
    corpus: Optional[Union[PathLike, Sequence[PathLike]]] = None,
    min_count: int = UNIGRAM_MIN_COUNT,
) -> List[str]:
    """Unigrams with count >= ``min_count`` (MetaCLIP: 100), from a counts file or a whitespace-
    tokenised text corpus (one or more files, ``.gz`` allowed), in file / first-seen order."""
    if (counts_file is None) == (corpus is None):
        raise InputError("give exactly one of counts_file or corpus for unigrams")
    if counts_file is not None:
        return [w for w, c in _read_unigram_counts(counts_file) if c >= min_count]
    uni, _ = _corpus_counts(corpus)  # type: ignore[arg-type]
    return [w for w, c in uni.items() if c >= min_count]


def _pmi(n_ab: int, n_a: int, n_b: int, total: int) -> float:
    # NLTK's BigramAssocMeasures.pmi: log2(n_ii * N) - log2(n_ix * n_xi)
    return math.log2(n_ab * total) - math.log2(n_a * n_b)


def bigram_entries(
    unigram_counts: Optional[PathLike] = None,
    bigram_counts: Optional[PathLike] = None,
    *,
    corpus: Optional[Union[PathLike, Sequence[PathLike]]] = None,
    min_pmi: float = BIGRAM_MIN_PMI,
) -> List[str]:
    """Bigrams "w1 w2" with PMI >= ``min_pmi`` (MetaCLIP: 30), where N is the total unigram count,
    from unigram + bigram counts files or a corpus. Bigrams with a word missing from the unigram
    counts are skipped (as MetaCLIP does). Order: bigram file / first-seen order."""
    if corpus is not None:
        if unigram_counts is not None or bigram_counts is not None:
            raise InputError("give either a corpus or unigram_counts + bigram_counts for bigrams, not both")
        uni, bi = _corpus_counts(corpus)
        pairs: Iterable[Tuple[str, str, int]] = ((a, b, c) for (a, b), c in bi.items())
    else:
        if unigram_counts is None or bigram_counts is None:
            raise InputError("bigrams need both unigram_counts and bigram_counts files (or a corpus)")
        uni = Counter()
        for w, c in _read_unigram_counts(unigram_counts):
            if w and c > 0:
                uni[w] = c
        pairs = _read_bigram_counts(bigram_counts)
    total = sum(uni.values())
    out = []
    for a, b, c in pairs:
        if c <= 0 or a not in uni or b not in uni:
            continue
        if _pmi(c, uni[a], uni[b], total) >= min_pmi:
            out.append(f"{a} {b}")
    return out


def title_entries(counts_file: PathLike, *, min_views: int = TITLE_MIN_VIEWS) -> List[str]:
    """Wikipedia titles with views >= ``min_views`` (MetaCLIP: 70). ``counts_file``: MetaCLIP's
    ``title_counts.json`` ({title: views}) or text lines 'title<TAB>views'; ``_`` -> space."""
    p = Path(counts_file)
    out: List[str] = []
    if p.name.endswith(".json") or p.name.endswith(".json.gz"):
        with _open_text(p) as f:
            try:
                d = json.load(f)
            except json.JSONDecodeError as e:
                raise FormatError(f"{p}: not valid JSON ({e})") from None
        if not isinstance(d, dict):
            raise FormatError(f"{p}: expected a JSON object {{title: views}}")
        items: Iterable[Tuple[str, int]] = d.items()
    else:
        def _lines() -> Iterator[Tuple[str, int]]:
            with _open_text(p) as f:
                for lineno, line in enumerate(f, 1):
                    line = line.rstrip("\n")
                    if not line.strip():
                        continue
                    title, sep, views = line.rpartition("\t")
                    if not sep or not _is_int(views.strip()):
                        raise FormatError(f"{p}:{lineno}: expected 'title<TAB>views', got {line[:80]!r}")
                    yield title, int(views)
        items = _lines()
    for title, views in items:
        if int(views) >= min_views:
            out.append(title.strip().replace("_", " "))
    return out


_FORBIDDEN = set(string.punctuation)


def build_metadata(
    wordnet: Union[bool, PathLike] = True,
    *,
    unigram_counts: Optional[PathLike] = None,
    bigram_counts: Optional[PathLike] = None,
    corpus: Optional[Union[PathLike, Sequence[PathLike]]] = None,
    title_counts: Optional[PathLike] = None,
    include_numbers: bool = True,
    min_count: int = UNIGRAM_MIN_COUNT,
    min_pmi: float = BIGRAM_MIN_PMI,
    min_views: int = TITLE_MIN_VIEWS,
    max_entries: Optional[int] = None,
) -> List[str]:
    """Build MetaCLIP metadata from its sources, each optional, with MetaCLIP's default thresholds.

    ``wordnet``: True (the default WordNet directory), a directory, or False. Unigrams come from
    ``unigram_counts`` or ``corpus``; bigrams from ``unigram_counts`` + ``bigram_counts`` or
    ``corpus``; titles from ``title_counts``. Order: numbers 0..99 (MetaCLIP's seed), WordNet,
    unigrams, bigrams, titles; empty entries and single punctuation characters are dropped; the
    first occurrence of a duplicate wins. ``max_entries`` stops adding once reached (MetaCLIP: 500k).
    """
    sources: List[Tuple[str, List[str]]] = []
    if include_numbers:
        sources.append(("numbers", [str(i) for i in range(100)]))
    if wordnet:
        sources.append(("wordnet", load_wordnet_entries(None if wordnet is True else wordnet)))  # type: ignore[arg-type]
    if unigram_counts is not None or corpus is not None:
        if unigram_counts is not None:
            sources.append(("unigrams", unigram_entries(unigram_counts, min_count=min_count)))
        else:
            sources.append(("unigrams", unigram_entries(corpus=corpus, min_count=min_count)))
    if bigram_counts is not None or corpus is not None:
        if bigram_counts is not None:
            if unigram_counts is None:
                raise InputError("bigram_counts needs unigram_counts too (PMI uses the unigram counts)")
            sources.append(("bigrams", bigram_entries(unigram_counts, bigram_counts, min_pmi=min_pmi)))
        else:
            sources.append(("bigrams", bigram_entries(corpus=corpus, min_pmi=min_pmi)))
    if title_counts is not None:
        sources.append(("titles", title_entries(title_counts, min_views=min_views)))
    if not sources:
        raise InputError("no metadata source selected: enable wordnet or give counts / corpus files")
    seen = set()
    out: List[str] = []
    for _, entries in sources:
        for e in entries:
            if not e or e in _FORBIDDEN or e in seen:
                continue
            seen.add(e)
            out.append(e)
            if max_entries is not None and len(out) >= max_entries:
                return out
    return out


def save_metadata(entries: Sequence[str], path: PathLike) -> Path:
    """Write entries atomically: ``.json`` (MetaCLIP's format, a JSON array) or any other suffix as
    plain text, one entry per line; a trailing ``.gz`` gzips (deterministically, mtime 0)."""
    p = Path(path)
    entries = list(entries)
    for i, e in enumerate(entries):
        if not isinstance(e, str):
            raise InputError(f"entry {i} is {type(e).__name__}, not str")
    base = p.name[:-3] if p.name.endswith(".gz") else p.name
    if base.endswith(".json"):
        data = json.dumps(entries, ensure_ascii=False).encode("utf-8")
    else:
        for i, e in enumerate(entries):
            if "\n" in e or "\r" in e:
                raise InputError(f"entry {i} ({e[:40]!r}) holds a line break; save as .json instead of plain text")
        data = "".join(e + "\n" for e in entries).encode("utf-8")
    if p.name.endswith(".gz"):
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as g:
            g.write(data)
        data = buf.getvalue()
    atomic_write_bytes(p, data)
    return p


def entries_of(metadata: Union[None, PathLike, Sequence[str]]) -> List[str]:
    """The entries a stage's ``metadata`` argument names: None, the shipped default; a path (str or
    ``os.PathLike``), :func:`load_metadata` of it; any other sequence, its items as strings."""
    if metadata is None or isinstance(metadata, (str, os.PathLike)):
        return load_metadata(metadata)
    if isinstance(metadata, (bytes, bytearray, memoryview)) or not isinstance(metadata, Iterable):
        raise InputTypeError(f"metadata must be a file path or a sequence of entries (str), got {type(metadata).__name__}")
    return [str(e) for e in metadata]


def load_metadata(path: Optional[PathLike] = None) -> List[str]:
    """Read metadata: ``None`` -> the shipped WordNet 3.0 default; ``.json`` (a JSON array of
    strings, MetaCLIP's format) or plain text (one entry per line; empty lines kept as entries would
    shift ids, so a trailing newline is the only one ignored); ``.gz`` allowed. Duplicates are kept:
    ids are positions, as in MetaCLIP."""
    p = default_metadata_path() if path is None else Path(path)
    if not p.exists():
        raise InputError(f"{p}: metadata file not found")
    base = p.name[:-3] if p.name.endswith(".gz") else p.name
    try:
        raw = gzip.open(p, "rb").read() if p.name.endswith(".gz") else p.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise FormatError(f"{p}: cannot read metadata ({e})") from None
    if base.endswith(".json"):
        try:
            entries = json.loads(text)
        except json.JSONDecodeError as e:
            raise FormatError(f"{p}: not valid JSON ({e}); metadata.json must be a JSON array of strings") from None
        if not isinstance(entries, list):
            raise FormatError(f"{p}: metadata.json must be a JSON array of strings, got {type(entries).__name__}")
        for i, x in enumerate(entries):
            if not isinstance(x, str):
                raise FormatError(f"{p}: entry {i} is {type(x).__name__}, not a string")
        return entries
    if text.endswith("\n"):
        text = text[:-1]
    # CRLF files (written on Windows): the CR belongs to the line break, not to the entry.
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")] if text else []
