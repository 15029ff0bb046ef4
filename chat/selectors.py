"""Reads for conversations, messages and the knowledge base."""

from __future__ import annotations

from typing import Any, NamedTuple

from django.db.models import Count, F, Max, Q, QuerySet

from chat.models import (
    Article,
    ArticlePassage,
    Conversation,
    IntentExample,
    Message,
    RouterVersion,
    SupportAnswer,
    Turn,
)
from chat.statements import column, statement_built, table

HISTORY_LIMIT = 20


def display_name(user: Any) -> str:
    """How a person is named to others in chat: full name, else username; "" for nobody."""
    if user is None or not user.is_authenticated:
        return ""
    return user.get_full_name() or user.get_username()


HAND_BACK_MARKER = "The agent handed the conversation back to the assistant."


def conversation_messages_after(
    *, conversation: Conversation, seq: int, audience: str
) -> QuerySet[Message]:
    """Messages after ``seq`` in order; customers only ever get PUBLIC ones."""
    messages = (
        Message.objects.filter(conversation=conversation, seq__gt=seq)
        .select_related("author")
        .order_by("seq")
    )
    if audience != "agent":
        messages = messages.filter(visibility=Message.Visibility.PUBLIC)
    return messages


def conversations_for_customer(*, user: Any, visitor_id: str) -> QuerySet[Conversation]:
    """The conversations a customer owns: by account, and by visitor token."""
    owned = Q(pk__in=[])
    if user is not None and user.is_authenticated:
        owned |= Q(customer_id=user.pk)
    if visitor_id:
        owned |= Q(visitor_id=visitor_id, customer__isnull=True)
    return Conversation.objects.filter(owned)


def _context_sql(wrapper: Any) -> str:
    """``conversation_context``'s query: what
    ``Message.objects.filter(conversation=, seq__lt=, visibility=PUBLIC).order_by("-seq")
    .values_list("role", "text", "marker", "author__first_name", "author__last_name",
    "author__username", "customer_turn__route", "customer_turn__status",
    "customer_turn__no_answer", "customer_turn__intent")[:limit]`` runs."""
    user = Message._meta.get_field("author").related_model
    selected = [
        column(wrapper, Message, "role", "m"),
        column(wrapper, Message, "text", "m"),
        column(wrapper, Message, "marker", "m"),
        column(wrapper, user, "first_name", "u"),
        column(wrapper, user, "last_name", "u"),
        column(wrapper, user, "username", "u"),
        column(wrapper, Turn, "route", "t"),
        column(wrapper, Turn, "status", "t"),
        column(wrapper, Turn, "no_answer", "t"),
        column(wrapper, Turn, "intent", "t"),
    ]
    return (
        f"SELECT {', '.join(selected)} FROM {table(wrapper, Message)} m "  # noqa: S608
        f"LEFT OUTER JOIN {table(wrapper, user)} u "
        f"ON {column(wrapper, Message, 'author', 'm')} = "
        f"{column(wrapper, user, user._meta.pk.name, 'u')} "
        f"LEFT OUTER JOIN {table(wrapper, Turn)} t "
        f"ON {column(wrapper, Turn, 'customer_message', 't')} = "
        f"{column(wrapper, Message, Message._meta.pk.name, 'm')} "
        f"WHERE {column(wrapper, Message, 'conversation', 'm')} = %s "
        f"AND {column(wrapper, Message, 'seq', 'm')} < %s "
        f"AND {column(wrapper, Message, 'visibility', 'm')} = %s "
        f"ORDER BY {column(wrapper, Message, 'seq', 'm')} DESC LIMIT %s"
    )


class TurnContext(NamedTuple):
    """What a claimed turn is run with, read in one query (``conversation_context``):
    the assistant's history, and the turns of the earlier customer messages in it as
    ``(route, status, no_answer, intent)``, newest first."""

    history: list[dict[str, str]]
    earlier_turns: list[tuple[str, str, bool, str]]


def conversation_context(
    *, conversation: Conversation, before_seq: int, limit: int = HISTORY_LIMIT
) -> TurnContext:
    """The last public messages before ``before_seq`` as the assistant's history
    [{"role", "text"}], oldest first, with the turns of the customer messages among them.

    Agent replies are wrapped in system markers where a person joined and where the
    conversation went back to the assistant, so a handed-back conversation reads
    correctly to the model.
    """
    # Plain values, not model instances, from one statement built once per connection
    # (``chat.statements``): this runs before every turn. The customer messages' turns
    # come in the same rows (a customer message has at most one).
    wrapper, sql = statement_built("conversation_context", _context_sql)
    params = [
        Conversation._meta.pk.get_db_prep_value(conversation.pk, wrapper),
        before_seq,
        Message.Visibility.PUBLIC.value,
        limit,
    ]
    with wrapper.cursor() as cursor:
        cursor.execute(sql, params)
        rows = [
            (*row[:8], None if row[7] is None else bool(row[8]), row[9])
            for row in cursor.fetchall()
        ]
    earlier_turns = [
        (route, status, no_answer, intent)
        for role, *_, route, status, no_answer, intent in rows
        if role == Message.Role.CUSTOMER and status is not None
    ]
    rows.reverse()
    history: list[dict[str, str]] = []
    in_human_part = False
    for role, text, marker, first_name, last_name, username, *_ in rows:
        marker = marker if role == Message.Role.SYSTEM else ""
        if marker in (Message.Marker.HUMAN_START, Message.Marker.HUMAN_END):
            # The escalation app posts its own markers on takeover / hand-back.
            in_human_part = marker == Message.Marker.HUMAN_START
        elif role == Message.Role.AGENT and not in_human_part:
            # ``display_name`` of the author, from the joined columns.
            name = f"{first_name or ''} {last_name or ''}".strip() or username or "an agent"
            history.append(
                {"role": "system", "text": f"A human agent ({name}) joined the conversation."}
            )
            in_human_part = True
        elif role == Message.Role.ASSISTANT and in_human_part:
            history.append({"role": "system", "text": HAND_BACK_MARKER})
            in_human_part = False
        history.append({"role": role, "text": text})
    if in_human_part:
        # The assistant only answers again after a hand-back.
        history.append({"role": "system", "text": HAND_BACK_MARKER})
    return TurnContext(history, earlier_turns)


