"""Every write to a ``Turn``: open, claim, finish, fail, sweep. The turn pipeline
(``chat.turns``) is the only caller, apart from the scheduled sweep.

A turn is owned by one process from its claim to its finish. Every finishing write
re-checks, under the conversation's row lock, that the turn is still running and still
owned by the caller: if the sweep already failed it (its owner looked dead), a late
finish writes nothing and the customer never gets two endings.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from chat.assistant.contract import DraftInfo, Prepared
from chat.events import publish_on_commit
from chat.models import Conversation, Message, Turn
from chat.review import EarlierTurn, TurnFacts, Verdict, reviewer_current
from chat.selectors import conversation_context
from chat.services.conversations import (
    conversation_group,
    conversation_lock_advancing,
    message_append,
    system_notice_post,
)
from chat.statements import column, statement_built, table

logger = logging.getLogger(__name__)

EARLIER_TURNS = 10
FAILURE_LEAD = "Sorry, the assistant could not answer just now."
FAILURE_NOTICE = (
    f"{FAILURE_LEAD} Your message is saved and a person from our team will look at this "
    "conversation. You can also press \u201cTalk to a person\u201d."
)
NOTICE_BLOCKED = "Sorry, I can't help with that request here."
NOTICE_ESCALATED = "A person from our team will take it from here. Please stay on this page."


@dataclass
class ClaimedTurn:
    """A turn this process now owns, with what the pipeline needs to run it."""

    turn: Turn
    conversation: Conversation
    message: Message
    history: list[dict[str, str]]
    earlier_turns: tuple[EarlierTurn, ...]

    def facts(self, prepared: Prepared) -> TurnFacts:
        """What the reviewer decides on: this turn with the assistant's signals."""
        return TurnFacts(
            conversation=self.conversation,
            customer_message=self.message,
            sentiment=prepared.sentiment,
            retrieval=prepared.retrieval,
            intent=prepared.intent,
            earlier_turns=self.earlier_turns,
        )


def _claim(turn: Turn, conversation: Conversation, owner: str, now: dt.datetime) -> ClaimedTurn:
    """Mark ``turn`` running for ``owner`` in memory (the caller saves it, holding the
    conversation's row lock). The history and the earlier turns are read after the
    commit (``turn_context_read``)."""
    turn.status = Turn.Status.RUNNING
    turn.owner = owner[:100]
    turn.started_at = now
    turn.deadline_at = now + dt.timedelta(seconds=float(settings.ASSISTANT_TIMEOUT_SECONDS))
    return ClaimedTurn(
        turn=turn,
        conversation=conversation,
        message=turn.customer_message,
        history=[],
        earlier_turns=(),
    )


def turn_context_read(claimed: ClaimedTurn | None) -> ClaimedTurn | None:
    """Give a claimed turn the conversation's history before its message and the
    earlier turns among it, in one query. Read after the claim's transaction, so the
    write lock (all of SQLite's) is not held for it: the messages before the turn's own
    have their sequence numbers already, and what is appended later comes after it."""
    if claimed is not None and claimed.message.seq > 1:
        context = conversation_context(
            conversation=claimed.conversation, before_seq=claimed.message.seq
        )
        claimed.history = context.history
        claimed.earlier_turns = tuple(
            EarlierTurn(route=route, status=status, no_answer=no_answer, intent=intent)
            for route, status, no_answer, intent in context.earlier_turns[:EARLIER_TURNS]
        )
    return claimed


def turn_open(
    *, conversation: Conversation, customer_message: Message, owner: str = ""
) -> tuple[Turn, ClaimedTurn | None]:
    """The turn for a customer message (inside ``customer_message_receive``'s
    transaction, with the conversation row locked): claimed at once for ``owner``, else
    pending. The caller passes an ``owner`` only when no turn of the conversation runs
    or waits (``conversation_lock_advancing_with_turns``); a pending turn waits for the
    running one's owner, or the caller's ``turns_kick``, which claims the oldest pending
    first.

    So a turn is only ever claimed when no older one is unfinished: turns run in message
    order, and when a turn finishes, any turn still waiting is of a later message
    (``_quiet``)."""
    turn = Turn(conversation=conversation, customer_message=customer_message)
    claimed = _claim(turn, conversation, owner, timezone.now()) if owner else None
    turn.save()
    return turn, claimed


