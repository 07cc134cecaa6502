"""MetaCLIP's reference matcher, written the way its `substr_matching_ahocorasick.py` uses
pyahocorasick: spaced keys in an Automaton, `automaton.iter` over the spaced text, a set of ids."""

from __future__ import annotations

from typing import List, Sequence

from fastcurate.kernels.reference import spacing


def build_automaton(entries: Sequence[str]):
    import ahocorasick

    automaton = ahocorasick.Automaton()
    for idx, entry in enumerate(entries):
        key = f" {entry} "
        automaton.add_word(key, (idx, key))
    automaton.make_automaton()
    return automaton


def match_with(automaton, text: str) -> List[int]:
    matched = set()
    for _end, (entry_id, _key) in automaton.iter(spacing(text)):
        matched.add(entry_id)
    return sorted(matched)