def articles_retrievable(*, embedding_model: str) -> QuerySet[Article]:
    """Published articles embedded with ``embedding_model`` (others are not comparable)."""
    return Article.objects.filter(
        is_published=True, embedding_model=embedding_model, embedding__isnull=False
    )


def articles_published() -> QuerySet[Article]:
    """Published articles for the help center, by category then title (no vectors)."""
    return (
        Article.objects.filter(is_published=True)
        .only("slug", "title", "category")
        .order_by("category", "title")
    )


def article_published(*, slug: str) -> Article | None:
    """The published article with this slug, or None (unpublished ones are not public)."""
    return Article.objects.filter(is_published=True, slug=slug).defer("embedding").first()


def article_passages_retrievable(*, embedding_model: str) -> QuerySet[ArticlePassage]:
    """Passages of published articles embedded with ``embedding_model``, article by
    article in reading order (they are replaced whenever their article is re-embedded,
    so the articles' signature covers them)."""
    return ArticlePassage.objects.filter(
        article__is_published=True,
        article__embedding_model=embedding_model,
        article__embedding__isnull=False,
        embedding_model=embedding_model,
    ).order_by("article_id", "position")


def articles_retrievable_signature(*, embedding_model: str) -> tuple[Any, ...]:
    """A cheap fingerprint of the retrievable set: changes whenever an article is
    published, unpublished, edited, deleted or (re-)embedded."""
    agg = articles_retrievable(embedding_model=embedding_model).aggregate(
        count=Count("id"), updated=Max("updated_at"), embedded=Max("embedded_at")
    )
    return (agg["count"], agg["updated"], agg["embedded"])


def article_quoting(*, text: str) -> Article | None:
    """The published article whose body contains ``text`` word for word (a reviewer's
    better answer quoting it), or None; short texts quote nothing."""
    text = " ".join(text.split())
    if len(text) < 20:
        return None
    return (
        Article.objects.filter(is_published=True, body__contains=text)
        .only("pk", "slug", "title")
        .order_by("pk")
        .first()
    )


def support_answers_matchable(*, embedding_model: str) -> QuerySet[SupportAnswer]:
    """Answers from the team that a customer may get: approved (not revoked) and their
    question embedded with ``embedding_model``."""
    return SupportAnswer.objects.filter(
        status=SupportAnswer.Status.APPROVED,
        embedding_model=embedding_model,
        embedding__isnull=False,
    )


def support_answers_signature(*, embedding_model: str) -> tuple[Any, ...]:
    """Changes whenever an answer is approved, revoked, restored or deleted (the count
    and the latest change of every row, revoked ones included)."""
    agg = SupportAnswer.objects.aggregate(count=Count("id"), updated=Max("updated_at"))
    return (embedding_model, agg["count"], agg["updated"])


# --- turns ------------------------------------------------------------------------------


def turn_for_message(*, message_id: int) -> Turn | None:
    """The turn of a customer message (None for agents' conversations and retries)."""
    return Turn.objects.filter(customer_message_id=message_id).first()


def turns_of_conversation(*, conversation: Conversation) -> QuerySet[Turn]:
    """A conversation's turns in message order, with the customer's message."""
    return (
        Turn.objects.filter(conversation=conversation)
        .select_related("customer_message")
        .order_by("customer_message__seq")
    )


def turns_negative(*, since: Any = None) -> QuerySet[Turn]:
    """Turns whose customer message the sentiment check found clearly negative."""
    turns = Turn.objects.filter(sentiment_label="negative")
    if since is not None:
        turns = turns.filter(created_at__gte=since)
    return turns


def articles_embedding_progress() -> tuple[int, int]:
    """(embedded, total) over published articles: embedded means a vector computed after
    the article's last edit (the background tasks are still working on the others)."""
    agg = Article.objects.filter(is_published=True).aggregate(
        total=Count("id"),
        embedded=Count("id", filter=Q(embedding__isnull=False, embedded_at__gte=F("updated_at"))),
    )
    return agg["embedded"], agg["total"]


def router_version_live() -> RouterVersion | None:
    """The router version made live (None: the shipped one routes)."""
    return RouterVersion.objects.filter(is_live=True).first()


def intent_examples_for_training() -> QuerySet[IntentExample]:
    """The rows people labelled, oldest first (a training set's order is stable)."""
    return IntentExample.objects.order_by("created_at", "pk")
