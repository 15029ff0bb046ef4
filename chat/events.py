"""Channel-layer events: the one way any app tells sockets that something happened.

``publish_on_commit(group, event)`` is the only way a service announces a change: the
event is sent after the transaction commits (never for a change that rolled back).

Sync code called from async code through ``db()`` (below) does not block its database
thread on the channel layer: its events are collected in a per-call outbox and sent, in
order, by the async caller once the call returned. Sync code elsewhere (views, workers,
the admin) sends them at commit time.

``db(fn)`` is also where ORM work leaves the event loop: a small dedicated pool of
database threads (``DATABASE_THREADS``), not Channels' single thread-sensitive one, so
that concurrent turns do not queue behind each other. It keeps Channels'
``close_old_connections`` discipline (persistent connections are reused per thread).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import close_old_connections, connection, transaction

P = ParamSpec("P")
R = TypeVar("R")

Event = dict[str, Any]

_outbox: contextvars.ContextVar[list[tuple[str, Event]] | None] = contextvars.ContextVar(
    "loopdesk_event_outbox", default=None
)


_sending: set[asyncio.Task[None]] = set()


def publish(group: str, event: Event) -> None:
    """Send one event now (sync callers outside a transaction)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        async_to_sync(layer.group_send)(group, event)
        return
    # Sync code running inside an event loop's thread cannot block on it: send from it.
    task = loop.create_task(layer.group_send(group, event))
    _sending.add(task)
    task.add_done_callback(_sending.discard)


async def apublish(group: str, event: Event) -> None:
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(group, event)


def _deliver(group: str, event: Event | Callable[[], Event | None]) -> None:
    payload = event() if callable(event) else event
    if payload is None:
        return
    outbox = _outbox.get()
    if outbox is not None:
        outbox.append((group, payload))
    else:
        publish(group, payload)


def publish_on_commit(group: str, event: Event | Callable[[], Event | None]) -> None:
    """Send ``event`` to ``group`` once the current transaction commits.

    ``event`` may be a callable, evaluated at commit time (for payloads read back after
    the write). Outside a transaction it is sent at once."""
    transaction.on_commit(functools.partial(_deliver, group, event))


def publish_each_on_commit(events: Callable[[], list[tuple[str, Event]]]) -> None:
    """``publish_on_commit`` for events whose groups are only known at commit time:
    ``events()`` is called once the transaction commits and returns (group, event)
    pairs, sent in order. Lets a service read what to announce once, after its locks
    are released, instead of inside its transaction."""

    def deliver() -> None:
        for group, event in events():
            _deliver(group, event)

    transaction.on_commit(deliver)


# --- database threads -------------------------------------------------------------------------

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _database_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(
                    max_workers=settings.DATABASE_THREADS, thread_name_prefix="loopdesk-db"
                )
    return _executor


def _forget_executor_after_fork() -> None:
    # A forked child (a test server, a worker) inherits the executor object but not its
    # threads: work queued on it would wait forever.
    global _executor
    _executor = None


os.register_at_fork(after_in_child=_forget_executor_after_fork)


def _recycle_connections() -> None:
    # Like every request: drop broken or expired connections (never one inside a
    # transaction, as when an outer test or caller holds an atomic block).
    if not connection.in_atomic_block:
        close_old_connections()


def _call_with_connections(fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    _recycle_connections()
    try:
        return fn(*args, **kwargs)
    finally:
        _recycle_connections()


def db(fn: Callable[P, R]) -> Callable[P, Any]:
    """``await db(fn)(...)``: run sync ORM code on a database thread, then send the
    events it published on commit, in order, from the event loop."""

    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        outbox: list[tuple[str, Event]] = []

        def call() -> R:
            token = _outbox.set(outbox)
            try:
                return _call_with_connections(fn, *args, **kwargs)
            finally:
                _outbox.reset(token)

        if settings.DATABASE_THREADS <= 0:
            # Channels' single thread-sensitive executor (the safe fallback).
            result: R = await SyncToAsync(call, thread_sensitive=True)()
        else:
            loop = asyncio.get_running_loop()
            context = contextvars.copy_context()
            result = await loop.run_in_executor(_database_executor(), context.run, call)
        for group, event in outbox:
            await apublish(group, event)
        return result

    return run
