"""The chat page: visitor tokens, starting conversations, who sees which history."""

from __future__ import annotations

import json

import pytest

from chat.models import Conversation
from chat.visitors import VISITOR_COOKIE, visitor_id_from_token
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db


def start(client, title="Help"):
    return client.post(
        "/chat/start/", json.dumps({"title": title}), content_type="application/json"
    )


def test_first_visit_gets_a_signed_visitor_token_and_the_widget(client):
    response = client.get("/")

    token = response.cookies[VISITOR_COOKIE].value
    assert visitor_id_from_token(token)
    assert visitor_id_from_token(token + "x") == ""
    assert response.cookies[VISITOR_COOKIE]["httponly"]
    html = response.content.decode()
    assert "Talk to a person" in html and 'id="chat-config"' in html
    assert "offline assistant" in html  # the embedded default provider is named honestly


def test_visitor_starts_conversations_bound_to_their_token(client):
    client.get("/")
    visitor_id = visitor_id_from_token(client.cookies[VISITOR_COOKIE].value)
    response = start(client, "My speaker")

    assert response.status_code == 201
    conversation = Conversation.objects.get(pk=response.json()["id"])
    assert (conversation.visitor_id, conversation.customer, conversation.title) == (
        visitor_id,
        None,
        "My speaker",
    )
    page = client.get(f"/?c={conversation.pk}").content.decode()
    assert f'"conversationId": "{conversation.pk}"' in page


def test_someone_elses_conversation_is_not_opened(client):
    other = ConversationFactory(visitor_id="another-visitor", title="Private matter")
    page = client.get(f"/?c={other.pk}").content.decode()
    assert '"conversationId": ""' in page
    assert "Private matter" not in page


def test_logged_in_customer_sees_their_past_conversations(client, customer):
    ConversationFactory(customer=customer, title="Router keeps dropping")
    ConversationFactory(title="Not mine")
    client.force_login(customer)
    page = client.get("/").content.decode()
    assert "Router keeps dropping" in page and "Not mine" not in page
    response = start(client)
    assert Conversation.objects.get(pk=response.json()["id"]).customer == customer


def test_conversation_starts_are_rate_limited_per_visitor(client, settings):
    settings.CHAT_RATE_LIMIT_CONVERSATIONS = "2/hour"
    client.get("/")
    codes = [start(client).status_code for _ in range(3)]
    assert codes == [201, 201, 429]
    assert Conversation.objects.count() == 2


def test_start_needs_csrf(client):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.get("/")
    assert start(strict).status_code == 403
