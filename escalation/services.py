"""Escalation decisions. The chat turn pipeline calls ``turn_review`` before any draft is
shown and ``turn_failed`` when the assistant fails; both return a ``TurnVerdict``.

(The rules engine, tickets and takeover are built in the escalation issue; until then
these functions let every turn proceed.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chat.models import Conversation, Message


@dataclass(frozen=True)
class TurnVerdict:
    escalate: bool = False  # withhold the draft and hand the conversation to a person
    block: bool = False  # harmful content: no draft is generated or shown at all
    reason: str = ""
    customer_notice: str = ""  # shown to the customer instead of the draft
    details: dict[str, Any] = field(default_factory=dict)


def turn_review(
    *, conversation: Conversation, customer_message: Message, signals: dict[str, Any]
) -> TurnVerdict:
    """Decide before the draft is shown. ``signals``: {"sentiment": {...}, "retrieval": {...}}."""
    return TurnVerdict()


def turn_failed(
    *, conversation: Conversation, customer_message: Message, error: str
) -> TurnVerdict:
    """The assistant failed on this turn (provider error or timeout)."""
    return TurnVerdict()


def escalation_request_human(*, conversation: Conversation, customer_message: Message | None):
    """The customer pressed "Talk to a person"."""
    return TurnVerdict()
