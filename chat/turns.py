"""The turn pipeline: what happens after a customer's message is stored.

    customer message (stored, acked) -> may the assistant answer? -> retrieve + internal
    checks (assistant_prepare) -> escalation's turn_review -> block | escalate (draft
    withheld for agents, notice to the customer) | stream the answer -> store it under
    the conversation lock (withheld if an agent took over meanwhile).

A provider error or timeout (``ASSISTANT_TIMEOUT_SECONDS``, measured from the start of
the turn) flags the conversation, calls escalation's ``turn_failed`` and posts a notice;
the customer's message stays stored. Consumers start turns with ``turn_start`` (a
background task, so the socket keeps serving frames); the API awaits ``turn_run``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
import uuid
import weakref
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from chat import assistant as assistant_api
from chat.models import Conversation, Message
from chat.selectors import conversation_history
from chat.services import (
    assistant_reply_store,
    conversation_group,
    system_notice_post,
    turn_failure_record,
)

logger = logging.getLogger(__name__)

BLOCK_NOTICE = "Sorry, I can't help with that request here."
ESCALATION_NOTICE = "A person from our team will take it from here. Please stay on this page."


@dataclass
class TurnOutcome:
    """``kind``: answered | withheld | escalated | blocked | failed | silent."""

    kind: str
    reply: Message | None = None
    notice: Message | None = None


_running: set[asyncio.Task[Any]] = set()
_locks: weakref.WeakValueDictionary[tuple[int, str], asyncio.Lock] = weakref.WeakValueDictionary()


def turn_start(*, conversation_id: Any, customer_message_id: int) -> asyncio.Task[TurnOutcome]:
    """Run the turn in the background of the current event loop.

    The task is not tied to the socket that started it: if the customer disconnects,
    the answer is still stored and replayed when they come back.
    """
    task = asyncio.get_running_loop().create_task(
        turn_run(conversation_id=conversation_id, customer_message_id=customer_message_id)
    )
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task


_warmed_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def assistant_warm_up_once() -> None:
    """Load the assistant's models in the background the first time a socket opens in
    this server process, so the first customer's question does not pay for it."""
    loop = asyncio.get_running_loop()
    if loop in _warmed_loops:
        return
    _warmed_loops.add(loop)

    async def warm() -> None:
        try:
            await assistant_api.assistant_warm_up()
        except Exception:
            logger.exception("assistant warm-up failed; the first question will retry")

    if hasattr(assistant_api, "assistant_warm_up"):
        task_track(warm())


def task_track(coro: Any) -> asyncio.Task[Any]:
    """Keep a reference to background work of a turn (``turns_drain`` waits for it)."""
    task = asyncio.get_running_loop().create_task(coro)
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task


async def turns_drain() -> None:
    """Wait for every turn running in this process (tests, graceful shutdown)."""
    while _running:
        await asyncio.gather(*list(_running), return_exceptions=True)


async def turn_run(
    *, conversation_id: Any, customer_message_id: int, stream: bool = True
) -> TurnOutcome:
    """Answer one customer message. Turns of one conversation run one at a time."""
    key = (id(asyncio.get_running_loop()), str(conversation_id))
    lock = _locks.get(key)
    if lock is None:
        lock = asyncio.Lock()
        _locks[key] = lock
    async with lock:
        try:
            return await _turn(conversation_id, customer_message_id, stream=stream)
        except Exception:
            logger.exception("turn pipeline crashed for conversation %s", conversation_id)
            raise


