"""Chat test helpers: a scripted assistant (patched in by the tests, never in product
code), socket factories for visitors / logged-in users, and turn draining."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import Client

from chat import assistant as assistant_api
from chat.routing import websocket_urlpatterns
from chat.visitors import VISITOR_COOKIE, visitor_token_issue


@dataclass
class FakePrepared:
    passages: list[str] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    signals: dict[str, Any] = field(default_factory=dict)
    no_answer: bool = False


@dataclass
class FakeDraftInfo:
    provider: str = "fake"
    model_name: str = "scripted"
    adapter: str = ""


class ScriptedAssistant:
    """Answers with ``answer`` split into words; can fail, hang, or block mid-stream."""

    def __init__(self) -> None:
        self.answer = "Open Settings and choose Reset password."
        self.sources = [{"slug": "reset-password", "title": "Reset your password", "score": 0.82}]
        self.fail_on_prepare: Exception | None = None
        self.fail_mid_stream: Exception | None = None
        self.hang = False
        self.gate: asyncio.Event | None = None  # stream waits for it after the first delta
        self.questions: list[str] = []
        self.histories: list[list[dict[str, str]]] = []

    async def prepare(self, *, question: str, history: list[dict[str, str]]) -> FakePrepared:
        self.questions.append(question)
        self.histories.append(history)
        if self.fail_on_prepare:
            raise self.fail_on_prepare
        if self.hang:
            await asyncio.sleep(3600)
        return FakePrepared(
            passages=["..."],
            sources=list(self.sources),
            signals={"sentiment": {"negative": 0, "compound": 0.4}, "retrieval": {"top": 0.82}},
        )

    def stream(self, *, question, history, prepared, adapter_name=""):
        async def deltas() -> AsyncIterator[str]:
            words = self.answer.split(" ")
            for i, word in enumerate(words):
                if i == 1 and self.gate is not None:
                    await self.gate.wait()
                if i == 2 and self.fail_mid_stream:
                    raise self.fail_mid_stream
                yield word if i == 0 else " " + word
                await asyncio.sleep(0)

        return deltas(), FakeDraftInfo(adapter=adapter_name)

    async def draft(self, *, question, history, prepared, adapter_name=""):
        return self.answer, FakeDraftInfo(adapter=adapter_name)


@pytest.fixture(autouse=True)
def _quick_catch_up(monkeypatch):
    """Sockets re-read the database shortly after a turn; tests need not wait 2 s."""
    monkeypatch.setattr("chat.consumers.CATCH_UP_DELAY_SECONDS", 0.05)


@pytest.fixture
def scripted(monkeypatch) -> ScriptedAssistant:
    bot = ScriptedAssistant()
    monkeypatch.setattr(assistant_api, "assistant_prepare", bot.prepare, raising=False)
    monkeypatch.setattr(assistant_api, "assistant_stream", bot.stream, raising=False)
    monkeypatch.setattr(assistant_api, "assistant_draft", bot.draft, raising=False)
    return bot


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
