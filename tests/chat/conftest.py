"""Chat test helpers: socket factories for visitors / logged-in users, and turn draining
(the scripted assistant is in ``tests/assistants.py``)."""

from __future__ import annotations

import pytest
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import Client

from chat.routing import websocket_urlpatterns
from chat.visitors import VISITOR_COOKIE, visitor_token_issue


@pytest.fixture(autouse=True)
def _quick_catch_up(monkeypatch):
    """Sockets re-read the database shortly after a turn; tests need not wait 2 s."""
    monkeypatch.setattr("chat.consumers.CATCH_UP_DELAY_SECONDS", 0.05)


APPLICATION = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
ORIGIN = (b"origin", b"http://localhost")


@pytest.fixture
def visitor() -> tuple[str, str]:
    """(visitor_id, signed token) of an anonymous visitor."""
    return visitor_token_issue()


def session_cookie_for(user) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def socket(conversation_id, *, visitor_token: str = "", cookie: str = "") -> WebsocketCommunicator:
    cookies = [
        c for c in (cookie, f"{VISITOR_COOKIE}={visitor_token}" if visitor_token else "") if c
    ]
    headers = [ORIGIN]
    if cookies:
        headers.append((b"cookie", "; ".join(cookies).encode()))
    return WebsocketCommunicator(APPLICATION, f"/ws/chat/{conversation_id}/", headers=headers)


async def receive_until(
    comm: WebsocketCommunicator, frame_type: str, *, timeout: float = 5, **match
):
    """Frames up to and including the first of ``frame_type`` (matching ``match``)."""
    seen = []
    while True:
        frame = await comm.receive_json_from(timeout=timeout)
        seen.append(frame)
        if frame["type"] == frame_type and all(
            (frame.get(k) if k != "role" else frame.get("message", {}).get("role")) == v
            for k, v in match.items()
        ):
            return seen


async def open_socket(conversation_id, **kwargs) -> WebsocketCommunicator:
    comm = socket(conversation_id, **kwargs)
    connected, _ = await comm.connect()
    assert connected
    state = await comm.receive_json_from()
    assert state["type"] == "conversation.state"
    return comm
