"""Every write to conversations, messages and customer feedback."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, router, transaction
from django.db.models.constants import OnConflict
from django.utils import timezone

from chat.errors import ApplicationError, Conflict, RateLimited
from chat.events import publish_on_commit
from chat.models import Conversation, CustomerFeedback, Message, Turn
from chat.payloads import text_field, text_unstorable
from chat.ratelimits import Requester, rate_limits_consume, rate_limits_refund
from chat.review import reviewer_current
from chat.selectors import display_name
from chat.statements import column, statement_built, table

logger = logging.getLogger(__name__)

AGENTS_INBOX_GROUP = "agents.inbox"


class ChatError(ApplicationError):
    """A request the chat refuses; ``code`` goes into the error frame / API response."""


class ChatRateLimited(RateLimited, ChatError):
    pass


class ConversationClosed(Conflict, ChatError):
    code = "conversation_ended"


def conversation_group(conversation_id: Any) -> str:
    """Channel-layer group of every socket (customer or agent) watching one conversation."""
    return f"conversation.{conversation_id}"


def typing_event(*, role: str, author: Any, is_typing: bool, sender: str) -> dict[str, Any]:
    """Channel-layer event for "someone is typing", from a customer's or an agent's socket."""
    return {
        "type": "chat.typing",
        "role": role,
        "author_name": display_name(author),
        "is_typing": is_typing,
        "sender": sender,
    }


def typing_frame(event: dict[str, Any]) -> dict[str, Any]:
    """The socket frame for a typing event (the sender's own socket does not get one)."""
    return {
        "type": "typing",
        "role": event.get("role", ""),
        "author_name": event.get("author_name", ""),
        "is_typing": bool(event.get("is_typing")),
    }


# What a customer's socket may see of a message; agents see the whole frame.
CUSTOMER_FRAME_KEYS = (
    "id",
    "seq",
    "client_id",
    "role",
    "author_name",
    "text",
    "sources",
    "created_at",
    "reply_to_id",
    "provider",
)


def turn_summary(turn: Turn | None) -> dict[str, Any] | None:
    """The turn behind an answer, draft or notice, for agents (never for customers)."""
    if turn is None:
        return None
    return {
        "id": turn.pk,
        "status": turn.status,
        "route": turn.route,
        "reason": turn.decision_reason,
        "category": turn.decision_category,
        "detail": turn.decision_detail,
        "priority": turn.decision_priority,
        "sentiment": {"label": turn.sentiment_label, "score": turn.sentiment_score},
        "intent": {
            "label": turn.intent,
            "confidence": turn.intent_confidence,
            "model_version": turn.router_version,
        },
        "retrieval_top_score": turn.retrieval_top_score,
        "no_answer": turn.no_answer,
        # The approved answer from the support team that answered (answer memory).
        "support_answer": turn.support_answer_id,
        "withheld_reason": turn.withheld_reason,
        "error": turn.error,
    }


def message_frame(message: Message, *, audience: str) -> dict[str, Any]:
    """The JSON a socket receives for a message. Customers never see internal fields."""
    frame: dict[str, Any] = {
        "id": message.pk,
        "seq": message.seq,
        "client_id": message.client_id,
        "role": message.role,
        "author_name": display_name(message.author),
        "text": message.text,
        "sources": message.sources,
        "created_at": message.created_at.isoformat(),
        # The customer message an answer or notice replies to (matches stream frames).
        "reply_to_id": message.reply_to_id,
    }
    if message.role == Message.Role.ASSISTANT:
        # Lets the page say honestly when the offline (retrieval-only) assistant answered.
        frame["provider"] = message.provider
    if audience == "agent":
        frame.update(
            visibility=message.visibility,
            marker=message.marker,
            turn=turn_summary(message.turn) if message.turn_id else None,
            provider=message.provider,
            model_name=message.model_name,
            adapter=message.adapter,
            latency_ms=message.latency_ms,
            reply_to=message.reply_to_id,
        )
    return frame


def frame_for_audience(frame: dict[str, Any], audience: str) -> dict[str, Any]:
    """Cut an agent frame down to what ``audience`` may see."""
    if audience == "agent":
        return frame
    return {key: frame[key] for key in CUSTOMER_FRAME_KEYS if key in frame}


def message_event(message: Message) -> dict[str, Any]:
    """The ``chat.message`` event: the whole agent frame, so that no socket reads the
    database per broadcast; consumers cut it down for customers."""
    return {
        "type": "chat.message",
        "message_id": message.pk,
        "seq": message.seq,
        "visibility": message.visibility,
        "frame": message_frame(message, audience="agent"),
    }


@dataclass(frozen=True)
class _Advance:
    """``conversation_lock_advancing``'s statements for one connection
    (``chat.statements``): the SQL, the model fields its columns come back as, and each
    column's converters (what a queryset would apply), worked out once instead of on
    every call as ``Model.objects.raw`` does; and the query for unfinished turns."""

    sql: str
    attnames: list[str]
    converters: list[tuple[int, list[Any], Any]]
    unfinished_sql: str


def _advance_statement(wrapper: Any, unfinished_in_statement: bool) -> _Advance:
    meta = Conversation._meta
    conversations = table(wrapper, Conversation)
    fields = [field for field in meta.concrete_fields if field.column]
    columns = [column(wrapper, Conversation, field.name, conversations) for field in fields]
    seq = column(wrapper, Conversation, "last_seq")
    updated = column(wrapper, Conversation, "updated_at")
    pk = column(wrapper, Conversation, meta.pk.name, conversations)

    def unfinished(conversation: str) -> str:
        return (
            f"EXISTS (SELECT 1 FROM {table(wrapper, Turn)} WHERE "  # noqa: S608
            f"{column(wrapper, Turn, 'conversation')} = {conversation} AND "
            f"{column(wrapper, Turn, 'status')} IN (%s, %s))"
        )

    if unfinished_in_statement:
        columns.append(unfinished(pk))
    converters = []
    for index, field in enumerate(fields):
        col = field.get_col(meta.db_table)
        found = [*wrapper.ops.get_db_converters(col), *col.get_db_converters(wrapper)]
        if found:
            converters.append((index, found, col))
    return _Advance(
        sql=(
            f"UPDATE {conversations} SET {seq} = {seq} + 1, {updated} = %s "  # noqa: S608
            f"WHERE {pk} = %s RETURNING {', '.join(columns)}"
        ),
        attnames=[field.attname for field in fields],
        converters=converters,
        unfinished_sql=f"SELECT {unfinished('%s')}",
    )


def conversation_lock_advancing(*, conversation_id: Any) -> Conversation:
    """The conversation's row, locked for the rest of the transaction, with the next
    sequence number already taken: ``last_seq`` is the number of the message the caller
    appends next (``message_append(..., seq_taken=True)``), ``updated_at`` is now, every
    other field as committed. One ``UPDATE ... RETURNING`` every column, where
    ``select_for_update().get()`` and a ``save()`` of the number after the message took
    two statements and eight times the Python (387 against 48 us on SQLite); it locks
    the row as ``SELECT ... FOR UPDATE`` does on PostgreSQL. A caller that ends up
    appending nothing rolls its transaction back. Raises ``Conversation.DoesNotExist``.
    """
    return _lock_advancing(conversation_id, unfinished_turns=False)[0]


def conversation_lock_advancing_with_turns(*, conversation_id: Any) -> tuple[Conversation, bool]:
    """``conversation_lock_advancing``, and whether a turn of the conversation is running
    or waiting, read under the lock that every change of a turn's status holds.

    On SQLite that is the same statement: its writers are serialised from ``BEGIN
    IMMEDIATE`` on, so the statement reads after every earlier writer's commit. On
    PostgreSQL it is a second one: an ``UPDATE`` that waited for the row lock still reads
    its subqueries from the snapshot taken before it waited, so it would miss the turn
    the lock holder just claimed (two processes then claimed two turns of one
    conversation, and the second failed on the one-running-turn constraint); a new
    statement takes a new snapshot."""
    return _lock_advancing(conversation_id, unfinished_turns=True)


def _lock_advancing(conversation_id: Any, *, unfinished_turns: bool) -> tuple[Conversation, bool]:
    # The row is built as a queryset would build it (the columns' converters, then
    # ``from_db``), with what that needs worked out once per connection.
    in_statement = unfinished_turns and connections[DEFAULT_DB_ALIAS].vendor == "sqlite"
    wrapper, statement = statement_built(
        ("conversation_lock_advancing", in_statement),
        lambda wrapper: _advance_statement(wrapper, in_statement),
    )
    meta = Conversation._meta
    pk = meta.pk.get_db_prep_value(conversation_id, wrapper)
    statuses = [Turn.Status.RUNNING.value, Turn.Status.PENDING.value]
    params = [meta.get_field("updated_at").get_db_prep_value(timezone.now(), wrapper), pk]
    with wrapper.cursor() as cursor:
        cursor.execute(statement.sql, params + statuses if in_statement else params)
        row = cursor.fetchone()
        if row is None:
            raise Conversation.DoesNotExist(f"No conversation {conversation_id}.")
        busy = False
        if unfinished_turns and not in_statement:
            cursor.execute(statement.unfinished_sql, [pk, *statuses])
            busy = bool(cursor.fetchone()[0])
    values = list(row)
    for index, converters, col in statement.converters:
        for converter in converters:
            values[index] = converter(values[index], col, wrapper)
    count = len(statement.attnames)
    locked = Conversation.from_db(wrapper.alias, statement.attnames, values[:count])
    return locked, bool(values[count]) if in_statement else busy


def _insert_unless_duplicate(message: Message) -> bool:
    """Insert ``message`` as ``save()`` does, unless a row with its unique values exists:
    one ``INSERT ... ON CONFLICT DO NOTHING`` (SQLite: ``INSERT OR IGNORE``) returning
    its key, through Django's own insert (what ``bulk_create(ignore_conflicts=True)``
    runs, which does not give the key back). False when nothing was inserted. Replaces
    an insert under a savepoint that caught the unique violation: two statements fewer
    per customer message, two round trips on PostgreSQL."""
    meta = Message._meta
    fields = [f for f in meta.local_concrete_fields if not f.generated and f is not meta.auto_field]
    using = router.db_for_write(Message, instance=message)
    # Model.save()'s own insert (``_do_insert``), with the conflict clause.
    rows = Message._base_manager._insert(  # type: ignore[attr-defined]  # not in the stubs
        [message],
        fields=fields,
        returning_fields=meta.db_returning_fields,
        using=using,
        on_conflict=OnConflict.IGNORE,
    )
    if not rows or rows[0] is None:
        return False
    for value, field in zip(rows[0], meta.db_returning_fields, strict=True):
        setattr(message, field.attname, value)
    message._state.adding = False
    message._state.db = using
    return True


@transaction.atomic(savepoint=False)
def message_append(
    *,
    conversation: Conversation,
    role: str,
    text: str,
    author: AbstractBaseUser | None = None,
    client_id: str = "",
    visibility: str = Message.Visibility.PUBLIC,
    broadcast: bool = True,
    locked: bool = False,
    seq_taken: bool = False,
    check_duplicate: bool = True,
    event_extra: dict[str, Any] | None = None,
    **fields: Any,
) -> tuple[Message, bool]:
    """Append a message with the conversation's next sequence number.

    Locks the conversation row so concurrent senders get distinct, gap-free sequence
    numbers (``locked=True``: the caller already holds the lock and ``conversation`` is
    the locked row; ``seq_taken=True``: the row came from ``conversation_lock_advancing``,
    whose ``last_seq`` is this message's number). A ``client_id`` already stored in this
    conversation returns the existing message and ``created=False`` (a retried send
    never creates a second message; ``check_duplicate=False``: no lookup first, the
    insert that skips a duplicate finds it through the unique constraint, for
    callers where retries are rare; with ``seq_taken`` the caller's transaction is then
    marked for rollback, which gives the number back).
    Sockets watching the conversation are told after commit. Joins the caller's
    transaction without a savepoint (any error rolls the whole of it back).
    """
    conversation_row = conversation
    if not locked and not seq_taken:
        conversation_row = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if client_id and check_duplicate:
        existing = Message.objects.filter(conversation=conversation_row, client_id=client_id)
        if (found := existing.first()) is not None:
            if seq_taken:
                transaction.set_rollback(True)
            return found, False
    if not seq_taken:
        conversation_row.last_seq += 1
    message = Message(
        conversation=conversation_row,
        seq=conversation_row.last_seq,
        role=role,
        text=text,
        author=author,  # type: ignore[misc]
        client_id=client_id,
        visibility=visibility,
        **fields,
    )
    # The foreign keys were handed in as objects: no query to re-check they exist.
    message.full_clean(
        exclude=["conversation", "author", "reply_to", "turn"], validate_constraints=False
    )
    if client_id:
        if not _insert_unless_duplicate(message):
            # Only a duplicate client_id is skipped (seq is allocated under the lock).
            conversation_row.last_seq -= 1
            found = Message.objects.filter(
                conversation=conversation_row, client_id=client_id
            ).first()
            if found is None:  # skipped for another reason: never silently
                raise IntegrityError(f"The message {client_id!r} could not be stored.")
            if seq_taken:  # the number was taken in the database: give it back
                transaction.set_rollback(True)
            return found, False
    else:
        message.save()
    if not seq_taken:
        conversation_row.save(update_fields=["last_seq", "updated_at"])
    conversation.last_seq = conversation_row.last_seq
    if broadcast:
        event = message_event(message)
        if event_extra:
            event.update(event_extra)
        publish_on_commit(conversation_group(conversation_row.pk), event)
    return message, True


def conversation_state_event(conversation: Conversation) -> dict[str, Any]:
    """The ``chat.conversation`` event sockets turn into a ``conversation.state`` frame."""
    return {
        "type": "chat.conversation",
        "status": conversation.status,
        "handling": conversation.handling,
        "agent_name": display_name(conversation.assigned_agent),
    }


def conversation_state_publish(conversation: Conversation) -> None:
    """Tell the conversation's sockets its state after commit (read back at commit time,
    so the last change in the transaction wins)."""
    pk = conversation.pk

    def event() -> dict[str, Any]:
        fresh = Conversation.objects.select_related("assigned_agent").get(pk=pk)
        return conversation_state_event(fresh)

    publish_on_commit(conversation_group(pk), event)


@transaction.atomic
def conversation_start(
    *,
    customer: AbstractBaseUser | None,
    visitor_id: str,
    rate_subject: Requester | str,
    channel: str = Conversation.Channel.WEB,
    title: str = "",
) -> Conversation:
    """Open a conversation for a logged-in customer and/or a visitor; rate limited per
    account or visitor and per client address (``chat.ratelimits.Requester``)."""
    if not rate_limits_consume(
        scope="conversations",
        requester=rate_subject,
        rate=settings.CHAT_RATE_LIMIT_CONVERSATIONS,
        address_rate=settings.CHAT_RATE_LIMIT_CONVERSATIONS_PER_ADDRESS,
    ):
        raise ChatRateLimited("You have started too many conversations. Please wait a while.")
    title = text_field(title, name="title", max_chars=10_000, required=False)[:200]
    conversation = Conversation(
        customer=customer,  # type: ignore[misc]
        visitor_id=visitor_id,
        channel=channel,
        title=title,
    )
    conversation.full_clean()
    conversation.save()
    return conversation


def message_text_clean(text: Any) -> str:
    """The text of a customer message, or a ChatError for empty / oversized / unstorable
    input."""
    if not isinstance(text, str):
        raise ChatError("A message needs a text.", code="invalid_text")
    if text_unstorable(text):
        raise ChatError(
            "Your message contains characters that cannot be sent.", code="invalid_characters"
        )
    text = text.strip()
    if not text:
        raise ChatError("Your message is empty.", code="empty_message")
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    if len(text) > limit:
        raise ChatError(
            f"Your message is too long ({len(text)} characters, at most {limit}).",
            code="message_too_long",
        )
    return text


def _stored_with_client_id(*, conversation: Conversation, client_id: str) -> Message | None:
    """The conversation's message sent with ``client_id``, if any (at most one: a unique
    constraint). Unordered: ``Message``'s default ordering would join the conversation
    table to sort a single row."""
    found = Message.objects.filter(conversation_id=conversation.pk, client_id=client_id)
    return next(iter(found.order_by()[:1]), None)


class Received(NamedTuple):
    message: Message
    created: bool
    # The assistant's turn for it; None when a person handles the conversation (or for a
    # retried message).
    turn: Turn | None
    # The turn, already claimed for ``claim_owner`` when nothing else was running in the
    # conversation (the caller runs it: ``chat.turns.turns_start``).
    claimed: Any = None


def customer_message_receive(
    *,
    conversation: Conversation,
    text: Any,
    client_id: Any,
    author: AbstractBaseUser | None,
    rate_subject: Requester | str,
    claim_owner: str = "",
) -> Received:
    """Store a customer's message once, with a turn for the assistant.

    The message and its turn are written in one transaction, so a message the assistant
    should answer always has a turn (a crash afterwards is found by the sweep). With
    ``claim_owner`` the turn is claimed for that process in the same transaction when no
    other turn of the conversation runs; otherwise it waits (pending) for the running
    one's owner. A retried ``client_id`` returns the stored message without counting
    against the rate limit. Nothing is stored for empty, oversized, unstorable or
    rate-limited messages, or when the conversation has ended.

    The rate limit (a Redis round trip) is counted before the transaction, so no row
    lock, and on SQLite no write lock, is held while it waits. Retries are rare, so a
    message is counted first and a retry's count given back (``rate_limits_refund``)
    rather than looked up before every message; a retry over the limit is looked up then
    and answered with the stored message.
    """
    if not isinstance(client_id, str) or not 0 < len(client_id) <= 64 or text_unstorable(client_id):
        raise ChatError(
            "Each message needs a client_id of 1-64 characters.", code="invalid_client_id"
        )
    clean = message_text_clean(text)
    limits = {
        "scope": "messages",
        "requester": rate_subject,
        "rate": settings.CHAT_RATE_LIMIT_MESSAGES,
        "address_rate": settings.CHAT_RATE_LIMIT_MESSAGES_PER_ADDRESS,
    }
    if not rate_limits_consume(**limits):
        existing = _stored_with_client_id(conversation=conversation, client_id=client_id)
        rate_limits_refund(**limits)
        if existing is not None:  # a retry: never counted
            return Received(existing, False, None)
        raise ChatRateLimited("You are sending messages too fast. Please wait a moment.")
    try:
        received = _customer_message_store(
            conversation=conversation,
            text=clean,
            client_id=client_id,
            author=author,
            claim_owner=claim_owner,
        )
    except ConversationClosed:
        rate_limits_refund(**limits)
        raise
    if not received.created:  # a retry: never counted
        rate_limits_refund(**limits)
    if received.claimed is not None:
        from chat.services.turns import turn_context_read

        turn_context_read(received.claimed)
    return received


@transaction.atomic
def _customer_message_store(
    *,
    conversation: Conversation,
    text: str,
    client_id: str,
    author: AbstractBaseUser | None,
    claim_owner: str,
) -> Received:
    # Locked, with the message's number taken (given back by rolling back when nothing
    # is stored: a retry, an ended conversation), and whether a turn runs or waits.
    locked, turns_unfinished = conversation_lock_advancing_with_turns(
        conversation_id=conversation.pk
    )
    if locked.status == Conversation.Status.ENDED:
        existing = _stored_with_client_id(conversation=locked, client_id=client_id)
        if existing is not None:  # a retry of a message sent before the end
            transaction.set_rollback(True)
            return Received(existing, False, None)
        raise ConversationClosed("This conversation has ended. Start a new one to continue.")
    customer = author if author is not None and author.is_authenticated else None
    answers = locked.assistant_may_answer
    message, created = message_append(
        conversation=locked,
        role=Message.Role.CUSTOMER,
        text=text,
        author=customer,
        client_id=client_id,
        seq_taken=True,
        check_duplicate=False,  # retries are rare: the guarded insert finds them
        # The assistant's turn starts (or queues): sockets show "thinking" with it.
        event_extra={"thinking": True} if answers else None,
    )
    if not created:
        return Received(message, False, None)
    conversation.last_seq = locked.last_seq
    if not answers:
        return Received(message, True, None)
    from chat.services.turns import turn_open

    turn, claimed = turn_open(
        conversation=locked,
        customer_message=message,
        owner=claim_owner if not turns_unfinished else "",
    )
    return Received(message, True, turn, claimed)


def system_notice_post(
    *,
    conversation: Conversation,
    text: str,
    reply_to: Message | None = None,
    marker: str = "",
    turn: Turn | None = None,
    locked: bool = False,
) -> Message:
    """A PUBLIC system message (escalation notices, failures, hand-over markers)."""
    message, _ = message_append(
        conversation=conversation,
        locked=locked,
        role=Message.Role.SYSTEM,
        text=text,
        reply_to=reply_to,
        marker=marker,
        turn=turn,
    )
    return message


HUMAN_REQUEST_NOTICE = "We are asking a person from our team to join. Please stay on this page."


@transaction.atomic
def human_request(
    *, conversation: Conversation, requested_by: AbstractBaseUser | None
) -> Message | None:
    """The customer pressed "Talk to a person": hand over to the registered reviewer
    (escalation opens a ticket) and post its notice, in one transaction."""
    locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if locked.status == Conversation.Status.ENDED:
        raise ConversationClosed("This conversation has ended.")
    last_customer_message = (
        locked.messages.filter(role=Message.Role.CUSTOMER).order_by("-seq").first()
    )
    verdict = reviewer_current().human_requested(
        conversation=locked, customer_message=last_customer_message
    )
    return system_notice_post(
        conversation=locked,
        text=verdict.customer_notice or HUMAN_REQUEST_NOTICE,
        reply_to=last_customer_message,
        marker=Message.Marker.HUMAN_REQUESTED,
        locked=True,
    )


@transaction.atomic
def conversation_end(*, conversation: Conversation) -> Conversation:
    """End a conversation (idempotent); the customer is then asked for a rating."""
    locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if locked.status == Conversation.Status.ENDED:
        return locked
    locked.status = Conversation.Status.ENDED
    locked.ended_at = timezone.now()
    locked.full_clean()
    locked.save(update_fields=["status", "ended_at", "updated_at"])
    system_notice_post(
        conversation=locked, text="This conversation has ended.", marker=Message.Marker.ENDED
    )
    conversation_state_publish(locked)
    return locked


@transaction.atomic
def feedback_submit(
    *,
    conversation: Conversation,
    score: int,
    better_answer: str = "",
    comment: str = "",
    message: Message | None = None,
) -> CustomerFeedback:
    """Store (or replace) the customer's 1-5 rating of the conversation.

    ``message`` defaults to the last answer the customer saw (assistant or agent).
    """
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    better_answer = text_field(better_answer, name="better_answer", max_chars=limit, required=False)
    comment = text_field(comment, name="comment", max_chars=limit, required=False)
    if message is None:
        message = (
            conversation.messages.filter(
                role__in=[Message.Role.ASSISTANT, Message.Role.AGENT],
                visibility=Message.Visibility.PUBLIC,
            )
            .order_by("-seq")
            .first()
        )
    elif message.conversation_id != conversation.pk:
        raise ChatError("That message is not part of this conversation.", code="invalid_message")
    feedback = (
        CustomerFeedback.objects.select_for_update().filter(conversation=conversation).first()
    )
    if feedback is None:
        feedback = CustomerFeedback(conversation=conversation)
    feedback.message = message
    feedback.score = score
    feedback.better_answer = better_answer
    feedback.comment = comment
    try:
        feedback.full_clean(validate_constraints=False)
    except ValidationError as exc:
        raise ChatError("A rating is a whole number from 1 to 5.", code="invalid_feedback") from exc
    feedback.save()
    return feedback


@transaction.atomic
def conversations_claim(*, customer: AbstractBaseUser, visitor_id: str) -> int:
    """Give a customer who just signed in (or signed up) the anonymous conversations
    their visitor token started on this device; returns how many joined the account.

    Only conversations without an account are taken, under row locks, so two sign-ins
    racing on one device leave each conversation with exactly one owner. A forged or
    missing token (empty ``visitor_id``) claims nothing.
    """
    if not visitor_id:
        return 0
    claimed = 0
    anonymous = Conversation.objects.select_for_update().filter(
        visitor_id=visitor_id, customer__isnull=True
    )
    for conversation in anonymous:
        conversation.customer = customer  # type: ignore[assignment]
        conversation.full_clean()
        conversation.save(update_fields=["customer"])
        claimed += 1
    return claimed
