"""Escalation fixtures: a conversation with a customer message, signals, on-duty agents."""

from __future__ import annotations

from typing import Any

import pytest

from chat.models import Conversation, Message
from chat.services import message_append
from escalation import services
from tests.factories import ConversationFactory


def signals(
    *, compound: float = 0.3, method: str = "vader", negative: int = 0, no_answer: bool = False
) -> dict[str, Any]:
    label = "negative" if (negative or compound <= -0.5) else "neutral"
    return {
        "sentiment": {"label": label, "negative": negative, "score": compound, "method": method},
        "retrieval": {
            "top_score": 0.1 if no_answer else 0.8,
            "no_answer": no_answer,
            "min_score": 0.35,
        },
    }


@pytest.fixture
def conversation(customer) -> Conversation:
    return ConversationFactory(customer=customer)


@pytest.fixture
def say(conversation):
    """Append a customer message the way the chat does."""

    def say(text: str, conv: Conversation | None = None) -> Message:
        message, _ = message_append(
            conversation=conv or conversation, role=Message.Role.CUSTOMER, text=text
        )
        return message

    return say


@pytest.fixture
def on_duty(agent):
    services.agent_presence_set(agent=agent, on_duty=True)
    return agent


@pytest.fixture
def escalated(conversation, say, on_duty):
    """A conversation escalated by the button, waiting for a person."""
    message = say("I need help with my invoice")
    verdict = services.escalation_request_human(conversation=conversation, customer_message=message)
    conversation.refresh_from_db()
    from escalation.models import Ticket

    return Ticket.objects.get(pk=verdict.details["ticket_id"])


@pytest.fixture(autouse=True)
def _default_rules(request):
    """Transactional tests flush the database after each test, seeded rules included:
    put the data migration's defaults back before such a test."""
    marker = request.node.get_closest_marker("django_db")
    if marker and marker.kwargs.get("transaction"):
        import importlib

        from django.apps import apps

        request.getfixturevalue("transactional_db")
        seed = importlib.import_module("escalation.migrations.0002_default_rules").seed
        seed(apps, None)
