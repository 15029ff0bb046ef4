"""The customer turn: everything that happens after a customer's message is stored.

    message stored with a pending Turn (chat.services.customer_message_receive)
      -> claim (one running turn per conversation, across processes)
      -> prepare: retrieval, sentiment, intent (chat.assistant), no database
      -> review: the registered reviewer decides the route (chat.review; escalation
         registers the real one), before any draft is shown
      -> answer / small talk / out of scope: stream the reply, coalesced, then store it
         under the conversation lock (withheld if a person took over meanwhile)
      -> escalate / block: the reviewer records its decision and the customer gets its
         notice in one transaction; an escalated turn's draft is then written and kept
         for the agents (and the reviewer hears of it after that commit)
      -> a provider error or the deadline (ASSISTANT_TIMEOUT_SECONDS from the claim)
         fails the turn: the customer is told and can reach a person.

This module owns the turn; its writes are ``chat.services.turns``; its reads
``chat.selectors``. Turns of one conversation run one after another, in message
order, even across server processes: each process claims the next pending turn in the
database and, when it finishes one, runs the next. A turn whose process died is
finished by the scheduled sweep (``chat.tasks.turns_sweep_task``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import time
import uuid
import weakref
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from chat import assistant as assistant_api
from chat.events import apublish, db
from chat.models import Turn
from chat.review import Verdict, reviewer_current
from chat.selectors import turn_for_message
from chat.services import conversation_group
from chat.services.turns import (
    ClaimedTurn,
    stream_event,
    turn_answer_store,
    turn_claim_next,
    turn_draft_store,
    turn_fail,
    turn_handoff_store,
)

logger = logging.getLogger(__name__)

_boot = uuid.uuid4().hex[:8]


def _new_boot() -> None:
    global _boot
    _boot = uuid.uuid4().hex[:8]


os.register_at_fork(after_in_child=_new_boot)


def process_owner() -> str:
    """Who owns the turns this process runs (host, pid and a per-start id)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_boot}"


# --- running turns in this process -------------------------------------------------------------


@dataclass
class _Runner:
    task: asyncio.Task[None] | None = None
    again: bool = False


_runners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Runner]] = (
    weakref.WeakKeyDictionary()
)
_background: set[asyncio.Task[Any]] = set()


def task_track(coro: Any) -> asyncio.Task[Any]:
    """Keep a reference to background work of a turn (``turns_drain`` waits for it)."""
    task = asyncio.get_running_loop().create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


def turns_kick(*, conversation_id: Any, claimed: ClaimedTurn | None = None) -> asyncio.Task[None]:
    """Run the conversation's turns in the background of this event loop: ``claimed``
    (a turn this process claimed when the message was stored) first, then any pending.

    Not tied to the socket that stored the message: a customer who disconnects still
    gets the answer stored and replayed. If this process already runs the conversation's
    turns, that runner is told to look again instead of starting a second one.
    """
    runners = _runners.setdefault(asyncio.get_running_loop(), {})
    key = str(conversation_id)
    current = runners.get(key)
    if current is not None and current.task is not None and claimed is None:
        current.again = True
        return current.task
    runner = _Runner()
    runner.task = task_track(_drain(key, runners, runner, claimed))
    runners[key] = runner
    return runner.task


async def _drain(
    key: str, runners: dict[str, _Runner], runner: _Runner, claimed: ClaimedTurn | None
) -> None:
    owner = process_owner()
    try:
        while True:
            if claimed is None:
                runner.again = False
                claimed = await db(turn_claim_next)(conversation_id=key, owner=owner)
            if claimed is None:
                if not runner.again:
                    return
                continue  # a message arrived while claiming: look again
            more = True
            try:
                more = await _run(claimed, owner)
            except asyncio.CancelledError:
                raise
            except Exception:
                # _run fails turns itself; this is a bug or a database outage. The sweep
                # finishes the turn if nothing else can.
                logger.exception("turn %s crashed", claimed.turn.pk)
            claimed = None
            if not more and not runner.again:
                return  # the store said nothing waits: no claim transaction needed
    finally:
        if runners.get(key) is runner:
            runners.pop(key, None)


async def turns_drain() -> None:
    """Wait for every turn running in this process (tests, graceful shutdown)."""
    while _background:
        await asyncio.gather(*list(_background), return_exceptions=True)


async def turn_await(
    *,
    turn_id: int,
    conversation_id: Any,
    claimed: ClaimedTurn | None = None,
    poll_seconds: float = 0.05,
) -> Turn:
    """Run (or wait for) a turn and return it finished, or as it stands at its deadline
    plus the sweep's grace (the API's synchronous answer)."""
    runner = turns_kick(conversation_id=conversation_id, claimed=claimed)
    await asyncio.wait({runner})
    limit = time.monotonic() + float(settings.ASSISTANT_TIMEOUT_SECONDS) + 5
    while True:
        turn = await db(Turn.objects.select_related("customer_message").get)(pk=turn_id)
        if turn.is_finished or time.monotonic() > limit:
            return turn
        await asyncio.sleep(poll_seconds)
        turns_kick(conversation_id=conversation_id)


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
            return
        long_lived_objects_freeze()

    task_track(warm())


def long_lived_objects_freeze() -> None:
    """Move everything alive now (modules, the models and their tokenizers, Django's
    app registry) out of the garbage collector's reach: it lives as long as the process.

    Every full collection otherwise walks all of it: 0.3-0.4 s each on the 2-core
    machine with the models loaded, several times a minute under load, during which no
    socket is served (``gc.callbacks`` timing in the saturation benchmark: 0.46 s of
    collections in a 4 s round before, 0.05 s after). Objects created later are
    collected as usual."""
    gc.collect()
    gc.freeze()