def turn_claim_next(
    *, conversation_id: Any, owner: str, now: dt.datetime | None = None
) -> ClaimedTurn | None:
    """Claim the conversation's oldest pending turn for ``owner``; None when a turn of
    the conversation is already running (its owner runs the next one when it finishes)
    or nothing is pending.

    Locks the conversation row, so two processes claiming at once are serialised; a
    unique constraint allows one running turn per conversation in any case. When a
    person handles the conversation, pending turns are skipped: the assistant stays
    silent.
    """
    return turn_context_read(_claim_next(conversation_id=conversation_id, owner=owner, now=now))


@transaction.atomic
def _claim_next(*, conversation_id: Any, owner: str, now: dt.datetime | None) -> ClaimedTurn | None:
    conversation = Conversation.objects.select_for_update().filter(pk=conversation_id).first()
    if conversation is None:
        return None
    turns = Turn.objects.filter(conversation=conversation)
    if turns.filter(status=Turn.Status.RUNNING).exists():
        return None
    turn = (
        turns.filter(status=Turn.Status.PENDING)
        .select_related("customer_message", "customer_message__author")
        .order_by("customer_message__seq")
        .first()
    )
    if turn is None:
        return None
    now = now or timezone.now()
    if not conversation.assistant_may_answer:
        for pending in turns.filter(status=Turn.Status.PENDING):
            pending.status = Turn.Status.SKIPPED
            pending.finished_at = now
            pending.save(update_fields=["status", "finished_at"])
        return None
    claimed = _claim(turn, conversation, owner, now)
    try:
        with transaction.atomic():
            turn.save(update_fields=["status", "owner", "started_at", "deadline_at"])
    except IntegrityError:
        return None  # another process got there first
    return claimed


def _lock(turn_id: int) -> tuple[Turn, Conversation]:
    """The turn with its conversation row locked, in one query. Every write of a turn's
    status (claim, finish, fail, skip) holds its conversation's lock, so the turn read
    under it is current."""
    turn = (
        Turn.objects.select_for_update(of=("conversation",))
        .select_related("conversation", "customer_message")
        .get(pk=turn_id)
    )
    return turn, turn.conversation


def _next_pending(conversation: Conversation, *, quiet: bool = False) -> bool:
    """Does a turn of the conversation wait? ``quiet``: nothing was appended after the
    turn's customer message when its lock was taken (``_quiet``), so no turn can wait: a
    pending turn needs a later customer message, written under the same lock."""
    if quiet:
        return False
    return Turn.objects.filter(conversation=conversation, status=Turn.Status.PENDING).exists()


def _quiet(turn: Turn, conversation: Conversation) -> bool:
    """Right after ``_lock``: the turn's customer message is still the conversation's
    last message."""
    return conversation.last_seq == turn.customer_message.seq


def _apply_signals(turn: Turn, prepared: Prepared) -> None:
    turn.sentiment_label = prepared.sentiment.label
    turn.sentiment_score = prepared.sentiment.score
    turn.sentiment_method = prepared.sentiment.method
    if prepared.intent is not None:
        turn.intent = prepared.intent.label
        turn.intent_confidence = round(prepared.intent.confidence, 4)
        turn.intent_scores = {k: round(v, 4) for k, v in prepared.intent.scores.items()}
        turn.router_version = prepared.intent.model_version[:80]
    turn.retrieval_top_score = round(prepared.retrieval.top_score, 4)
    turn.retrieval_min_score = prepared.retrieval.min_score
    turn.no_answer = prepared.retrieval.no_answer
    turn.answer_band = prepared.retrieval.answer_band
    turn.sources = prepared.sources
    turn.retriever_adapter = prepared.retriever_adapter[:100]
    turn.support_answer_id = (
        prepared.support_answer.support_answer_id if prepared.support_answer else None
    )


def _apply_verdict(turn: Turn, verdict: Verdict) -> None:
    turn.route = verdict.route
    turn.decision_reason = verdict.reason[:40]
    turn.decision_category = verdict.category[:40]
    turn.decision_detail = verdict.detail[:300]
    turn.decision_priority = verdict.priority[:8]


