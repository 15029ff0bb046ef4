"""Which messages repeat the customer's previous, answered question."""

from __future__ import annotations

import pytest

from chat.assistant.contract import Intent
from chat.assistant.repeats import intent_after_repeat, question_repeated


def _history(*items: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": role, "text": text} for role, text in items]


@pytest.mark.parametrize(
    ("history", "question", "repeated"),
    [
        # Answered, then asked again (the current message already stored at the end).
        (
            _history(
                ("customer", "how do I pay by card"),
                ("assistant", "A"),
                ("customer", "How do I pay by card?"),
            ),
            "How do I pay by card?",
            True,
        ),
        # The same, before the current message was stored.
        (
            _history(("customer", "how do I pay by card"), ("assistant", "A")),
            "how do i pay by card",
            True,
        ),
        # A different question.
        (
            _history(("customer", "how do I pay by card"), ("assistant", "A")),
            "how do I pay by direct debit",
            False,
        ),
        # Sent twice before any answer (a double send, not a repeat after an answer).
        (
            _history(("customer", "how do I pay by card"), ("customer", "how do I pay by card")),
            "how do I pay by card",
            False,
        ),
        # Too short to tell ("ok", "yes").
        (_history(("customer", "ok"), ("assistant", "A")), "ok", False),
        # A person answered in between.
        (
            _history(("customer", "how do I pay by card"), ("agent", "A")),
            "how do I pay by card",
            False,
        ),
        # Nothing before.
        ([], "how do I pay by card", False),
    ],
)
def test_question_repeated(history, question, repeated):
    assert question_repeated(history, question) is repeated


def test_a_repeated_question_reads_as_frustration_and_other_readings_stay():
    question = Intent(label="answer", confidence=0.9, scores={"answer": 0.9, "small_talk": 0.1})
    thanks = Intent(label="small_talk", confidence=0.9, scores={"small_talk": 0.9, "answer": 0.1})

    read = intent_after_repeat(question, "how do I pay by card")

    assert (read.label, round(read.confidence, 2)) == ("frustration", 0.9)
    assert read.evidence == "how do I pay by card"
    assert intent_after_repeat(thanks, "thanks for your help") is thanks
