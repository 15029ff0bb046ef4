"""Hostile input gets a 4xx or an error frame, never a 500 or a closed socket (issue 11,
item 8): lone surrogates and NUL characters wherever text enters, and 10,000 levels of
nesting on both sockets, the API and /chat/start/. CI runs these on PostgreSQL, which
cannot store either character: a refusal there must come before the database."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async

from chat.models import Conversation, CustomerFeedback, Message
from tests.chat.conftest import open_socket, session_cookie_for
from tests.factories import ConversationFactory

SURROGATE = "\\ud800"  # as a client writes it in JSON: a lone UTF-16 surrogate
NUL = "\\u0000"
DEEP = "[" * 10_000 + "]" * 10_000  # 20 KB
DEEP_SMALL = "[" * 5000 + "]" * 5000  # under /chat/start/'s 16 KB, over its depth


@pytest.fixture
def visitor() -> tuple[str, str]:
    from chat.visitors import visitor_token_issue

    return visitor_token_issue()


def frame(**fields) -> str:
    """A JSON frame with raw (already escaped) string values."""
    return "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}"


# --- the customer's socket -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("bad", [SURROGATE, NUL])
@pytest.mark.parametrize(
    "raw",
    [
        lambda bad: frame(type='"message"', client_id='"c1"', text=f'"hello {bad}"'),
        lambda bad: frame(type='"message"', client_id=f'"c{bad}"', text='"hello"'),
        lambda bad: frame(type='"feedback"', score="4", comment=f'"thanks {bad}"'),
        lambda bad: frame(type='"feedback"', score="4", better_answer=f'"{bad}"'),
    ],
    ids=["message text", "client id", "feedback comment", "better answer"],
)
async def test_unstorable_text_on_the_chat_socket_is_an_error_frame(visitor, scripted, raw, bad):
    conversation = await database_sync_to_async(ConversationFactory)(visitor_id=visitor[0])
    comm = await open_socket(conversation.pk, visitor_token=visitor[1])

    await comm.send_to(text_data=raw(bad))
    error = await comm.receive_json_from(timeout=5)
    await comm.send_json_to({"type": "ping"})
    pong = await comm.receive_json_from(timeout=5)
    await comm.disconnect()

    assert (error["type"], error["code"]) == ("error", "invalid_characters")
    assert pong == {"type": "pong"}
    stored = await database_sync_to_async(
        lambda: (Message.objects.count(), CustomerFeedback.objects.count())
    )()
    assert stored == (0, 0)


@pytest.mark.django_db(transaction=True)
async def test_deep_nesting_on_the_chat_socket_is_an_error_frame(visitor):
    conversation = await database_sync_to_async(ConversationFactory)(visitor_id=visitor[0])
    comm = await open_socket(conversation.pk, visitor_token=visitor[1])

    await comm.send_to(text_data=DEEP)
    error = await comm.receive_json_from(timeout=5)
    await comm.send_json_to({"type": "ping"})
    pong = await comm.receive_json_from(timeout=5)
    await comm.disconnect()

    assert error["code"] == "too_deep" and pong == {"type": "pong"}


# --- the agent's socket ----------------------------------------------------------------------


async def _agent_socket(agent, conversation):
    from channels.auth import AuthMiddlewareStack
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator

    from escalation.routing import websocket_urlpatterns

    cookie = await database_sync_to_async(session_cookie_for)(agent)
    comm = WebsocketCommunicator(
        AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
        f"/ws/agent/conversations/{conversation.pk}/",
        headers=[(b"origin", b"http://localhost"), (b"cookie", cookie.encode())],
    )
    connected, _ = await comm.connect()
    assert connected
    state = await comm.receive_json_from(timeout=5)
    assert state["type"] == "conversation.state"
    return comm


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "raw",
    [
        frame(type='"note"', text=f'"internal {SURROGATE}"'),
        frame(type='"note"', text=f'"internal {NUL}"'),
        frame(type='"message"', client_id='"a1"', text=f'"hi {SURROGATE}"'),
        DEEP,
    ],
    ids=["note surrogate", "note NUL", "message surrogate", "deep"],
)
async def test_hostile_frames_on_the_agent_socket_are_error_frames(agent, customer, raw):
    conversation = await database_sync_to_async(ConversationFactory)(customer=customer)
    comm = await _agent_socket(agent, conversation)

    await comm.send_to(text_data=raw)
    error = await comm.receive_json_from(timeout=5)
    await comm.send_json_to({"type": "ping"})
    pong = await comm.receive_json_from(timeout=5)
    await comm.disconnect()

    assert error["type"] == "error" and error["code"] in ("invalid_characters", "too_deep")
    assert pong == {"type": "pong"}
    assert await database_sync_to_async(Message.objects.count)() == 0


# --- HTTP: /chat/start/ and the API ------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "code"),
    [
        (frame(title=f'"Help {SURROGATE}"'), "invalid_characters"),
        (frame(title=f'"Help {NUL}"'), "invalid_characters"),
        (DEEP_SMALL, "too_deep"),
        (DEEP, "too_large"),
        ('{"title": ' + "1" * 5000 + "}", "malformed_json"),
    ],
    ids=["surrogate title", "NUL title", "deep", "deep and large", "huge number"],
)
def test_hostile_chat_start_bodies_are_400(client, body, code):
    client.get("/")

    response = client.post("/chat/start/", body, content_type="application/json")

    assert (response.status_code, response.json()["code"]) == (400, code)
    assert not Conversation.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/conversations/", frame(title=f'"Help {SURROGATE}"')),
        ("/api/conversations/", frame(title=f'"Help {NUL}"')),
        ("/api/conversations/{id}/messages/", frame(client_id='"x1"', text=f'"hi {SURROGATE}"')),
        ("/api/conversations/{id}/messages/", frame(client_id=f'"x{NUL}"', text='"hi"')),
        ("/api/conversations/{id}/feedback/", frame(score="3", comment=f'"{SURROGATE}"')),
        ("/api/conversations/", DEEP),
        ("/api/conversations/{id}/feedback/", DEEP),
    ],
)
def test_hostile_api_bodies_are_400(api_client, customer, path, body):
    conversation = ConversationFactory(customer=customer)
    api_client.force_authenticate(customer)

    response = api_client.generic(
        "POST",
        path.replace("{id}", str(conversation.pk)),
        data=body,
        content_type="application/json",
    )

    assert response.status_code == 400, response.content[:200]
    assert response.json()["code"] in ("invalid_characters", "too_deep")
    assert Message.objects.count() == 0 and CustomerFeedback.objects.count() == 0
    assert Conversation.objects.count() == 1


@pytest.mark.django_db
def test_hostile_json_in_a_staff_api_body_is_400(api_client, admin_member):
    """Dict fields (a run's hyperparameters, webhook event lists) carry arbitrary JSON."""
    api_client.force_authenticate(admin_member)

    response = api_client.generic(
        "POST",
        "/api/training/runs/",
        data=json.dumps({"hyperparameters": {"note": "x\u0000y"}}),
        content_type="application/json",
    )

    assert (response.status_code, response.json()["code"]) == (400, "invalid_characters")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "/api/escalation/tickets/?reason=a%00b",
        "/api/escalation/tickets/1/?priority=%00",
        "/api/conversations/?status=open%00",
        "/api/escalation/events/?name=%00",
    ],
)
def test_a_nul_in_a_query_parameter_is_400(api_client, admin_member, url):
    """Schemathesis found it on PostgreSQL: a NUL in a filter reached the database."""
    api_client.force_authenticate(admin_member)

    response = api_client.get(url)

    assert (response.status_code, response.json()["code"]) == (400, "invalid_characters")


