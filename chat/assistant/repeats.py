"""A customer who sends the same question again after the assistant answered it.

The router reads one message at a time, so "what is the exit fee" is a calm question
the second time too. In the conversation it says the answer did not help: the issue's
"frustration with the bot or repeated contact". When the customer's message repeats
their previous one (the same words, give or take a few: Jaccard similarity of the word
sets at least ``SIMILARITY``, at least ``MIN_WORDS`` words) and the assistant replied
in between, a message the router reads as a question is read as frustration, so the
reviewer brings in a person instead of sending the same answer again.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from chat.assistant.contract import Intent

FRUSTRATION = "frustration"
ANSWER = "answer"
MIN_WORDS = 3
SIMILARITY = 0.8
# The share of the router's probability moved to frustration.
WEIGHT = 0.9


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def question_repeated(history: list[dict[str, Any]], question: str) -> bool:
    """The customer's previous message, answered by the assistant since, asked what
    ``question`` asks (``history`` may end with ``question`` itself, already stored)."""
    current = _words(question)
    if len(current) < MIN_WORDS:
        return False
    answered = False
    skipped_current = False
    for item in reversed(history):
        role, text = item.get("role"), str(item.get("text") or "")
        if role == "customer":
            if not answered and not skipped_current and text.strip() == question.strip():
                skipped_current = True
                continue
            if not answered:
                return False  # two customer messages in a row: nothing was answered
            earlier = _words(text)
            return len(current & earlier) / len(current | earlier) >= SIMILARITY
        if role == "assistant":
            answered = True
        elif role == "agent":
            return False  # a person is in the conversation
    return False


def intent_after_repeat(intent: Intent, question: str) -> Intent:
    """The router's reading of a repeated question: frustration, if it read a question."""
    if intent.label != ANSWER:
        return intent
    scores = {label: (1.0 - WEIGHT) * p for label, p in (intent.scores or {}).items()}
    scores[FRUSTRATION] = scores.get(FRUSTRATION, 0.0) + WEIGHT
    return replace(
        intent,
        label=FRUSTRATION,
        confidence=scores[FRUSTRATION],
        scores=scores,
        evidence=question,
    )
