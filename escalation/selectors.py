"""Reads for the agent console, the API and the labeling snapshots."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import QuerySet

from chat.access import is_support_staff
from chat.models import Conversation, Message
from chat.selectors import display_name
from escalation.models import CannedReply, Decision, Ticket


def is_agent(user: Any) -> bool:
    """May use the agent console: support staff (``chat.access``, agents and admins)."""
    return is_support_staff(user)


def tickets_for_inbox() -> QuerySet[Ticket]:
    """Active tickets, most urgent first, then longest waiting."""
    from django.db.models import Case, IntegerField, Value, When

    rank = Case(
        When(priority="urgent", then=Value(0)),
        When(priority="high", then=Value(1)),
        When(priority="normal", then=Value(2)),
        default=Value(3),
        output_field=IntegerField(),
    )
    return (
        Ticket.objects.filter(status__in=Ticket.ACTIVE)
        .select_related("conversation", "assigned_agent", "trigger_message")
        .annotate(rank=rank)
        .order_by("rank", "handoff_at")
    )


def ticket_summary(ticket: Ticket) -> dict[str, Any]:
    """What an inbox row shows (the inbox socket and the API send the same)."""
    return {
        "id": ticket.pk,
        "conversation_id": str(ticket.conversation_id),
        "title": str(ticket.conversation),
        "reason": ticket.reason,
        "reason_detail": ticket.reason_detail,
        "priority": ticket.priority,
        "status": ticket.status,
        "sentiment": ticket.sentiment,
        "handoff_at": ticket.handoff_at.isoformat(),
        "assigned_agent": display_name(ticket.assigned_agent),
        "nobody_available": ticket.nobody_available,
        "last_customer_message": ticket.trigger_message.text[:200]
        if ticket.trigger_message
        else "",
        "outcome": ticket.outcome,
    }


def ticket_summary_by_id(ticket_id: int) -> dict[str, Any] | None:
    ticket = (
        Ticket.objects.select_related("conversation", "assigned_agent", "trigger_message")
        .filter(pk=ticket_id)
        .first()
    )
    return ticket_summary(ticket) if ticket else None


def conversation_timeline(*, conversation: Conversation) -> QuerySet[Message]:
    """Every message of the conversation for agents: public, withheld drafts and notes."""
    return conversation.messages.select_related("author", "turn").order_by("seq")


def conversation_decisions(*, conversation: Conversation) -> QuerySet[Decision]:
    return Decision.objects.filter(conversation=conversation).select_related("message")


def canned_replies() -> QuerySet[CannedReply]:
    return CannedReply.objects.filter(enabled=True)


def takeover_pairs() -> Iterator[dict[str, Any]]:
    """Preference pairs from takeovers: the customer's message M (prompt), the assistant
    draft withheld in reply to M (rejected) and the first public agent message after it
    in the same conversation (chosen).

    Two queries, streamed; conversations without an agent reply yield nothing.
    """
    drafts = (
        Message.objects.filter(
            role=Message.Role.ASSISTANT,
            visibility=Message.Visibility.WITHHELD,
            reply_to__isnull=False,
            reply_to__role=Message.Role.CUSTOMER,
        )
        .select_related("reply_to")
        .order_by("conversation_id", "seq")
    )
    rows = list(drafts.values_list("conversation_id", "seq", "text", "reply_to__text"))
    if not rows:
        return
    agent_replies: dict[Any, list[tuple[int, str]]] = {}
    for conversation_id, seq, text in (
        Message.objects.filter(
            conversation_id__in={row[0] for row in rows},
            role=Message.Role.AGENT,
            visibility=Message.Visibility.PUBLIC,
        )
        .order_by("conversation_id", "seq")
        .values_list("conversation_id", "seq", "text")
    ):
        agent_replies.setdefault(conversation_id, []).append((seq, text))
    for conversation_id, seq, rejected, prompt in rows:
        chosen = next((t for s, t in agent_replies.get(conversation_id, []) if s > seq), None)
        if chosen is None or chosen.strip() == rejected.strip():
            continue
        yield {
            "prompt": prompt,
            "chosen": chosen,
            "rejected": rejected,
            "conversation_id": str(conversation_id),
        }
