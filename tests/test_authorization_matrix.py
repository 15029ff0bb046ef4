"""Who may call what: every API operation in the OpenAPI schema and every socket, for each
role, against one table (issue 11).

The table is the rule. An operation in the schema without a row, or a socket route
without one, fails ``test_every_operation_and_socket_has_a_rule``: a new endpoint cannot
ship without someone deciding who may use it. Each role calls with a real API token
(Basic for the token endpoint), against one world of objects: a conversation of
``customer`` handled by ``agent``, a conversation waiting for a person, a resolved
ticket, a label assigned to ``reviewer``, a snapshot, a queued training run, a webhook.
Each role's call runs in a savepoint that is rolled back, so every role meets the same
world.

Codes: 401 no credentials; 403 the role may not; 404 the object is not theirs to see;
409/400 allowed, but the object's state or the (minimal) body refuses it; 503 the Step
Functions callback is not configured in tests (it authenticates by signature, not role).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from config import roles

ROLES = (
    "anonymous",
    "customer",
    "other_customer",
    "agent",
    "other_agent",
    "reviewer",
    "ml_engineer",
    "admin",
)
PASSWORD = "pw-for-tests"

# fmt: off
# Each row: (anonymous, customer, other_customer, agent, other_agent, reviewer, ml_engineer,
# admin), the order of ROLES.
API = {
    ("POST", "/api/auth/token/"):                           (401,200,200,200,200,200,200,200),
    ("POST", "/api/auth/token/revoke/"):                    (401,204,204,204,204,204,204,204),
    ("POST", "/api/auth/token/revoke-all/"):                (401,204,204,204,204,204,204,204),
    ("GET", "/api/conversations/"):                         (401,200,200,200,200,200,200,200),
    ("POST", "/api/conversations/"):                        (401,201,201,201,201,201,201,201),
    ("GET", "/api/conversations/{id}/"):                    (401,200,404,200,200,404,404,200),
    ("POST", "/api/conversations/{id}/end/"):               (401,200,404,403,403,404,404,403),
    ("POST", "/api/conversations/{id}/feedback/"):          (401,201,404,403,403,404,404,403),
    ("GET", "/api/conversations/{id}/messages/"):           (401,200,404,200,200,404,404,200),
    ("POST", "/api/conversations/{id}/messages/"):          (401,201,404,403,403,404,404,403),
    ("GET", "/api/conversations/{id}/transcript/"):         (401,403,403,200,200,403,403,200),
    ("POST", "/api/conversations/{id}/transcript/"):        (401,403,403,201,201,403,403,201),
    ("POST", "/api/escalation/callbacks/step-functions/"):  (503,503,503,503,503,503,503,503),
    ("POST", "/api/escalation/conversations/{conversation_id}/take-over/"):
                                                            (401,403,403,200,200,403,403,200),
    # Any support staff may flag a message for the router's training; this conversation
    # has no message the assistant answered, so the allowed ones get 400.
    ("POST", "/api/escalation/conversations/{conversation_id}/flag/"):
                                                            (401,403,403,400,400,403,403,400),
    ("GET", "/api/escalation/events/"):                     (401,403,403,200,200,403,403,200),
    ("GET", "/api/escalation/events/{id}/"):                (401,403,403,200,200,403,403,200),
    ("GET", "/api/escalation/presence/"):                   (401,403,403,200,200,403,403,200),
    ("POST", "/api/escalation/presence/"):                  (401,403,403,200,200,403,403,200),
    ("GET", "/api/escalation/tickets/"):                    (401,403,403,200,200,403,403,200),
    ("GET", "/api/escalation/tickets/{id}/"):               (401,403,403,200,200,403,403,200),
    ("POST", "/api/escalation/tickets/{id}/assign/"):       (401,403,403,403,403,403,403,200),
    ("POST", "/api/escalation/tickets/{id}/claim/"):        (401,403,403,200,200,403,403,200),
    ("POST", "/api/escalation/tickets/{id}/close/"):        (401,403,403,200,403,403,403,200),
    ("POST", "/api/escalation/tickets/{id}/hand-back/"):    (401,403,403,200,403,403,403,403),
    ("POST", "/api/escalation/tickets/{id}/knowledge-draft/"):
                                                            (401,403,403,201,201,403,403,201),
    ("POST", "/api/escalation/tickets/{id}/resolve/"):      (401,403,403,200,403,403,403,200),
    ("GET", "/api/escalation/webhooks/"):                   (401,403,403,403,403,403,403,200),
    ("POST", "/api/escalation/webhooks/"):                  (401,403,403,403,403,403,403,201),
    ("GET", "/api/escalation/webhooks/{id}/"):              (401,403,403,403,403,403,403,200),
    ("PUT", "/api/escalation/webhooks/{id}/"):              (401,403,403,403,403,403,403,200),
    ("PATCH", "/api/escalation/webhooks/{id}/"):            (401,403,403,403,403,403,403,200),
    ("DELETE", "/api/escalation/webhooks/{id}/"):           (401,403,403,403,403,403,403,204),
    ("GET", "/api/escalation/webhooks/{id}/deliveries/"):   (401,403,403,403,403,403,403,200),
    ("GET", "/api/labeling/agreement/"):                    (401,403,403,403,403,403,200,200),
    ("GET", "/api/labeling/assignments/"):                  (401,403,403,403,403,200,200,200),
    ("GET", "/api/labeling/assignments/{id}/"):             (401,403,403,403,403,200,200,200),
    ("POST", "/api/labeling/assignments/{id}/submit/"):     (401,403,403,403,403,200,409,409),
    ("GET", "/api/labeling/exports/input-manifest.jsonl"):  (401,403,403,403,403,403,200,200),
    ("GET", "/api/labeling/exports/output-manifest.jsonl"): (401,403,403,403,403,403,200,200),
    ("POST", "/api/labeling/imports/output-manifest/"):     (401,403,403,403,403,403,400,400),
    ("GET", "/api/labeling/items/"):                        (401,403,403,403,403,200,200,200),
    ("GET", "/api/labeling/items/{id}/"):                   (401,403,403,403,403,200,200,200),
    ("POST", "/api/labeling/sampling-policies/{id}/run/"):  (401,403,403,403,403,403,200,200),
    ("GET", "/api/labeling/snapshots/"):                    (401,403,403,403,403,200,200,200),
    ("POST", "/api/labeling/snapshots/"):                   (401,403,403,403,403,403,201,201),
    ("GET", "/api/labeling/snapshots/{id}/"):               (401,403,403,403,403,200,200,200),
    ("GET", "/api/labeling/snapshots/{id}/rows/"):          (401,403,403,403,403,200,200,200),
    ("GET", "/api/training/deployments/"):                  (401,403,403,403,403,403,200,200),
    ("POST", "/api/training/deployments/rollback/"):        (401,403,403,403,403,403,409,409),
    ("GET", "/api/training/runs/"):                         (401,403,403,403,403,403,200,200),
    ("POST", "/api/training/runs/"):                        (401,403,403,403,403,403,400,400),
    ("GET", "/api/training/runs/{id}/"):                    (401,403,403,403,403,403,200,200),
    ("POST", "/api/training/runs/{id}/approve/"):           (401,403,403,403,403,403,409,409),
    ("POST", "/api/training/runs/{id}/cancel/"):            (401,403,403,403,403,403,200,200),
    ("POST", "/api/training/runs/{id}/deploy/"):            (401,403,403,403,403,403,409,409),
    ("GET", "/api/training/runs/{id}/live/"):               (401,403,403,403,403,403,200,200),
}

# What each socket does for each role: "customer" / "agent" is the audience a chat socket
# joins as, "open" an agent socket that accepted, 4403 a refusal. Reviewers and ML
# engineers are not support staff: they never join a customer's live chat (item 3).
SOCKETS = {
    "/ws/chat/{conversation}/":
        (4403, "customer", 4403, "agent", "agent", 4403, 4403, "agent"),
    "/ws/agent/inbox/":
        (4403, 4403, 4403, "open", "open", 4403, 4403, "open"),
    "/ws/agent/conversations/{conversation}/":
        (4403, 4403, 4403, "open", "open", 4403, 4403, "open"),
}
# fmt: on

# Which object a path's id names (default: by the path's first segments).
TARGETS = {
    "/api/escalation/tickets/{id}/claim/": "open_ticket",
    "/api/escalation/tickets/{id}/knowledge-draft/": "resolved_ticket",
    "/api/escalation/conversations/{conversation_id}/take-over/": "waiting_conversation",
    "/api/escalation/conversations/{conversation_id}/flag/": "conversation",
}
TARGET_BY_PREFIX = {
    "/api/conversations/": "conversation",
    "/api/escalation/events/": "event",
    "/api/escalation/tickets/": "assigned_ticket",
    "/api/escalation/webhooks/": "webhook",
    "/api/labeling/assignments/": "label",
    "/api/labeling/items/": "item",
    "/api/labeling/sampling-policies/": "policy",
    "/api/labeling/snapshots/": "snapshot",
    "/api/training/runs/": "run",
}
WEBHOOK = {"name": "ops", "url": "https://hooks.example.com/loopdesk", "secret": "s3cret"}
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/conversations/"): {"title": "From the matrix"},
    ("POST", "/api/conversations/{id}/feedback/"): {"score": 4},
    ("POST", "/api/conversations/{id}/messages/"): {"client_id": "matrix-1", "text": "Hello?"},
    ("POST", "/api/escalation/presence/"): {"on_duty": True},
    ("POST", "/api/escalation/conversations/{conversation_id}/flag/"): {"category": "safety"},
    ("POST", "/api/escalation/tickets/{id}/assign/"): {"agent": None},
    ("POST", "/api/escalation/tickets/{id}/close/"): {"outcome": "abandoned"},
    ("POST", "/api/escalation/tickets/{id}/resolve/"): {"outcome": "approved"},
    ("POST", "/api/escalation/webhooks/"): WEBHOOK,
    ("PUT", "/api/escalation/webhooks/{id}/"): WEBHOOK,
    ("PATCH", "/api/escalation/webhooks/{id}/"): {"enabled": False},
    ("POST", "/api/labeling/assignments/{id}/submit/"): {"score": 4},
    ("POST", "/api/labeling/snapshots/"): {"name": "from-the-matrix"},
    ("POST", "/api/training/runs/{id}/deploy/"): {"slot": ""},
    ("POST", "/api/training/deployments/rollback/"): {"slot": ""},
}
QUERIES = {("GET", "/api/labeling/snapshots/{id}/rows/"): {"kind": "pair"}}
BASIC_AUTH = {("POST", "/api/auth/token/")}


@dataclass
class World:
    users: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, Any] = field(default_factory=dict)


def world_build() -> World:
    """Every object the table's operations name, made through the services."""
    from knox.models import AuthToken

    from chat.models import Message
    from chat.services import human_request, message_append
    from chat.transcripts import transcript_export
    from escalation import services as escalation
    from escalation.models import DomainEvent, Ticket, Webhook
    from labeling.models import LabelingItem, SamplingPolicy
    from labeling.services import item_create_from_message, snapshot_create_from_rows
    from tests.factories import ConversationFactory, UserFactory
    from training.services.runs import run_create

    roles.roles_sync()
    world = World()
    groups = {
        "customer": roles.CUSTOMERS,
        "other_customer": roles.CUSTOMERS,
        "agent": roles.AGENTS,
        "other_agent": roles.AGENTS,
        "reviewer": roles.REVIEWERS,
        "ml_engineer": roles.ML_ENGINEERS,
        "admin": roles.ADMINS,
    }
    for name, group in groups.items():
        user = UserFactory(username=f"matrix-{name}", role=group)
        world.users[name] = user
        world.tokens[name] = AuthToken.objects.create(user=user)[1]
    customer, agent = world.users["customer"], world.users["agent"]

    def escalated(text: str):
        conversation = ConversationFactory(customer=customer)
        message_append(conversation=conversation, role=Message.Role.CUSTOMER, text=text)
        human_request(conversation=conversation, requested_by=customer)
        return conversation, Ticket.objects.get(conversation=conversation)

    handled, assigned = escalated("My invoice is wrong")
    escalation.ticket_claim(ticket=assigned, agent=agent)
    transcript_export(conversation=handled)
    waiting, open_ticket = escalated("Where is my order?")
    answered, resolved = escalated("How do I pair the remote?")
    escalation.ticket_claim(ticket=resolved, agent=agent)
    escalation.agent_message_send(conversation=answered, agent=agent, text="Hold the button.")
    escalation.ticket_resolve(ticket=resolved, agent=agent, outcome="approved")

    question, _ = message_append(
        conversation=ConversationFactory(), role=Message.Role.CUSTOMER, text="Is it 5 GHz?"
    )
    reply, _ = message_append(
        conversation=question.conversation,
        role=Message.Role.ASSISTANT,
        text="Only 2.4 GHz.",
        reply_to=question,
    )
    item = item_create_from_message(message=reply, reason=LabelingItem.Reason.MANUAL, judge=False)
    assert item is not None
    snapshot = snapshot_create_from_rows(
        name="matrix",
        rows={"pair": [{"prompt": "q?", "chosen": "yes", "rejected": "no", "split": "train"}]},
    )
    run = run_create(
        snapshot=snapshot,
        created_by=world.users["ml_engineer"],
        preset="tiny_cpu_dpo",
        enqueue=False,
    )
    world.ids = {
        "conversation": handled.pk,
        "waiting_conversation": waiting.pk,
        "assigned_ticket": assigned.pk,
        "open_ticket": open_ticket.pk,
        "resolved_ticket": resolved.pk,
        "event": DomainEvent.objects.order_by("pk").first().pk,  # type: ignore[union-attr]
        "webhook": Webhook.objects.create(**WEBHOOK).pk,
        "label": item.labels.get(reviewer=world.users["reviewer"]).pk,
        "item": item.pk,
        "policy": SamplingPolicy.objects.create(name="matrix", random_share=0).pk,
        "snapshot": snapshot.pk,
        "run": run.pk,
    }
    return world


