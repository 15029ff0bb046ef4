"""Every write to conversations, messages and the knowledge base goes through here."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from chat.models import Article, Conversation, CustomerFeedback, Message
from chat.ratelimits import rate_limit_consume

logger = logging.getLogger(__name__)

AGENTS_INBOX_GROUP = "agents.inbox"


def conversation_group(conversation_id: Any) -> str:
    """Channel-layer group of every socket (customer or agent) watching one conversation."""
    return f"conversation.{conversation_id}"


def display_name(user: Any) -> str:
    """How a person is named to others in chat: full name, else username; "" for nobody."""
    if user is None or not user.is_authenticated:
        return ""
    return user.get_full_name() or user.get_username()


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
            internal=message.internal,
            provider=message.provider,
            model_name=message.model_name,
            adapter=message.adapter,
            latency_ms=message.latency_ms,
            reply_to=message.reply_to_id,
        )
    return frame


def _broadcast_message(message: Message) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    # Consumers decide per audience what to forward; withheld drafts and notes stay with agents.
    async_to_sync(layer.group_send)(
        conversation_group(message.conversation_id),
        {"type": "chat.message", "message_id": message.pk, "visibility": message.visibility},
    )


@transaction.atomic
def message_append(
    *,
    conversation: Conversation,
    role: str,
    text: str,
    author: AbstractBaseUser | None = None,
    client_id: str = "",
    visibility: str = Message.Visibility.PUBLIC,
    broadcast: bool = True,
    **fields: Any,
) -> tuple[Message, bool]:
    """Append a message with the conversation's next sequence number.

    Locks the conversation row so concurrent senders get distinct, gap-free sequence
    numbers. A ``client_id`` already stored in this conversation returns the existing
    message and ``created=False`` (a retried send never creates a second message).
    Sockets watching the conversation are told after commit.
    """
    locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if client_id:
        existing = Message.objects.filter(conversation=locked, client_id=client_id).first()
        if existing is not None:
            return existing, False
    locked.last_seq += 1
    message = Message(
        conversation=locked,
        seq=locked.last_seq,
        role=role,
        text=text,
        author=author,  # type: ignore[misc]
        client_id=client_id,
        visibility=visibility,
        **fields,
    )
    message.full_clean(validate_constraints=False)
    try:
        with transaction.atomic():
            message.save()
    except IntegrityError:
        # Only a concurrent duplicate client_id can get here (seq is allocated under lock).
        return Message.objects.get(conversation=locked, client_id=client_id), False
    locked.save(update_fields=["last_seq", "updated_at"])
    conversation.last_seq = locked.last_seq
    if broadcast:
        transaction.on_commit(lambda: _broadcast_message(message))
    return message, True


@transaction.atomic
def article_upsert(
    *,
    slug: str,
    title: str,
    body: str,
    category: str = "",
    overwrite: bool = False,
    queue_embedding: bool = True,
) -> tuple[Article, bool]:
    """Create the article, or update it when ``overwrite``; returns (article, changed).

    A changed article is embedded in the background after commit; a caller importing
    many articles passes ``queue_embedding=False`` and queues them together with
    ``articles_embed_queue`` (one task per batch instead of one per article).
    """
    article = Article.objects.select_for_update().filter(slug=slug).first()
    if article is None:
        article = Article(slug=slug, title=title, body=body, category=category)
        article.full_clean()
        article.save()
        if queue_embedding:
            article_embed_queue(article=article)
        return article, True
    if not overwrite or (article.title, article.body, article.category) == (title, body, category):
        return article, False
    article.title, article.body, article.category = title, body, category
    article.full_clean()
    article.save(update_fields=["title", "body", "category", "updated_at"])
    if queue_embedding:
        article_embed_queue(article=article)
    return article, True


# --- knowledge-base embeddings (owned by the assistant) --------------------------------------


def article_embed_queue(*, article: Article, force: bool = False) -> None:
    """After commit, queue the background task that (re-)embeds the article."""
    articles_embed_queue(article_ids=[article.pk], force=force)


def articles_embed_queue(*, article_ids: Iterable[int], force: bool = False) -> int:
    """After commit, queue the background embedding of these articles: one task per
    ``EMBED_BATCH_SIZE`` articles (each logs one line). Returns how many tasks."""
    from django_q.tasks import async_task

    ids = sorted(set(article_ids))
    batches = [
        ids[start : start + EMBED_BATCH_SIZE] for start in range(0, len(ids), EMBED_BATCH_SIZE)
    ]

    def queue() -> None:
        for batch in batches:
            async_task("chat.tasks.articles_embed_task", batch, force=force)

    if batches:
        transaction.on_commit(queue)
    return len(batches)


@transaction.atomic
def article_save(*, article: Article) -> Article:
    """Validate and save an article edited in the admin; re-embed it after commit when
    its text changed (publishing alone does not need a new embedding)."""
    article.full_clean()
    previous = Article.objects.filter(pk=article.pk).values("title", "body").first()
    article.save()
    if previous is None or (previous["title"], previous["body"]) != (article.title, article.body):
        article_embed_queue(article=article)
    return article


@transaction.atomic
def article_publish_set(*, article_ids: list[int], published: bool) -> int:
    """Publish or unpublish articles; returns how many changed."""
    changed = 0
    for article in Article.objects.select_for_update().filter(pk__in=article_ids):
        if article.is_published != published:
            article.is_published = published
            article.full_clean()
            article.save(update_fields=["is_published", "updated_at"])
            changed += 1
    return changed


def article_embed(*, article_id: int, force: bool = False) -> bool:
    """Store the unit embedding of one article's title + body; True if stored.

    Idempotent: see ``articles_embed``.
    """
    return articles_embed(article_ids=[article_id], force=force) == 1


EMBED_BATCH_SIZE = 32


def articles_embed(*, article_ids: list[int], force: bool = False) -> int:
    """Embed the given articles in batches; returns how many vectors were stored.

    Idempotent: an article already embedded by the current embedding model after its
    last edit is left alone (unless ``force``); deleted ids are skipped. The model runs
    outside any transaction; each row is then locked and its vector stored only if the
    article was not edited meanwhile (that edit queued its own embedding).
    """
    from chat.assistant.knowledge import article_document
    from chat.assistant.providers import embedder_current

    embedder = embedder_current()
    articles = [
        article
        for article in Article.objects.filter(pk__in=article_ids).order_by("pk")
        if force
        or not (
            article.embedding is not None
            and article.embedding_model == embedder.name
            and article.embedded_at is not None
            and article.embedded_at >= article.updated_at
        )
    ]
    stored = 0
    for start in range(0, len(articles), EMBED_BATCH_SIZE):
        batch = articles[start : start + EMBED_BATCH_SIZE]
        vectors = embedder.embed_documents([article_document(a) for a in batch])
        with transaction.atomic():
            for article, vector in zip(batch, vectors, strict=True):
                locked = Article.objects.select_for_update().filter(pk=article.pk).first()
                if locked is None or locked.updated_at != article.updated_at:
                    continue
                locked.embedding = [round(float(x), 6) for x in vector]
                locked.embedding_model = embedder.name
                locked.embedded_at = timezone.now()
                locked.save(update_fields=["embedding", "embedding_model", "embedded_at"])
                stored += 1
    return stored


# --- customer turns ------------------------------------------------------------------------


class ChatError(Exception):
    """A request the chat refuses; ``code`` goes into the error frame / API response."""

    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class ChatRateLimited(ChatError):
    code = "rate_limited"


class ConversationClosed(ChatError):
    code = "conversation_ended"


def conversation_event_send(conversation_id: Any, event: dict[str, Any]) -> None:
    """group_send one event to every socket of a conversation (sync callers)."""
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(conversation_group(conversation_id), event)


def conversation_state_event(conversation: Conversation) -> dict[str, Any]:
    """The ``chat.conversation`` event sockets turn into a ``conversation.state`` frame.

    Whoever changes ``status``/``handling`` (takeover, hand-back, end) sends it after
    commit: ``transaction.on_commit(lambda: conversation_state_broadcast(conversation))``.
    """
    return {
        "type": "chat.conversation",
        "status": conversation.status,
        "handling": conversation.handling,
        "agent_name": display_name(conversation.assigned_agent),
    }


def conversation_state_broadcast(conversation: Conversation) -> None:
    conversation_event_send(conversation.pk, conversation_state_event(conversation))


@transaction.atomic
def conversation_start(
    *,
    customer: AbstractBaseUser | None,
    visitor_id: str,
    rate_subject: str,
    channel: str = Conversation.Channel.WEB,
    title: str = "",
) -> Conversation:
    """Open a conversation for a logged-in customer and/or a visitor; rate limited."""
    if not rate_limit_consume(
        scope="conversations", subject=rate_subject, rate=settings.CHAT_RATE_LIMIT_CONVERSATIONS
    ):
        raise ChatRateLimited("You have started too many conversations. Please wait a while.")
    conversation = Conversation(
        customer=customer,  # type: ignore[misc]
        visitor_id=visitor_id,
        channel=channel,
        title=title[:200],
    )
    conversation.full_clean()
    conversation.save()
    return conversation


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


def message_text_clean(text: Any) -> str:
    """The text of a customer message, or a ChatError for empty / oversized input."""
    if not isinstance(text, str):
        raise ChatError("A message needs a text.", code="invalid_text")
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


def customer_message_receive(
    *,
    conversation: Conversation,
    text: Any,
    client_id: Any,
    author: AbstractBaseUser | None,
    rate_subject: str,
) -> tuple[Message, bool]:
    """Store a customer's message once; returns (message, created).

    A retried ``client_id`` returns the stored message without counting against the
    rate limit. Nothing is stored for empty, oversized or rate-limited messages, or
    when the conversation has ended.
    """
    if not isinstance(client_id, str) or not 0 < len(client_id) <= 64:
        raise ChatError(
            "Each message needs a client_id of 1-64 characters.", code="invalid_client_id"
        )
    existing = Message.objects.filter(conversation=conversation, client_id=client_id).first()
    if existing is not None:
        return existing, False
    clean = message_text_clean(text)
    conversation.refresh_from_db(fields=["status"])
    if conversation.status == Conversation.Status.ENDED:
        raise ConversationClosed("This conversation has ended. Start a new one to continue.")
    if not rate_limit_consume(
        scope="messages", subject=rate_subject, rate=settings.CHAT_RATE_LIMIT_MESSAGES
    ):
        raise ChatRateLimited("You are sending messages too fast. Please wait a moment.")
    customer = author if author is not None and author.is_authenticated else None
    return message_append(
        conversation=conversation,
        role=Message.Role.CUSTOMER,
        text=clean,
        author=customer,
        client_id=client_id,
    )


@transaction.atomic
def assistant_reply_store(
    *,
    conversation: Conversation,
    customer_message: Message,
    text: str,
    provider: str,
    model_name: str,
    adapter: str,
    sources: list[dict[str, Any]],
    internal: dict[str, Any],
    latency_ms: int,
    withhold: bool = False,
) -> tuple[Message, bool]:
    """Store the assistant's answer to ``customer_message``; returns (message, shown).

    Locks the conversation row and re-checks who handles it: if an agent took over (or
    the conversation waits for a person or has ended) while the answer was being
    written, the answer is stored WITHHELD for agents and ``shown`` is False. A
    takeover that locks the same row therefore either happens before (draft withheld)
    or after (answer already public) - never in between.
    """
    locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
    shown = not withhold and locked.assistant_may_answer
    if not shown and not withhold:
        internal = {
            **internal,
            "withheld_because": f"handling={locked.handling}, status={locked.status}",
        }
    message, _ = message_append(
        conversation=locked,
        role=Message.Role.ASSISTANT,
        text=text,
        visibility=Message.Visibility.PUBLIC if shown else Message.Visibility.WITHHELD,
        sources=sources,
        internal=internal,
        provider=provider,
        model_name=model_name,
        adapter=adapter,
        latency_ms=latency_ms,
        reply_to=customer_message,
    )
    conversation.last_seq = locked.last_seq
    return message, shown


def system_notice_post(
    *, conversation: Conversation, text: str, reply_to: Message | None = None, **internal: Any
) -> Message:
    """A PUBLIC system message (escalation notices, failures, hand-over markers)."""
    message, _ = message_append(
        conversation=conversation,
        role=Message.Role.SYSTEM,
        text=text,
        reply_to=reply_to,
        internal=internal,
    )
    return message


FAILURE_NOTICE = (
    "Sorry, the assistant could not answer just now. Your message is saved and a person "
    "from our team will look at this conversation."
)


def turn_failure_record(
    *, conversation: Conversation, customer_message: Message, error: str
) -> Message:
    """The assistant failed on a turn: flag the conversation, tell escalation, tell the
    customer. The customer's message stays stored; returns the notice posted."""
    from escalation import services as escalation_services

    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        locked.needs_attention = True
        locked.attention_reason = f"Assistant failed: {error}"[:200]
        locked.full_clean()
        locked.save(update_fields=["needs_attention", "attention_reason", "updated_at"])
    notice = ""
    try:
        verdict = escalation_services.turn_failed(
            conversation=locked, customer_message=customer_message, error=error
        )
        notice = verdict.customer_notice
    except Exception:  # the failure notice must reach the customer whatever happens
        logger.exception("turn_failed raised for conversation %s", conversation.pk)
    return system_notice_post(
        conversation=locked,
        text=notice or FAILURE_NOTICE,
        reply_to=customer_message,
        failure=error[:500],
    )


