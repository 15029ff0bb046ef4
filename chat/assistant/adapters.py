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
