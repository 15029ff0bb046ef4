"""Reads for the agent console, the API and the labeling snapshots."""

from __future__ import annotations

import functools
import math
import operator
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import (
    Case,
    Count,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.utils import timezone

from chat.access import is_support_staff
from chat.models import Conversation, Message, Turn
from chat.selectors import display_name
from escalation.models import SUPERVISOR_PERMISSION, AgentPresence, CannedReply, Decision, Ticket
from escalation.wording import decision_explained, reason_label, ticket_reason_explained

# Who may move tickets between agents (and resolve or close other agents' tickets):
# supervisors, the admins role (``config.roles``).

# The typical handle time is the median of at most this many tickets finished in the
# last HANDLE_TIME_DAYS; with fewer than HANDLE_TIME_MIN_SAMPLES there is no estimate.
HANDLE_TIME_SAMPLES = 50
HANDLE_TIME_DAYS = 7
HANDLE_TIME_MIN_SAMPLES = 3


def is_agent(user: Any) -> bool:
    """May use the agent console: support staff (``chat.access``, agents and admins)."""
    return is_support_staff(user)


def is_supervisor(user: Any) -> bool:
    """May reassign tickets: support staff with the supervisor permission (admins)."""
    return is_support_staff(user) and bool(user.has_perm(SUPERVISOR_PERMISSION))


def agents_available(*, now: datetime | None = None) -> QuerySet[AgentPresence]:
    """On-duty agents whose console was seen within ESCALATION_AGENT_PRESENCE_SECONDS."""
    since = (now or timezone.now()) - timedelta(seconds=settings.ESCALATION_AGENT_PRESENCE_SECONDS)
    return AgentPresence.objects.filter(
        on_duty=True, last_seen_at__gte=since, agent__is_active=True
    )


def presence_is_available(presence: AgentPresence, *, now: datetime) -> bool:
    """``agents_available`` for a row already loaded (with its agent)."""
    since = now - timedelta(seconds=settings.ESCALATION_AGENT_PRESENCE_SECONDS)
    return bool(
        presence.on_duty
        and presence.last_seen_at is not None
        and presence.last_seen_at >= since
        and presence.agent.is_active
    )


def _priority_rank() -> Case:
    return Case(
        When(priority="urgent", then=Value(0)),
        When(priority="high", then=Value(1)),
        When(priority="normal", then=Value(2)),
        default=Value(3),
        output_field=IntegerField(),
    )


# The queue's order: most urgent first, then longest waiting (then first opened).
QUEUE_ORDER = ("rank", "handoff_at", "pk")

_SUMMARY_RELATED = (
    "conversation",
    "assigned_agent",
    "trigger_message__customer_turn",
    "decision",
    "returned_from",
)


def tickets_queued() -> QuerySet[Ticket]:
    """The queue: open tickets no agent has, in the order they are assigned."""
    return (
        Ticket.objects.filter(status=Ticket.Status.OPEN)
        .annotate(rank=_priority_rank())
        .order_by(*QUEUE_ORDER)
    )


def tickets_for_inbox() -> QuerySet[Ticket]:
    """Active tickets, most urgent first, then longest waiting."""
    return (
        Ticket.objects.filter(status__in=Ticket.ACTIVE)
        .select_related(*_SUMMARY_RELATED)
        .annotate(rank=_priority_rank())
        .order_by(*QUEUE_ORDER)
    )


def agent_loads(*, agent_ids: list[int]) -> dict[int, int]:
    """Assigned (active, not queued) tickets per agent."""
    rows = (
        Ticket.objects.filter(status=Ticket.Status.ASSIGNED, assigned_agent_id__in=agent_ids)
        .values("assigned_agent_id")
        .annotate(n=Count("id"))
    )
    return {row["assigned_agent_id"]: row["n"] for row in rows}


def agent_console_state(*, agent: Any) -> dict[str, Any]:
    """The agent's own switches for the inbox: on duty, capacity and current load."""
    presence = AgentPresence.objects.filter(agent_id=agent.pk).first()
    capacity = presence.capacity if presence else AgentPresence._meta.get_field("capacity").default
    return {
        "on_duty": bool(presence and presence.on_duty),
        "capacity": capacity,
        "load": agent_loads(agent_ids=[agent.pk]).get(agent.pk, 0),
        "supervisor": is_supervisor(agent),
    }


def agents_for_reassignment() -> list[dict[str, Any]]:
    """Support staff a supervisor may give a ticket to, with duty and load. Three queries."""
    from chat.access import support_staff_users

    users = list(support_staff_users().order_by("first_name", "last_name", "username"))
    ids = [u.pk for u in users]
    presences = {p.agent_id: p for p in AgentPresence.objects.filter(agent_id__in=ids)}
    loads = agent_loads(agent_ids=ids)
    rows = []
    for user in users:
        presence = presences.get(user.pk)
        rows.append(
            {
                "id": user.pk,
                "name": display_name(user),
                "on_duty": bool(presence and presence.on_duty),
                "load": loads.get(user.pk, 0),
                "capacity": presence.capacity if presence else None,
            }
        )
    return rows


def ticket_is_taken(ticket: Ticket) -> bool:
    """The assigned agent has taken the conversation over (not only been given it)."""
    conversation = ticket.conversation
    return bool(
        ticket.assigned_agent_id
        and conversation.handling == Conversation.Handling.HUMAN
        and conversation.assigned_agent_id == ticket.assigned_agent_id
    )


def _turn_detail(ticket: Ticket) -> str:
    message = ticket.trigger_message
    if message is None:
        return ""
    try:
        turn: Turn | None = message.customer_turn
    except Turn.DoesNotExist:
        turn = None
    return turn.decision_detail if turn is not None else ""


def ticket_summary(ticket: Ticket) -> dict[str, Any]:
    """What an inbox row shows (the inbox socket and the API send the same).

    Reads the ticket's conversation, agents, trigger message (with its turn) and
    decision: load it with ``tickets_for_inbox`` / ``ticket_summary_by_id``."""
    why = ticket_reason_explained(ticket, turn_detail=_turn_detail(ticket))
    return {
        "id": ticket.pk,
        "conversation_id": str(ticket.conversation_id),
        "title": str(ticket.conversation),
        "reason": ticket.reason,
        "reason_detail": ticket.reason_detail,
        "reason_label": why["label"],
        "reason_words": why["words"],
        "reason_numbers": why["numbers"],
        "priority": ticket.priority,
        "status": ticket.status,
        "sentiment": ticket.sentiment,
        "handoff_at": ticket.handoff_at.isoformat(),
        "assigned_agent": display_name(ticket.assigned_agent),
        "assigned_agent_id": ticket.assigned_agent_id,
        "assigned_at": ticket.assigned_at.isoformat() if ticket.assigned_at else None,
        "taken": ticket_is_taken(ticket),
        "returned_from": display_name(ticket.returned_from),
        "nobody_available": ticket.nobody_available,
        "last_customer_message": ticket.trigger_message.text[:200]
        if ticket.trigger_message
        else "",
        "outcome": ticket.outcome,
        "outcome_label": ticket.get_outcome_display() if ticket.outcome else "",
        "conversation_status": ticket.conversation.status,
    }


def ticket_summary_by_id(ticket_id: int) -> dict[str, Any] | None:
    ticket = Ticket.objects.select_related(*_SUMMARY_RELATED).filter(pk=ticket_id).first()
    return ticket_summary(ticket) if ticket else None


def ticket_summary_for_conversation(*, conversation_id: Any) -> dict[str, Any] | None:
    """The conversation's latest ticket as an inbox row (None: never escalated)."""
    ticket = (
        Ticket.objects.select_related(*_SUMMARY_RELATED)
        .filter(conversation_id=conversation_id)
        .order_by("-handoff_at", "-pk")
        .first()
    )
    return ticket_summary(ticket) if ticket else None


# --- the queue as the customer sees it -------------------------------------------------------


def handle_times_recent(*, now: datetime | None = None) -> list[float]:
    """Seconds from assignment to the end of recently finished tickets, newest first."""
    since = (now or timezone.now()) - timedelta(days=HANDLE_TIME_DAYS)
    rows = (
        Ticket.objects.filter(
            status__in=[Ticket.Status.RESOLVED, Ticket.Status.CLOSED], assigned_at__isnull=False
        )
        .filter(Q(resolved_at__gte=since) | Q(closed_at__gte=since))
        .order_by("-pk")
        .values_list("assigned_at", "resolved_at", "closed_at")[:HANDLE_TIME_SAMPLES]
    )
    times = []
    for assigned_at, resolved_at, closed_at in rows:
        done = resolved_at or closed_at
        if done is not None and assigned_at is not None and done >= assigned_at:
            times.append((done - assigned_at).total_seconds())
    return times


@dataclass
class QueueSnapshot:
    """The queue at one moment: places, the typical handle time, who is on duty."""

    positions: dict[str, int] = field(default_factory=dict)
    handle_seconds: float | None = None
    samples: int = 0
    capacity_on_duty: int = 0
    agents_on_duty: int = 0

    def estimate_minutes(self, position: int) -> int | None:
        """Tickets ahead plus this one, served by the on-duty capacity at the typical
        handle time: ``position * handle / capacity``, rounded up to a whole minute.
        None without agents on duty or without enough finished tickets to go by."""
        if self.handle_seconds is None or self.capacity_on_duty <= 0:
            return None
        seconds = position * self.handle_seconds / self.capacity_on_duty
        return max(1, math.ceil(seconds / 60))

    def status_for(self, conversation_id: Any) -> dict[str, Any]:
        position = self.positions.get(str(conversation_id))
        if position is None:
            return {"state": "none", "someone_on_duty": self.agents_on_duty > 0}
        return {
            "state": "queued",
            "position": position,
            "estimate_minutes": self.estimate_minutes(position),
            "estimate_samples": self.samples,
            "someone_on_duty": self.agents_on_duty > 0,
            "agent_name": "",
        }


def queue_order() -> list[Any]:
    """The conversations in the queue, in its order (one query)."""
    return list(tickets_queued().values_list("conversation_id", flat=True))


def queue_snapshot(*, now: datetime | None = None, order: list[Any] | None = None) -> QueueSnapshot:
    """Three queries: the queue in order (unless given, from ``queue_order``), the
    on-duty capacity, recent handle times."""
    now = now or timezone.now()
    if order is None:
        order = queue_order()
    positions = {str(conversation_id): i for i, conversation_id in enumerate(order, start=1)}
    capacities = list(agents_available(now=now).values_list("capacity", flat=True))
    times = handle_times_recent(now=now)
    enough = len(times) >= HANDLE_TIME_MIN_SAMPLES
    return QueueSnapshot(
        positions=positions,
        handle_seconds=statistics.median(times) if enough else None,
        samples=len(times),
        capacity_on_duty=sum(capacities),
        agents_on_duty=len(capacities),
    )


def waiting_status(*, conversation_id: Any) -> dict[str, Any] | None:
    """Where the customer of this conversation stands (``chat.waiting`` payload), or
    None when the conversation has no active ticket."""
    ticket = (
        Ticket.objects.filter(conversation_id=conversation_id, status__in=Ticket.ACTIVE)
        .select_related("assigned_agent")
        .first()
    )
    if ticket is None:
        return None
    if ticket.status == Ticket.Status.ASSIGNED:
        return {
            "state": "assigned",
            "agent_name": display_name(ticket.assigned_agent),
            "someone_on_duty": True,
        }
    return queue_snapshot().status_for(conversation_id)


def conversation_timeline(*, conversation: Conversation) -> QuerySet[Message]:
    """Every message of the conversation for agents: public, withheld drafts and notes."""
    return conversation.messages.select_related("author", "turn").order_by("seq")


def conversation_decisions(*, conversation: Conversation) -> QuerySet[Decision]:
    return Decision.objects.filter(conversation=conversation).select_related("message")


AUDIT_MAX_DECISIONS = 300


def decision_audit(*, conversation: Conversation) -> list[dict[str, Any]]:
    """The decision audit grouped by turn, newest turn first: the customer's message,
    then every check made on it in plain words (figures for hover). One query.

    Decisions without a message (an agent stepping in) form their own group."""
    decisions = list(
        Decision.objects.filter(conversation=conversation)
        .select_related("message")
        .order_by("-created_at", "-pk")[:AUDIT_MAX_DECISIONS]
    )
    groups: dict[Any, dict[str, Any]] = {}
    for decision in reversed(decisions):  # oldest first within a group
        key = decision.turn_id or decision.message_id or f"decision-{decision.pk}"
        group = groups.get(key)
        if group is None:
            message = decision.message
            group = groups[key] = {
                "key": str(key),
                "seq": message.seq if message else None,
                "message": message.text if message else "",
                "at": decision.created_at,
                "checks": [],
                "escalated": False,
            }
        explained = decision_explained(decision)
        group["checks"].append(explained.as_dict())
        group["escalated"] = group["escalated"] or explained.fired
    return sorted(
        groups.values(),
        key=lambda g: (g["seq"] is not None, g["seq"] or 0, g["at"]),
        reverse=True,
    )


BRIEF_ASKED = 3
BRIEF_EARLIER = 5


def _answer(message: Message | None) -> dict[str, Any] | None:
    if message is None:
        return None
    return {
        "seq": message.seq,
        "text": message.text,
        "sources": [
            {"title": s.get("title", ""), "slug": s.get("slug", ""), "excerpt": s.get("excerpt")}
            for s in (message.sources or [])
        ],
        "withheld": message.visibility == Message.Visibility.WITHHELD,
        "at": message.created_at,
    }


def handoff_brief(*, conversation_id: Any) -> dict[str, Any] | None:
    """What an agent needs before answering, so the customer never repeats themselves:
    what they asked, what the assistant answered and cited (or the draft it withheld),
    why the conversation came to a person, and the customer's earlier conversations (by
    account, and by this device's visitor token).

    Four queries whatever the history's length; None when it was never escalated."""
    ticket = (
        Ticket.objects.filter(conversation_id=conversation_id)
        .select_related("conversation__customer", "decision", "trigger_message__customer_turn")
        .order_by("-handoff_at", "-pk")
        .first()
    )
    if ticket is None:
        return None
    conversation = ticket.conversation
    trigger = ticket.trigger_message
    upto = trigger.seq if trigger is not None else conversation.last_seq
    asked = list(
        Message.objects.filter(
            conversation_id=conversation.pk,
            role=Message.Role.CUSTOMER,
            seq__lte=upto,
        ).order_by("-seq")[:BRIEF_ASKED]
    )
    asked.reverse()
    answered = Q(visibility=Message.Visibility.PUBLIC, seq__lt=upto)
    if trigger is not None:
        answered |= Q(visibility=Message.Visibility.WITHHELD, reply_to_id=trigger.pk)
    replies = list(
        Message.objects.filter(conversation_id=conversation.pk, role=Message.Role.ASSISTANT)
        .filter(answered)
        .order_by("-seq")[:4]
    )
    draft = next((m for m in replies if m.visibility == Message.Visibility.WITHHELD), None)
    answer = next((m for m in replies if m.visibility == Message.Visibility.PUBLIC), None)

    owners = []
    if conversation.customer_id is not None:
        owners.append(Q(customer_id=conversation.customer_id))
    if conversation.visitor_id:
        owners.append(Q(visitor_id=conversation.visitor_id, customer__isnull=True))
    first_question = Message.objects.filter(
        conversation_id=OuterRef("pk"), role=Message.Role.CUSTOMER
    ).order_by("seq")
    last_ticket = Ticket.objects.filter(conversation_id=OuterRef("pk")).order_by(
        "-handoff_at", "-pk"
    )
    earlier = (
        Conversation.objects.filter(functools.reduce(operator.or_, owners))
        .exclude(pk=conversation.pk)
        .annotate(
            first_question=Subquery(first_question.values("text")[:1]),
            ticket_reason=Subquery(last_ticket.values("reason")[:1]),
            ticket_outcome=Subquery(last_ticket.values("outcome")[:1]),
            ticket_note=Subquery(last_ticket.values("outcome_note")[:1]),
        )
        .order_by("-created_at")
        .values(
            "pk",
            "title",
            "created_at",
            "status",
            "first_question",
            "ticket_reason",
            "ticket_outcome",
            "ticket_note",
        )[:BRIEF_EARLIER]
        if owners
        else []
    )
    outcomes = dict(Ticket.Outcome.choices)
    statuses = dict(Conversation.Status.choices)
    customer = conversation.customer
    return {
        "ticket_id": ticket.pk,
        "customer": {
            "name": display_name(customer) or "Visitor (not signed in)",
            "email": customer.email if customer is not None else "",
            "signed_in": customer is not None,
        },
        "asked": [{"seq": m.seq, "text": m.text, "at": m.created_at} for m in asked],
        "answer": _answer(answer),
        "draft": _answer(draft),
        "why": ticket_reason_explained(ticket, turn_detail=_turn_detail(ticket)),
        "priority": ticket.get_priority_display(),
        "handoff_at": ticket.handoff_at,
        "earlier": [
            {
                "id": str(c["pk"]),
                "title": c["title"] or f"Conversation {str(c['pk'])[:8]}",
                "created_at": c["created_at"],
                "status": statuses.get(c["status"], c["status"]),
                "first_question": (c["first_question"] or "")[:200],
                "escalated": bool(c["ticket_reason"]),
                "reason": reason_label(c["ticket_reason"]) if c["ticket_reason"] else "",
                "outcome": outcomes.get(c["ticket_outcome"] or "", ""),
                "note": (c["ticket_note"] or "")[:200],
            }
            for c in list(earlier)
        ],
    }


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
