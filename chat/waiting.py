"""Where a customer waiting for a person stands (their place in the queue, an estimate).

``chat`` does not queue anyone: the app that does (``escalation``) registers a
``WaitingStatusProvider`` at start-up. The chat socket asks it once when a customer who
is waiting connects, and forwards the ``chat.queue`` events that app publishes to the
conversation's group whenever the queue moves. The payload is customer-safe:

``{"state": "queued" | "assigned" | "none", "position": int | None,
"estimate_minutes": int | None, "estimate_samples": int, "someone_on_duty": bool,
"agent_name": str}``
"""

from __future__ import annotations

from typing import Any, Protocol

QUEUE_EVENT = "chat.queue"
# What a customer's socket may see of a queue event.
QUEUE_FRAME_KEYS = (
    "state",
    "position",
    "estimate_minutes",
    "estimate_samples",
    "someone_on_duty",
    "agent_name",
)


class WaitingStatusProvider(Protocol):
    def waiting_status(self, *, conversation_id: Any) -> dict[str, Any] | None: ...


_registered: WaitingStatusProvider | None = None


def waiting_status_provider_register(provider: WaitingStatusProvider) -> None:
    """Called once by the queuing app's ``AppConfig.ready``."""
    global _registered
    _registered = provider


def waiting_status(*, conversation_id: Any) -> dict[str, Any] | None:
    """The customer's place in the queue, or None (nobody queues, or not waiting)."""
    return (
        None if _registered is None else _registered.waiting_status(conversation_id=conversation_id)
    )


def queue_frame(event: dict[str, Any]) -> dict[str, Any]:
    """The ``queue`` socket frame for a ``chat.queue`` event or a waiting status."""
    return {"type": "queue", **{key: event.get(key) for key in QUEUE_FRAME_KEYS}}
