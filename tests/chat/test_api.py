"""The chat API: conversations, messages through the assistant turn, feedback, schema."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from knox.models import AuthToken

from chat import services
from chat.models import Conversation, CustomerFeedback, Message
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def customer_client(api_client, customer):
    _, token = AuthToken.objects.create(user=customer)
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return api_client


def test_anonymous_callers_are_refused(api_client):
    assert api_client.get("/api/conversations/").status_code in (401, 403)


def test_create_and_list_own_conversations_only(customer_client, customer, make_user):
    created = customer_client.post("/api/conversations/", {"title": "Billing"}, format="json")
    other = ConversationFactory(customer=make_user("customers", username="someone"))
    listed = customer_client.get("/api/conversations/")

    assert created.status_code == 201
    conversation = Conversation.objects.get(pk=created.json()["id"])
    assert (conversation.customer, conversation.channel) == (customer, "api")
    ids = [c["id"] for c in listed.json()["results"]]
    assert ids == [created.json()["id"]]
    assert customer_client.get(f"/api/conversations/{other.pk}/").status_code == 404


def test_conversation_filters_and_cursor_pagination(customer_client, customer):
    old = ConversationFactory(customer=customer, status="ended")
    Conversation.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=3))
    recent = [ConversationFactory(customer=customer) for _ in range(3)]
    ConversationFactory(customer=customer, handling="human")

    ended = customer_client.get("/api/conversations/?status=ended").json()["results"]
    human = customer_client.get("/api/conversations/?handling=human").json()["results"]
    today = timezone.now().date().isoformat()
    before_today = customer_client.get(f"/api/conversations/?created_before={today}").json()
    first = customer_client.get("/api/conversations/?page_size=2&created_after=" + today).json()
    second = customer_client.get(first["next"]).json()

    assert [c["id"] for c in ended] == [str(old.pk)]
    assert [c["handling"] for c in human] == ["human"]
    assert [c["id"] for c in before_today["results"]] == [str(old.pk)]
    paged = [c["id"] for c in first["results"] + second["results"]]
    assert len(paged) == 4 and len(set(paged)) == 4 and str(old.pk) not in paged
    assert {str(c.pk) for c in recent} <= set(paged)
    assert customer_client.get("/api/conversations/?created_after=yesterday").status_code == 400


def test_post_message_runs_the_assistant_turn_and_dedups(customer_client, customer, scripted):
    conversation = ConversationFactory(customer=customer)
    url = f"/api/conversations/{conversation.pk}/messages/"

    first = customer_client.post(
        url, {"client_id": "api-1", "text": "Reset password?"}, format="json"
    )
    retry = customer_client.post(
        url, {"client_id": "api-1", "text": "Reset password?"}, format="json"
    )

    assert first.status_code == 201
    body = first.json()
    assert body["outcome"] == "answered"
    assert body["message"]["seq"] == 1 and body["message"]["role"] == "customer"
    assert body["reply"]["text"] == scripted.answer
    assert body["reply"]["sources"][0]["slug"] == "reset-password"
    assert "turn" not in body["reply"] and "visibility" not in body["reply"]
    assert retry.status_code == 200
    assert retry.json()["outcome"] == "duplicate"
    assert retry.json()["reply"]["id"] == body["reply"]["id"]
    assert Message.objects.filter(conversation=conversation).count() == 2
    assert scripted.questions == ["Reset password?"]


def test_post_message_failure_returns_the_notice_and_keeps_the_message(
    customer_client, customer, scripted
):
    scripted.fail_on_prepare = RuntimeError("provider down")
    conversation = ConversationFactory(customer=customer)
    response = customer_client.post(
        f"/api/conversations/{conversation.pk}/messages/",
        {"client_id": "api-2", "text": "Hello"},
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["outcome"] == "failed"
    assert "could not answer" in response.json()["notice"]["text"]
    conversation.refresh_from_db()
    assert conversation.needs_attention
    assert Message.objects.filter(conversation=conversation, role="customer").count() == 1


def test_post_message_bad_input_and_rate_limit(customer_client, customer, scripted, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 20
    settings.CHAT_RATE_LIMIT_MESSAGES = "1/min"
    conversation = ConversationFactory(customer=customer)
    url = f"/api/conversations/{conversation.pk}/messages/"

    empty = customer_client.post(url, {"client_id": "e", "text": "  "}, format="json")
    long = customer_client.post(url, {"client_id": "l", "text": "x" * 21}, format="json")
    ok = customer_client.post(url, {"client_id": "o", "text": "fine"}, format="json")
    limited = customer_client.post(url, {"client_id": "r", "text": "again"}, format="json")

    assert (empty.status_code, empty.json()["code"]) == (400, "empty_message")
    assert (long.status_code, long.json()["code"]) == (400, "message_too_long")
    assert ok.status_code == 201
    assert (limited.status_code, limited.json()["code"]) == (429, "rate_limited")
    assert list(
        Message.objects.filter(conversation=conversation, role="customer").values_list(
            "client_id", flat=True
        )
    ) == ["o"]


def test_messages_cursor_on_seq_and_audiences(customer_client, customer, agent, api_client):
    conversation = ConversationFactory(customer=customer)
    for i in range(5):
        services.message_append(conversation=conversation, role="customer", text=f"m{i}")
    services.message_append(
        conversation=conversation, role="assistant", text="draft", visibility="withheld"
    )
    url = f"/api/conversations/{conversation.pk}/messages/"

    page1 = customer_client.get(url + "?page_size=2").json()
    page2 = customer_client.get(page1["next"]).json()
    after = customer_client.get(url + "?after_seq=3").json()["results"]
    api_client.credentials()
    api_client.force_authenticate(agent)
    as_agent = api_client.get(url).json()["results"]

    assert [m["seq"] for m in page1["results"] + page2["results"]] == [1, 2, 3, 4]
    assert [m["seq"] for m in after] == [4, 5]  # the withheld draft (6) is not for customers
    assert as_agent[-1]["visibility"] == "withheld" and "turn" in as_agent[-1]


def test_feedback_and_end(customer_client, customer):
    conversation = ConversationFactory(customer=customer)
    services.message_append(conversation=conversation, role="assistant", text="answer")
    base = f"/api/conversations/{conversation.pk}/"

    ended = customer_client.post(base + "end/")
    bad = customer_client.post(base + "feedback/", {"score": 6}, format="json")
    good = customer_client.post(
        base + "feedback/", {"score": 5, "comment": "Great!"}, format="json"
    )
    again = customer_client.post(base + "feedback/", {"score": 4}, format="json")

    assert ended.json()["status"] == "ended"
    assert bad.status_code == 400
    assert good.status_code == 201 and again.status_code == 201
    feedback = CustomerFeedback.objects.get(conversation=conversation)
    assert feedback.score == 4 and feedback.message.text == "answer"


def test_agents_read_every_conversation_but_cannot_post_as_the_customer(
    api_client, agent, customer
):
    conversation = ConversationFactory(customer=customer)
    api_client.force_authenticate(agent)
    listed = api_client.get("/api/conversations/?needs_attention=false").json()["results"]
    posted = api_client.post(
        f"/api/conversations/{conversation.pk}/messages/",
        {"client_id": "x", "text": "hi"},
        format="json",
    )
    assert str(conversation.pk) in [c["id"] for c in listed]
    assert posted.status_code == 403


def test_schema_documents_the_chat_api(api_client, admin_member):
    api_client.force_authenticate(admin_member)
    response = api_client.get("/api/schema/", HTTP_ACCEPT="application/json")
    docs = api_client.get("/api/docs/")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/conversations/" in paths
    assert "post" in paths["/api/conversations/{id}/messages/"]
    assert "/api/conversations/{id}/feedback/" in paths
    assert "/api/conversations/{id}/transcript/" in paths
    assert docs.status_code == 200
