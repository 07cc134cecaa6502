"""The strict answer parser: only the two labels plus a reason; everything else is `unparsed`."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastcurate.stages.judge import ANSWER_SCHEMA, HIGH, LABELS, LOW, UNPARSED, parse_answer

ACCEPT = [
    ('{"reason": "varied", "classification": "High Value"}', HIGH, "varied", False),
    ('  {"reason": " narrow ", "classification": "Low Value"}\n', LOW, "narrow", True),
    ('```json\n{"reason": "r", "classification": "Low Value"}\n```', LOW, "r", True),
    ("Reason: Diverse content.\nClassification: High Value", HIGH, "Diverse content.", False),
    ("Reason: a\nb\nClassification: Low Value\n", LOW, "a b", False),
    ("Generic filenames.\nClassification: Low Value", LOW, "Generic filenames.", False),  # completion of "Reason: "
    ("Reason: x\nClassification: **High Value**", HIGH, "x", False),
    ("**Reason:** x\n**Classification:** Low Value.", LOW, "x", False),
    ("Reason: x\nClassification: \"high value\"", HIGH, "x", False),
    ("reason: x\nclassification:   Low   Value", LOW, "x", False),
]

REFUSE = [
    ("", False, "empty"),
    ("   \n", True, "empty"),
    ("High Value", False, "no 'Classification:'"),
    ("This cluster is of high value.", False, "no 'Classification:'"),
    ("Reason: x\nClassification: Medium Value", False, "not one of"),
    ("Reason: x\nClassification: High", False, "not one of"),
    ("Reason: x\nClassification: High Value or Low Value", False, "not one of"),
    ("Reason: x\nClassification: High Value\nClassification: Low Value", False, "2 'Classification:'"),
    ("Reason: x\nClassification: High Value\n\n### Example 6\nmore", False, "text follows"),
    ("Classification: High Value", False, "no reason"),
    ("Reason: \nClassification: Low Value", False, "no reason"),
    ("preamble\nReason: x\nClassification: Low Value", False, "precedes"),
    ('{"reason": "x", "classification": "Medium Value"}', False, "not one of"),
    ('{"reason": "x", "classification": "high value"}', True, "not one of"),  # JSON must be exact
    ('{"reason": "", "classification": "High Value"}', True, "no reason"),
    ('{"classification": "High Value"}', True, "no reason"),
    ('{"reason": "x", "classification": "High Value", "score": 3}', True, "unexpected keys"),
    ('{"reason": "x", "classification": "High Value"', True, "not JSON"),
    ('["High Value"]', True, "not an object"),
    ("Reason: x\nClassification: High Value", True, "not JSON"),  # structured requests accept JSON only
]


@pytest.mark.parametrize("text,label,reason,structured", ACCEPT)
def test_accepts(text, label, reason, structured):
    p = parse_answer(text, structured=structured)
    assert (p.label, p.reason) == (label, reason) and p.ok and p.why is None


@pytest.mark.parametrize("text,structured,why", REFUSE)
def test_refuses(text, structured, why):
    p = parse_answer(text, structured=structured)
    assert p.label == UNPARSED and p.reason is None and not p.ok
    assert why in p.why


def test_echoed_prompt_is_unparsed():
    """The 135M model, unconstrained, echoes the prompt with its five examples: never a verdict."""
    from fastcurate.stages.judge import render_prompt

    p = parse_answer(render_prompt(["a cat"]) + " Diverse.\nClassification: High Value")
    assert p.label == UNPARSED


def test_schema_allows_exactly_the_labels():
    assert ANSWER_SCHEMA["properties"]["classification"]["enum"] == list(LABELS)
    assert ANSWER_SCHEMA["required"] == ["reason", "classification"]
    assert list(ANSWER_SCHEMA["properties"]) == ["reason", "classification"]  # reason first
    assert ANSWER_SCHEMA["additionalProperties"] is False


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400), st.booleans())
def test_never_raises_never_invents(text, structured):
    p = parse_answer(text, structured=structured)
    assert p.label in (*LABELS, UNPARSED)
    if p.ok:
        # a verdict needs one of the labels, written out, in the text
        assert p.label.lower() in " ".join(text.lower().split())
        assert p.reason


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=200).filter(lambda s: s.strip()), st.sampled_from(LABELS))
def test_json_round_trip(reason, label):
    p = parse_answer(json.dumps({"reason": reason, "classification": label}), structured=True)
    assert p.label == label and p.reason == reason.strip()
