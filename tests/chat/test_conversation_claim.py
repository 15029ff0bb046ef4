"""A customer's anonymous conversations on a device join their account at sign-in."""

from __future__ import annotations

import pytest

from chat import services
from chat.selectors import conversations_for_customer
from chat.visitors import conversation_audience

pytestmark = pytest.mark.django_db


def start(*, visitor_id: str, customer=None, title: str):
    return services.conversation_start(
        customer=customer, visitor_id=visitor_id, rate_subject="test:claim", title=title
    )


def test_the_devices_anonymous_conversations_join_the_account(customer, make_user):
    mine = start(visitor_id="device-a", title="Router drops")
    services.customer_message_receive(
        conversation=mine,
        text="My router drops every hour",
        client_id="c1",
        author=None,
        rate_subject="visitor:device-a",
    )
    other_device = start(visitor_id="device-b", title="Someone else")
    someone = make_user(username="someone")
    already_theirs = start(visitor_id="device-a", customer=someone, title="Signed in before")

    claimed = services.conversations_claim(customer=customer, visitor_id="device-a")

    assert claimed == 1
    mine.refresh_from_db()
    other_device.refresh_from_db()
    already_theirs.refresh_from_db()
    assert mine.customer == customer
    assert other_device.customer is None
    assert already_theirs.customer == someone  # never taken from another account
    assert list(conversations_for_customer(user=customer, visitor_id="")) == [mine]
    assert mine.messages.get().text == "My router drops every hour"
    # The conversation is now the account's: it opens from any device, not from the
    # anonymous token alone.
    assert conversation_audience(conversation=mine, user=customer, visitor_id="") == "customer"
    assert conversation_audience(conversation=mine, user=None, visitor_id="device-a") is None


def test_no_visitor_token_claims_nothing(customer):
    start(visitor_id="", title="API conversation")

    assert services.conversations_claim(customer=customer, visitor_id="") == 0


def test_claiming_twice_is_harmless(customer):
    start(visitor_id="device-a", title="One")

    assert services.conversations_claim(customer=customer, visitor_id="device-a") == 1
    assert services.conversations_claim(customer=customer, visitor_id="device-a") == 0
