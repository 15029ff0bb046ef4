"""Which LoRA adapters the assistant serves, without chat knowing who deploys them.

The app that trains and deploys adapters (``training``) registers a resolver at start-up
(its ``AppConfig.ready``); the assistant asks it per request, so a deployment or a
rollback takes effect without a restart. With nothing registered, no adapter is used.

Kinds: ``generator`` (a causal LM's adapter, the ``hf`` provider) and ``retriever`` (the
MiniLM encoder's adapter used for retrieval).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from django.conf import settings

from chat.assistant.refreshing import Refreshed

GENERATOR = "generator"
RETRIEVER = "retriever"


@dataclass(frozen=True)
class AdapterRef:
    name: str
    path: Path


class AdapterResolver(Protocol):
    def __call__(self, *, kind: str, slot: str) -> AdapterRef | None:
        """The adapter to use for ``slot`` (a tenant, a conversation's choice, an
        approved run's adapter name), else the organisation's live one, else None.
        May read the database: call it from sync code."""
        ...


def _none(*, kind: str, slot: str) -> AdapterRef | None:
    return None


_resolver: AdapterResolver = _none


def adapter_resolver_register(resolver: AdapterResolver) -> None:
    global _resolver
    _resolver = resolver


def adapter_resolve(*, kind: str, slot: str = "") -> AdapterRef | None:
    return _resolver(kind=kind, slot=slot)


def _resolve(*, kind: str, slot: str) -> AdapterRef | None:
    return _resolver(kind=kind, slot=slot)  # the resolver registered now


_current: Refreshed[AdapterRef | None] = Refreshed(
    _resolve, interval=lambda: float(settings.ASSISTANT_ADAPTER_REFRESH_SECONDS)
)


async def adapter_current(*, kind: str, slot: str = "") -> AdapterRef | None:
    """``adapter_resolve`` from async code, re-read at most every
    ``ASSISTANT_ADAPTER_REFRESH_SECONDS`` per kind and slot (a deployment or a rollback
    takes effect within that time in every process, without a restart)."""
    return await _current.current(kind=kind, slot=slot)


def adapter_forget() -> None:
    """Resolve every adapter again on next use (this process; tests, after a deploy)."""
    _current.forget()