def _close(turn: Turn, status: str, **fields: Any) -> None:
    """Set the final state in memory (saved by ``_save`` once the outputs are written, so
    that the frames broadcast for those outputs already show it)."""
    turn.status = status
    turn.finished_at = timezone.now()
    if turn.started_at is not None:
        turn.latency_ms = int((turn.finished_at - turn.started_at).total_seconds() * 1000)
    for name, value in fields.items():
        setattr(turn, name, value)


def _save(turn: Turn) -> None:
    turn.full_clean(exclude=["conversation", "customer_message"], validate_constraints=False)
    turn.save()


# What finishing a turn writes: everything the claim did not (the signals, the decision,
# the outcome).
_FINISH_FIELDS = (
    "status",
    "route",
    "finished_at",
    "latency_ms",
    "first_token_ms",
    "sentiment_label",
    "sentiment_score",
    "sentiment_method",
    "intent",
    "intent_confidence",
    "intent_scores",
    "router_version",
    "retrieval_top_score",
    "retrieval_min_score",
    "no_answer",
    "answer_band",
    "sources",
    "retriever_adapter",
    "support_answer_id",
    "decision_reason",
    "decision_category",
    "decision_detail",
    "decision_priority",
    "withheld_reason",
    "provider",
    "model_name",
    "adapter",
    "error",
)


def _lock_conversation_of(turn: Turn) -> Conversation:
    """Lock the turn's conversation and give the turn that (current) row: the finishing
    stores of the pipeline, which holds the running turn in memory since its claim."""
    conversation = Conversation.objects.select_for_update().get(pk=turn.conversation_id)
    turn.conversation = conversation
    return conversation


def _finish_sql(wrapper: Any) -> tuple[str, list[Any]]:
    """``_finish``'s statement: what ``Turn.objects.filter(pk=, status=RUNNING,
    owner=).update(**finish fields)`` runs, and the fields whose values it sets."""
    fields = [Turn._meta.get_field(name) for name in _FINISH_FIELDS]
    assignments = ", ".join(f"{column(wrapper, Turn, field.name)} = %s" for field in fields)
    return (
        f"UPDATE {table(wrapper, Turn)} SET {assignments} "  # noqa: S608
        f"WHERE {column(wrapper, Turn, Turn._meta.pk.name)} = %s "
        f"AND {column(wrapper, Turn, 'status')} = %s AND {column(wrapper, Turn, 'owner')} = %s",
        fields,
    )


def _finish(turn: Turn, owner: str) -> bool:
    """Write the finished turn only if it still runs for ``owner``: a compare-and-set on
    status and owner under the conversation's lock (the sweep fails a turn under the same
    lock), one statement instead of a read and a write (built once per connection,
    ``chat.statements``; the values prepared as ``QuerySet.update`` prepares them). False
    when it no longer runs for ``owner``: the caller's atomic block is then marked for
    rollback, so nothing the store wrote before (answer, notice, audit rows, ticket,
    events) remains."""
    turn.full_clean(exclude=["conversation", "customer_message"], validate_constraints=False)
    wrapper, (sql, fields) = statement_built("turn_finish", _finish_sql)
    params = [field.get_db_prep_save(getattr(turn, field.attname), wrapper) for field in fields]
    params += [
        Turn._meta.pk.get_db_prep_value(turn.pk, wrapper),
        Turn.Status.RUNNING.value,
        owner,
    ]
    with wrapper.cursor() as cursor:
        cursor.execute(sql, params)
        written = cursor.rowcount
    if not written:
        transaction.set_rollback(True)
    return bool(written)


def stream_event(kind: str, turn: Turn, **extra: Any) -> dict[str, Any]:
    """``chat.thinking`` / ``chat.delta`` / ``chat.cancelled`` for the turn's sockets."""
    message = turn.customer_message
    return {"type": kind, "reply_to": message.seq, "reply_to_id": message.pk, **extra}


@dataclass
class Stored:
    turn: Turn
    message: Message | None  # the answer, draft or notice stored
    verdict: Verdict
    shown: bool = True
    # Another turn of the conversation waits: the owner runs it next.
    next_pending: bool = False


