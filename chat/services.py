"""Every write to conversations, messages and the knowledge base goes through here."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from chat.models import Article, Conversation, Message

AGENTS_INBOX_GROUP = "agents.inbox"


def conversation_group(conversation_id: Any) -> str:
    """Channel-layer group of every socket (customer or agent) watching one conversation."""
    return f"conversation.{conversation_id}"


def message_frame(message: Message, *, audience: str) -> dict[str, Any]:
    """The JSON a socket receives for a message. Customers never see internal fields."""
    author = message.author
    frame: dict[str, Any] = {
        "id": message.pk,
        "seq": message.seq,
        "client_id": message.client_id,
        "role": message.role,
        "author_name": (author.get_full_name() or author.get_username()) if author else "",
        "text": message.text,
        "sources": message.sources,
        "created_at": message.created_at.isoformat(),
    }
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
    *, slug: str, title: str, body: str, category: str = "", overwrite: bool = False
) -> tuple[Article, bool]:
    """Create the article, or update it when ``overwrite``; returns (article, changed)."""
    article = Article.objects.select_for_update().filter(slug=slug).first()
    if article is None:
        article = Article(slug=slug, title=title, body=body, category=category)
        article.full_clean()
        article.save()
        return article, True
    if not overwrite or (article.title, article.body, article.category) == (title, body, category):
        return article, False
    article.title, article.body, article.category = title, body, category
    article.full_clean()
    article.save(update_fields=["title", "body", "category", "updated_at"])
    return article, True
