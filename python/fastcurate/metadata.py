"""Metadata entries for MetaCLIP-style matching.

This module starts with the WordNet source; the other MetaCLIP sources (unigrams, bigrams by PMI,
titles by views) build on the same list type.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Union

from .errors import InputError

__all__ = ["wordnet_entries"]

_WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")


def wordnet_entries(wordnet_dir: Union[str, Path] = "/usr/share/wordnet") -> List[str]:
    """The first lemma of every WordNet synset with ``_`` turned into a space, in file order
    (noun, verb, adjective, adverb), deduplicated keeping the first occurrence.

    Reads the WordNet 3.0 database files (``data.noun`` ...) of Debian's ``wordnet-base`` or of
    any directory holding them.
    """
    d = Path(wordnet_dir)
    seen = set()
    out: List[str] = []
    for name in _WORDNET_FILES:
        path = d / name
        if not path.exists():
            raise InputError(f"WordNet file {path} not found; install Debian's wordnet-base or pass the directory holding {name}")
        with open(path, encoding="utf-8", errors="strict") as f:
            for line in f:
                if line.startswith("  "):  # the licence header lines start with two spaces
                    continue
                # synset_offset lex_filenum ss_type w_cnt word lex_id ...
                parts = line.split(" ", 5)
                if len(parts) < 5:
                    continue
                lemma = parts[4]
                if name == "data.adj" and lemma.endswith(")") and "(" in lemma:
                    lemma = lemma[: lemma.index("(")]  # adjective markers such as "(a)" or "(p)"
                entry = lemma.replace("_", " ")
                if entry not in seen:
                    seen.add(entry)
                    out.append(entry)
    return out