def schema_operations() -> set[tuple[str, str]]:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }


def socket_routes() -> set[str]:
    from config.routing import websocket_urlpatterns

    routes = set()
    for pattern in websocket_urlpatterns:
        route = pattern.pattern.regex.pattern.lstrip("^").rstrip("$")
        routes.add("/" + route.replace("(?P<conversation_id>[^/]+)", "{conversation}"))
    return routes


@pytest.mark.django_db
def test_every_operation_and_socket_has_a_rule():
    operations = schema_operations()

    assert operations - set(API) == set(), "operations without a rule in the table"
    assert set(API) - operations == set(), "rules for operations that no longer exist"
    assert socket_routes() == set(SOCKETS)


class _Rollback(Exception):
    pass


def call(world: World, role: str, method: str, path: str) -> int:
    client = APIClient()
    if role != "anonymous":
        if (method, path) in BASIC_AUTH:
            user = world.users[role].get_username()
            credentials = base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
            client.credentials(HTTP_AUTHORIZATION=f"Basic {credentials}")
        else:
            client.credentials(HTTP_AUTHORIZATION=f"Token {world.tokens[role]}")
    target = TARGETS.get(path) or next(
        (name for prefix, name in TARGET_BY_PREFIX.items() if path.startswith(prefix)), None
    )
    url = path
    if "{" in path:
        assert target, path
        url = path.replace("{id}", str(world.ids[target])).replace(
            "{conversation_id}", str(world.ids[target])
        )
    body = BODIES.get((method, path))
    if QUERIES.get((method, path)):
        url += "?" + "&".join(f"{k}={v}" for k, v in QUERIES[(method, path)].items())
    status = 0
    try:
        with transaction.atomic():
            response = client.generic(
                method,
                url,
                data=json.dumps(body) if body is not None else "",
                content_type="application/json",
                REMOTE_ADDR="203.0.113.10",
            )
            status = response.status_code
            raise _Rollback
    except _Rollback:
        pass
    return status


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), sorted(API), ids=lambda value: value)
def test_each_role_gets_its_rule(method, path):
    world = world_build()

    seen = {role: call(world, role, method, path) for role in ROLES}

    expected = dict(zip(ROLES, API[(method, path)], strict=True))
    assert seen == expected


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", sorted(SOCKETS))
async def test_each_role_gets_its_socket_rule(route):
    from channels.auth import AuthMiddlewareStack
    from channels.db import database_sync_to_async
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator

    from config.routing import websocket_urlpatterns
    from tests.chat.conftest import session_cookie_for

    world = await database_sync_to_async(world_build)()
    application = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
    path = route.replace("{conversation}", str(world.ids["conversation"]))
    seen = {}
    for role in ROLES:
        headers = [(b"origin", b"http://localhost")]
        if role != "anonymous":
            cookie = await database_sync_to_async(session_cookie_for)(world.users[role])
            headers.append((b"cookie", cookie.encode()))
        comm = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await comm.connect()
        assert connected
        first = await comm.receive_output(timeout=5)
        if first["type"] == "websocket.close":
            seen[role] = first["code"]
        else:
            frame = json.loads(first["text"])
            seen[role] = frame.get("audience") or "open"
        await comm.disconnect()

    assert seen == dict(zip(ROLES, SOCKETS[route], strict=True))
