"""Queueing background tasks (django-q2) with one broker per process.

``django_q.tasks.async_task`` builds a new broker for every call, and the Redis broker
opens a new connection pool, so each queued task paid for a TCP connection (in the
escalation benchmark 8 ms of a database thread per new ticket). The broker's Redis
client is thread-safe; a forked child builds its own."""

from __future__ import annotations

import os
import threading
from typing import Any

_brokers: dict[str, Any] = {}
_lock = threading.Lock()


def _forget_after_fork() -> None:
    _brokers.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def task_enqueue(func: str, *args: Any, cluster: str | None = None, **kwargs: Any) -> Any:
    """``async_task(func, *args, **kwargs)`` on this process's broker for ``cluster``
    (the default cluster when None)."""
    from django_q.brokers import get_broker
    from django_q.tasks import async_task

    key = cluster or ""
    broker = _brokers.get(key)
    if broker is None:
        with _lock:
            broker = _brokers.get(key)
            if broker is None:
                broker = _brokers[key] = get_broker(cluster)
    if cluster:
        kwargs["cluster"] = cluster
    return async_task(func, *args, broker=broker, **kwargs)