@transaction.atomic
def turn_answer_store(
    *,
    turn: Turn,
    owner: str,
    prepared: Prepared,
    verdict: Verdict,
    text: str,
    info: DraftInfo,
    first_token_ms: int | None,
    stream_id: str,
    final_delta: dict[str, Any] | None = None,
) -> Stored | None:
    """Store the assistant's answer (knowledge base, small talk or a polite refusal).

    Under the conversation lock it re-checks who handles the conversation: if a person
    took over while the answer was being written, the answer is stored WITHHELD for
    agents, the turn is ``withheld`` and the sockets are told to drop what was streamed.
    A takeover that locks the same row happens either before (withheld) or after (already
    public), never in between. ``final_delta``: stream text not sent yet, delivered with
    the answer's own event. Returns None (and writes nothing) if the turn no longer
    belongs to ``owner``. ``turn`` is the running turn as claimed (``ClaimedTurn.turn``).
    """
    # Locked, with the answer's number taken: the turn's message was the last one when
    # the number before it is the message's own.
    conversation = conversation_lock_advancing(conversation_id=turn.conversation_id)
    turn.conversation = conversation
    quiet = conversation.last_seq - 1 == turn.customer_message.seq
    shown = conversation.assistant_may_answer
    _apply_signals(turn, prepared)
    verdict = reviewer_current().record(turn=turn, verdict=verdict)
    _apply_verdict(turn, verdict)
    _close(
        turn,
        Turn.Status.ANSWERED if shown else Turn.Status.WITHHELD,
        provider=info.provider,
        model_name=info.model_name,
        adapter=info.adapter,
        first_token_ms=first_token_ms,
        withheld_reason="" if shown else f"handling={conversation.handling}"[:100],
    )
    # The conversation row is ours (locked above); a reviewer's ``record`` writes no
    # messages on these routes (the ``TurnReviewer`` contract).
    message, _ = message_append(
        conversation=conversation,
        seq_taken=True,
        role=Message.Role.ASSISTANT,
        text=text,
        visibility=Message.Visibility.PUBLIC if shown else Message.Visibility.WITHHELD,
        sources=prepared.sources if verdict.route == Turn.Route.ANSWER else [],
        provider=info.provider,
        model_name=info.model_name,
        adapter=info.adapter,
        latency_ms=turn.latency_ms,
        reply_to=turn.customer_message,
        turn=turn,
        event_extra={"delta": final_delta} if final_delta and shown else None,
    )
    if not _finish(turn, owner):
        return None
    if not shown and final_delta is None:  # frames were streamed: tell sockets to drop them
        publish_on_commit(
            conversation_group(conversation.pk),
            stream_event("chat.cancelled", turn, stream_id=stream_id, reason="agent_took_over"),
        )
    return Stored(
        turn=turn,
        message=message,
        verdict=verdict,
        shown=shown,
        next_pending=_next_pending(conversation, quiet=quiet),
    )


@transaction.atomic
def turn_handoff_store(
    *, turn: Turn, owner: str, prepared: Prepared, verdict: Verdict
) -> Stored | None:
    """Store an escalated or blocked turn: the reviewer records its decision (and opens
    the ticket) and the customer gets its notice instead of a draft, in one transaction.
    Returns None (and writes nothing) if the turn no longer belongs to ``owner``.
    """
    conversation = _lock_conversation_of(turn)
    quiet = _quiet(turn, conversation)
    _apply_signals(turn, prepared)
    verdict = reviewer_current().record(turn=turn, verdict=verdict)
    _apply_verdict(turn, verdict)
    blocked = verdict.route == Turn.Route.BLOCK
    _close(turn, Turn.Status.BLOCKED if blocked else Turn.Status.ESCALATED)
    notice = system_notice_post(
        conversation=conversation,
        text=verdict.customer_notice or (NOTICE_BLOCKED if blocked else NOTICE_ESCALATED),
        reply_to=turn.customer_message,
        marker=Message.Marker.TURN_NOTICE,
        turn=turn,
        locked=True,
    )
    if not _finish(turn, owner):
        return None
    return Stored(
        turn=turn,
        message=notice,
        verdict=verdict,
        next_pending=_next_pending(conversation, quiet=quiet),
    )