HUMAN_REQUEST_NOTICE = "We are asking a person from our team to join. Please stay on this page."


def human_request(
    *, conversation: Conversation, requested_by: AbstractBaseUser | None
) -> Message | None:
    """The customer pressed "Talk to a person": hand over to escalation and post its notice."""
    from escalation import services as escalation_services

    conversation.refresh_from_db()
    if conversation.status == Conversation.Status.ENDED:
        raise ConversationClosed("This conversation has ended.")
    last_customer_message = (
        conversation.messages.filter(role=Message.Role.CUSTOMER).order_by("-seq").first()
    )
    verdict = escalation_services.escalation_request_human(
        conversation=conversation, customer_message=last_customer_message
    )
    notice = getattr(verdict, "customer_notice", "") if verdict is not None else ""
    return system_notice_post(
        conversation=conversation,
        text=notice or HUMAN_REQUEST_NOTICE,
        reply_to=last_customer_message,
        human_requested=True,
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
    system_notice_post(conversation=locked, text="This conversation has ended.")
    transaction.on_commit(lambda: conversation_state_broadcast(locked))
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
    feedback.better_answer = (better_answer or "").strip()
    feedback.comment = (comment or "").strip()
    try:
        feedback.full_clean(validate_constraints=False)
    except ValidationError as exc:
        raise ChatError("A rating is a whole number from 1 to 5.", code="invalid_feedback") from exc
    feedback.save()
    return feedback