# --- one turn -----------------------------------------------------------------------------------


def _error_text(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timeout after {timeout:g}s"
    return f"{type(exc).__name__}: {exc}"[:300]


class _Coalescer:
    """Stream pieces as socket frames, at most one per ``STREAM_COALESCE_SECONDS``: a
    piece waits at most that long (a model that writes token by token still streams),
    and a quoting provider that produces its whole answer in milliseconds sends it as
    one frame, not thirty."""

    def __init__(self, group: str, turn: Turn, stream_id: str) -> None:
        self.group, self.turn, self.stream_id = group, turn, stream_id
        self.window = float(settings.STREAM_COALESCE_SECONDS)
        self.parts: list[str] = []
        self.buffer: list[str] = []
        self.sent = 0
        self.first_at: float | None = None
        self._timer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def add(self, delta: str) -> None:
        self.parts.append(delta)
        self.buffer.append(delta)
        if self.first_at is None:
            self.first_at = time.monotonic()
        if self._timer is None:
            self._timer = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.window)
        self._timer = None
        await self.flush()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def finish(self) -> dict[str, Any] | None:
        """End of the stream. If nothing was sent yet (the whole answer came within one
        window), the text is returned instead of sent: it rides on the answer's own event
        (one channel-layer message instead of two); otherwise the rest is sent now."""
        self.stop()
        if self.sent == 0 and self.buffer:
            text, self.buffer = "".join(self.buffer), []
            frame = stream_event(
                "assistant.delta", self.turn, stream_id=self.stream_id, index=0, delta=text
            )
            return frame
        await self.flush()
        return None

    async def flush(self) -> None:
        async with self._lock:
            if not self.buffer:
                return
            text, self.buffer = "".join(self.buffer), []
            index, self.sent = self.sent, self.sent + 1
            await apublish(
                self.group,
                stream_event(
                    "chat.delta", self.turn, stream_id=self.stream_id, index=index, delta=text
                ),
            )


async def _run(claimed: ClaimedTurn, owner: str) -> bool:
    """Run one claimed turn to its end; True when another turn may be waiting.

    (The customer's sockets already show "thinking": the message's own event said so.)"""
    turn, message, conversation = claimed.turn, claimed.message, claimed.conversation
    group = conversation_group(conversation.pk)
    loop = asyncio.get_running_loop()
    timeout = float(settings.ASSISTANT_TIMEOUT_SECONDS)
    started = time.monotonic()
    deadline = loop.time() + timeout

    async def fail(exc: BaseException, prepared: Any = None) -> bool:
        error = _error_text(exc, timeout)
        logger.warning("turn %s failed: %s", turn.pk, error)
        stored = await db(turn_fail)(turn_id=turn.pk, error=error, owner=owner, prepared=prepared)
        return stored is None or stored.next_pending

    try:
        async with asyncio.timeout_at(deadline):
            prepared = await assistant_api.assistant_prepare(
                question=message.text,
                history=claimed.history,
                adapter_name=conversation.adapter_name,
            )
    except Exception as exc:
        return await fail(exc)
    facts = claimed.facts(prepared)
    try:
        verdict: Verdict = await db(reviewer_current().review)(facts)
    except Exception as exc:
        return await fail(exc, prepared)

    if verdict.route in (Turn.Route.ESCALATE, Turn.Route.BLOCK):
        stored = await db(turn_handoff_store)(
            turn=turn, owner=owner, prepared=prepared, verdict=verdict
        )
        if stored is not None and verdict.route == Turn.Route.ESCALATE:
            await _draft_for_agents(claimed, prepared, timeout)
        return stored is None or stored.next_pending

    stream = _Coalescer(group, turn, uuid.uuid4().hex)
    try:
        async with asyncio.timeout_at(deadline):
            deltas, info = assistant_api.assistant_stream(
                question=message.text,
                history=claimed.history,
                prepared=prepared,
                adapter_name=conversation.adapter_name,
                route=verdict.route or Turn.Route.ANSWER,
            )
            async for delta in deltas:
                if delta:
                    await stream.add(delta)
            final_delta = await stream.finish()
        text = "".join(stream.parts).strip()
        if not text:
            raise ValueError("the assistant returned an empty answer")
    except Exception as exc:
        stream.stop()
        if stream.sent:
            await apublish(
                group,
                stream_event("chat.cancelled", turn, stream_id=stream.stream_id, reason="failed"),
            )
        return await fail(exc, prepared)
    first_token_ms = (
        int((stream.first_at - started) * 1000) if stream.first_at is not None else None
    )
    stored = await db(turn_answer_store)(
        turn=turn,
        owner=owner,
        prepared=prepared,
        verdict=verdict,
        text=text,
        info=info,
        first_token_ms=first_token_ms,
        stream_id=stream.stream_id,
        final_delta=final_delta,
    )
    return stored is None or stored.next_pending


async def _draft_for_agents(claimed: ClaimedTurn, prepared: Any, timeout: float) -> None:
    """The blog's decision workflow: the draft is written but never shown; agents see it
    beside the conversation. The customer already has a person coming, so a failed draft
    only costs the agents a suggestion."""
    text, info = "", None
    try:
        async with asyncio.timeout(timeout):
            text, info = await assistant_api.assistant_draft(
                question=claimed.message.text,
                history=claimed.history,
                prepared=prepared,
                adapter_name=claimed.conversation.adapter_name,
            )
    except Exception:
        logger.exception("withheld draft failed for turn %s", claimed.turn.pk)
    await db(turn_draft_store)(turn_id=claimed.turn.pk, text=text, info=info)


__all__ = [
    "assistant_warm_up_once",
    "process_owner",
    "task_track",
    "turn_await",
    "turn_for_message",
    "turns_drain",
    "turns_kick",
]