async def _publish(conversation_id: Any, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(conversation_group(conversation_id), event)


def _jsonable(value: Any) -> Any:
    """Signals may hold numpy numbers; store plain JSON."""

    def default(obj: Any) -> Any:
        if hasattr(obj, "tolist"):
            return obj.tolist()
        if hasattr(obj, "item"):
            return obj.item()
        return str(obj)

    return json.loads(json.dumps(value, default=default))


def _load(conversation_id: Any, message_id: int) -> tuple[Conversation, Message]:
    message = Message.objects.select_related("conversation").get(
        pk=message_id, conversation_id=conversation_id
    )
    return message.conversation, message


def _review(conversation: Conversation, message: Message, signals: dict[str, Any]) -> Any:
    # Looked up at call time: the escalation app owns the decision.
    from escalation import services as escalation_services

    return escalation_services.turn_review(
        conversation=conversation, customer_message=message, signals=signals
    )


def _error_text(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timeout after {timeout:g}s"
    return f"{type(exc).__name__}: {exc}"[:300]


async def _turn(conversation_id: Any, customer_message_id: int, *, stream: bool) -> TurnOutcome:
    started = time.monotonic()
    conversation, message = await database_sync_to_async(_load)(
        conversation_id, customer_message_id
    )
    if not conversation.assistant_may_answer:
        return TurnOutcome("silent")  # an agent answers, or the customer waits for one
    await _publish(
        conversation_id,
        {"type": "chat.thinking", "reply_to": message.seq, "reply_to_id": message.pk},
    )
    history = await database_sync_to_async(conversation_history)(
        conversation=conversation, before_seq=message.seq
    )
    timeout = float(settings.ASSISTANT_TIMEOUT_SECONDS)
    deadline = asyncio.get_running_loop().time() + timeout

    async def fail(exc: BaseException) -> TurnOutcome:
        logger.warning(
            "assistant failed on conversation %s: %s", conversation_id, _error_text(exc, timeout)
        )
        notice = await database_sync_to_async(turn_failure_record)(
            conversation=conversation,
            customer_message=message,
            error=_error_text(exc, timeout),
        )
        return TurnOutcome("failed", notice=notice)

    try:
        async with asyncio.timeout_at(deadline):
            prepared = await assistant_api.assistant_prepare(question=message.text, history=history)
    except Exception as exc:
        return await fail(exc)
    signals = _jsonable(prepared.signals)
    sources = _jsonable(prepared.sources)
    try:
        verdict = await database_sync_to_async(_review)(conversation, message, signals)
    except Exception as exc:
        return await fail(exc)
    review = {
        "escalate": verdict.escalate,
        "block": verdict.block,
        "reason": verdict.reason,
        "details": _jsonable(verdict.details),
    }
    internal: dict[str, Any] = {
        "signals": signals,
        "no_answer": bool(prepared.no_answer),
        "review": review,
    }

    if verdict.block:
        notice = await database_sync_to_async(system_notice_post)(
            conversation=conversation,
            text=verdict.customer_notice or BLOCK_NOTICE,
            reply_to=message,
            review=review,
        )
        return TurnOutcome("blocked", notice=notice)

    if verdict.escalate:
        # The blog's decision workflow: the draft is never shown; a person is called in.
        notice = await database_sync_to_async(system_notice_post)(
            conversation=conversation,
            text=verdict.customer_notice or ESCALATION_NOTICE,
            reply_to=message,
            review=review,
        )
        reply = None
        try:
            async with asyncio.timeout_at(deadline):
                text, info = await assistant_api.assistant_draft(
                    question=message.text,
                    history=history,
                    prepared=prepared,
                    adapter_name=conversation.adapter_name,
                )
            reply, _ = await database_sync_to_async(assistant_reply_store)(
                conversation=conversation,
                customer_message=message,
                text=text,
                provider=info.provider,
                model_name=info.model_name,
                adapter=info.adapter,
                sources=sources,
                internal=internal,
                latency_ms=int((time.monotonic() - started) * 1000),
                withhold=True,
            )
        except Exception:
            # The customer already has a person coming; a missing draft only costs agents.
            logger.exception("withheld draft failed for conversation %s", conversation_id)
        return TurnOutcome("escalated", reply=reply, notice=notice)

    stream_id = uuid.uuid4().hex
    first_token_ms: int | None = None
    parts: list[str] = []
    try:
        async with asyncio.timeout_at(deadline):
            if stream:
                result = assistant_api.assistant_stream(
                    question=message.text,
                    history=history,
                    prepared=prepared,
                    adapter_name=conversation.adapter_name,
                )
                if inspect.isawaitable(result):
                    result = await result
                deltas, info = result
                async for delta in deltas:
                    if not delta:
                        continue
                    if first_token_ms is None:
                        first_token_ms = int((time.monotonic() - started) * 1000)
                    await _publish(
                        conversation_id,
                        {
                            "type": "chat.delta",
                            "reply_to": message.seq,
                            "reply_to_id": message.pk,
                            "stream_id": stream_id,
                            "index": len(parts),
                            "delta": delta,
                        },
                    )
                    parts.append(delta)
                text = "".join(parts)
            else:
                text, info = await assistant_api.assistant_draft(
                    question=message.text,
                    history=history,
                    prepared=prepared,
                    adapter_name=conversation.adapter_name,
                )
        if not text.strip():
            raise ValueError("the assistant returned an empty answer")
    except Exception as exc:
        if parts:
            await _publish(
                conversation_id,
                {
                    "type": "chat.cancelled",
                    "reply_to": message.seq,
                    "reply_to_id": message.pk,
                    "stream_id": stream_id,
                    "reason": "failed",
                },
            )
        return await fail(exc)

    internal.update(stream_id=stream_id, time_to_first_token_ms=first_token_ms)
    reply, shown = await database_sync_to_async(assistant_reply_store)(
        conversation=conversation,
        customer_message=message,
        text=text,
        provider=info.provider,
        model_name=info.model_name,
        adapter=info.adapter,
        sources=sources,
        internal=internal,
        latency_ms=int((time.monotonic() - started) * 1000),
    )
    if not shown:
        await _publish(
            conversation_id,
            {
                "type": "chat.cancelled",
                "reply_to": message.seq,
                "reply_to_id": message.pk,
                "stream_id": stream_id,
                "reason": "agent_took_over",
            },
        )
        return TurnOutcome("withheld", reply=reply)
    return TurnOutcome("answered", reply=reply)
