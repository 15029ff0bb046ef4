"""Rate limits count the client address and the account, not only the visitor cookie
(issue 11, item 6): clearing cookies gives no fresh budget of conversations or turns."""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client

from chat.clients import client_address, client_address_from
from chat.models import Conversation
from tests.chat.conftest import open_socket, receive_until
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _one_window():
    """The limits count in fixed windows (a minute, an hour): a test whose requests
    straddle a window's end would see the count start again (it did, once, in CI).
    Start each test at least 15 s before the next minute."""
    left = 60 - time.time() % 60
    if left < 15:
        time.sleep(left + 0.1)


def start_with_fresh_cookies(address: str, forwarded_for: str = "") -> int:
    """A visitor who clears cookies before each start: a new client every time."""
    client = Client(REMOTE_ADDR=address)
    extra = {"HTTP_X_FORWARDED_FOR": forwarded_for} if forwarded_for else {}
    client.get("/", **extra)
    return client.post(
        "/chat/start/", json.dumps({}), content_type="application/json", **extra
    ).status_code


def test_clearing_cookies_gives_no_fresh_budget_of_conversations(settings):
    settings.CHAT_RATE_LIMIT_CONVERSATIONS = "2/hour"
    settings.CHAT_RATE_LIMIT_CONVERSATIONS_PER_ADDRESS = "3/hour"

    codes = [start_with_fresh_cookies("203.0.113.7") for _ in range(4)]
    elsewhere = start_with_fresh_cookies("198.51.100.9")

    assert codes == [201, 201, 201, 429]
    assert elsewhere == 201
    assert Conversation.objects.count() == 4


def test_a_forged_forwarded_for_header_does_not_reset_the_budget(settings):
    settings.CHAT_RATE_LIMIT_CONVERSATIONS_PER_ADDRESS = "2/hour"

    codes = [
        start_with_fresh_cookies("203.0.113.7", forwarded_for=f"192.0.2.{i}") for i in range(3)
    ]

    assert codes == [201, 201, 429]


def test_behind_a_trusted_proxy_each_client_has_its_own_budget(settings):
    settings.CHAT_RATE_LIMIT_CONVERSATIONS_PER_ADDRESS = "1/hour"
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]

    first = start_with_fresh_cookies("10.0.0.2", forwarded_for="203.0.113.7")
    second = start_with_fresh_cookies("10.0.0.3", forwarded_for="198.51.100.9")
    again = start_with_fresh_cookies("10.0.0.2", forwarded_for="203.0.113.7, 10.0.0.9")

    assert (first, second, again) == (201, 201, 429)


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("203.0.113.7", "1.2.3.4", [], "203.0.113.7"),
        ("10.0.0.2", "1.2.3.4", ["10.0.0.0/8"], "1.2.3.4"),
        ("10.0.0.2", "6.6.6.6, 1.2.3.4", ["10.0.0.0/8"], "1.2.3.4"),
        ("10.0.0.2", "1.2.3.4, 10.0.0.7", ["10.0.0.0/8"], "1.2.3.4"),
        ("10.0.0.2", "garbage, 1.2.3.4", ["10.0.0.0/8"], "1.2.3.4"),
        ("10.0.0.2", "1.2.3.4, garbage", ["10.0.0.0/8"], "10.0.0.2"),
        ("10.0.0.2", "", ["10.0.0.0/8"], "10.0.0.2"),
        ("::1", "[2001:db8::7]:443", ["::1/128"], "2001:db8::7"),
        ("", "1.2.3.4", [], "unknown"),
    ],
)
def test_client_address_rule(settings, peer, forwarded, trusted, expected):
    settings.TRUSTED_PROXIES = trusted

    assert client_address_from(peer=peer, forwarded_for=[forwarded] if forwarded else []) == (
        expected
    )
    meta = {"REMOTE_ADDR": peer, "HTTP_X_FORWARDED_FOR": forwarded}
    assert client_address(meta) == expected


def test_api_messages_are_limited_per_account_whatever_the_address(
    api_client, customer, pipeline, settings
):
    settings.CHAT_RATE_LIMIT_MESSAGES = "2/min"
    conversation = ConversationFactory(customer=customer)
    api_client.force_authenticate(customer)
    url = f"/api/conversations/{conversation.pk}/messages/"

    codes = [
        api_client.post(
            url, {"client_id": f"m{i}", "text": "hello"}, format="json", REMOTE_ADDR=f"192.0.2.{i}"
        ).status_code
        for i in range(3)
    ]

    assert codes == [201, 201, 429]


@pytest.mark.django_db(transaction=True)
async def test_socket_messages_count_the_address_across_visitors(scripted, settings):
    from channels.db import database_sync_to_async

    from chat import turns
    from chat.visitors import visitor_token_issue

    settings.CHAT_RATE_LIMIT_MESSAGES_PER_ADDRESS = "2/min"
    results = []
    for i in range(3):
        visitor_id, token = visitor_token_issue()
        conversation = await database_sync_to_async(ConversationFactory)(visitor_id=visitor_id)
        comm = await open_socket(conversation.pk, visitor_token=token)
        await comm.send_json_to({"type": "message", "client_id": f"s{i}", "text": "hi"})
        frames = await receive_until(comm, "ack") if i < 2 else await receive_until(comm, "error")
        results.append(frames[-1].get("code", frames[-1]["type"]))
        await turns.turns_drain()
        await comm.disconnect()

    assert results == ["ack", "ack", "rate_limited"]


def test_retried_messages_are_never_counted_even_at_the_limit(
    api_client, customer, pipeline, settings
):
    """A client that resends after a timeout (same client_id) spends none of its
    budget, and a resend once the budget is spent still gets its stored message back."""
    settings.CHAT_RATE_LIMIT_MESSAGES = "2/min"
    conversation = ConversationFactory(customer=customer)
    api_client.force_authenticate(customer)
    url = f"/api/conversations/{conversation.pk}/messages/"

    def send(client_id: str) -> tuple[int, str]:
        response = api_client.post(url, {"client_id": client_id, "text": "hello"}, format="json")
        return response.status_code, response.json().get("outcome", response.json().get("code"))

    first = [send("m1"), send("m1"), send("m1"), send("m2")]
    over = [send("m3"), send("m2")]

    assert [code for code, _ in first] == [201, 200, 200, 201]
    assert over == [(429, "rate_limited"), (200, "duplicate")]
    assert list(
        conversation.messages.filter(role="customer").values_list("client_id", flat=True)
    ) == [
        "m1",
        "m2",
    ]