@transaction.atomic
def turn_draft_store(
    *, turn_id: int, text: str = "", info: DraftInfo | None = None
) -> Message | None:
    """Keep the assistant's draft of an escalated turn for the agents (never shown to
    the customer); an empty ``text`` means no draft could be written. Either way, after
    commit the reviewer hears that the turn's draft is settled (``draft_stored``)."""
    turn, conversation = _lock(turn_id)
    if (
        turn.status != Turn.Status.ESCALATED
        or turn.outputs.filter(role=Message.Role.ASSISTANT).exists()
    ):
        return None
    draft = None
    if text.strip() and info is not None:
        draft, _ = message_append(
            conversation=conversation,
            locked=True,
            role=Message.Role.ASSISTANT,
            text=text,
            visibility=Message.Visibility.WITHHELD,
            sources=turn.sources,
            provider=info.provider,
            model_name=info.model_name,
            adapter=info.adapter,
            reply_to=turn.customer_message,
            turn=turn,
        )
        turn.provider, turn.model_name, turn.adapter = (
            info.provider,
            info.model_name,
            info.adapter,
        )
        turn.save(update_fields=["provider", "model_name", "adapter"])
    transaction.on_commit(lambda: reviewer_current().draft_stored(turn=turn))
    return draft


@transaction.atomic
def turn_fail(
    *, turn_id: int, error: str, owner: str | None = None, prepared: Prepared | None = None
) -> Stored | None:
    """The turn failed (provider error, timeout) or its owner died (``owner`` None,
    from the sweep; a pending turn qualifies too). Flags the conversation for a person,
    lets the reviewer record the failure (escalation hands the conversation to a
    person), and tells the customer. The customer's message stays stored.
    """
    turn, conversation = _lock(turn_id)
    if owner is not None:
        if turn.status != Turn.Status.RUNNING or turn.owner != owner:
            return None
    elif turn.status not in (Turn.Status.RUNNING, Turn.Status.PENDING):
        return None
    if prepared is not None:
        _apply_signals(turn, prepared)
    conversation.needs_attention = True
    conversation.attention_reason = f"Assistant failed: {error}"[:200]
    conversation.full_clean()
    conversation.save(update_fields=["needs_attention", "attention_reason", "updated_at"])
    turn.error = error[:500]
    verdict = reviewer_current().failed(turn=turn, error=error)
    _apply_verdict(turn, verdict)
    _close(turn, Turn.Status.FAILED)
    notice = system_notice_post(
        conversation=conversation,
        text=f"{FAILURE_LEAD} {verdict.customer_notice}"
        if verdict.customer_notice
        else FAILURE_NOTICE,
        reply_to=turn.customer_message,
        marker=Message.Marker.TURN_FAILED,
        turn=turn,
        locked=True,
    )
    _save(turn)
    return Stored(
        turn=turn, message=notice, verdict=verdict, next_pending=_next_pending(conversation)
    )


DEAD_OWNER_ERROR = "the assistant's process stopped before answering"


def turns_sweep(*, now: dt.datetime | None = None) -> int:
    """Finish turns nobody will finish: running past their deadline plus
    ``TURN_SWEEP_GRACE_SECONDS`` (the owner process died), or pending that long with no
    running turn ahead of them (the process that stored them died before claiming).
    Each is failed like any failed turn: the customer is told and can reach a person, the
    conversation is flagged. Returns how many were swept. Safe to run concurrently and
    repeatedly: each turn is re-checked under its lock.
    """
    now = now or timezone.now()
    grace = dt.timedelta(seconds=settings.TURN_SWEEP_GRACE_SECONDS)
    stale = dt.timedelta(seconds=float(settings.ASSISTANT_TIMEOUT_SECONDS)) + grace
    dead = list(
        Turn.objects.filter(status=Turn.Status.RUNNING, deadline_at__lt=now - grace).values_list(
            "pk", flat=True
        )
    )
    running_conversations = Turn.objects.filter(status=Turn.Status.RUNNING).values(
        "conversation_id"
    )
    orphans = list(
        Turn.objects.filter(status=Turn.Status.PENDING, created_at__lt=now - stale)
        .exclude(conversation_id__in=running_conversations)
        .values_list("pk", flat=True)
    )
    swept = 0
    for turn_id in [*dead, *orphans]:
        try:
            if turn_fail(turn_id=turn_id, error=DEAD_OWNER_ERROR) is not None:
                swept += 1
        except Exception:
            logger.exception("sweeping turn %s failed", turn_id)
    if swept:
        logger.warning("swept %d turn(s) whose process stopped", swept)
    return swept
