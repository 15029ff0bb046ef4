"""Escalation fixtures: a conversation, customer messages, on-duty agents, a ticket."""

from __future__ import annotations

import pytest

from chat.models import Conversation, Message
from chat.services import message_append
from escalation import services
from tests.factories import ConversationFactory


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
    from chat.services import human_request
    from escalation.models import Ticket

    say("I need help with my invoice")
    human_request(conversation=conversation, requested_by=None)
    conversation.refresh_from_db()
    return Ticket.objects.get(conversation=conversation)