@pytest.mark.django_db
def test_a_nul_in_an_admin_search_is_a_plain_400(client, admin_member):
    client.force_login(admin_member)

    response = client.get("/admin/chat/conversation/?q=%00")

    assert response.status_code == 400


@pytest.mark.django_db
@pytest.mark.parametrize(
    "hyperparameters",
    ['{"note": "a\\u0000b"}', '{"note": "a\\ud800b"}', "[" * 10_000 + "]" * 10_000],
    ids=["NUL", "surrogate", "deep"],
)
def test_hostile_json_typed_in_the_admin_is_a_form_error(client, ml_engineer, hyperparameters):
    from labeling.services import snapshot_create_from_rows
    from training.models import TrainingRun

    snapshot = snapshot_create_from_rows(
        name="admin-json", rows={"pair": [{"prompt": "q", "chosen": "a", "rejected": "b"}]}
    )
    client.force_login(ml_engineer)

    response = client.post(
        "/admin/training/trainingrun/add/",
        {
            "name": "hostile",
            "snapshot": snapshot.pk,
            "algorithm": "dpo",
            "base_model": "/models/starter",
            "seed": 0,
            "device": "auto",
            "lora_target_modules": "",
            "hyperparameters": hyperparameters,
        },
    )

    assert response.status_code == 200  # the form again, with its error
    assert b"errorlist" in response.content
    assert not TrainingRun.objects.exists()
