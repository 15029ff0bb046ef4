"""Tickets and the takeover: handing a conversation to people and back to the assistant."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from chat.errors import ApplicationError, Conflict, Forbidden
from chat.events import publish_on_commit
from chat.models import Conversation, Message
from chat.selectors import display_name
from chat.services import (
    AGENTS_INBOX_GROUP,
    conversation_state_publish,
    message_append,
    system_notice_post,
)
from escalation.models import SUPERVISOR_PERMISSION, DomainEvent, Priority, Ticket, WorkflowCallback
from escalation.services.events import event_record
from escalation.services.presence import agents_available
from escalation.wording import reason_label

logger = logging.getLogger(__name__)

NOTICE_AGENT_JOINING = (
    "I'm bringing in a person from our support team. They will join this conversation "
    "shortly; your messages here are kept for them."
)
NOTICE_NOBODY_AVAILABLE = (
    "No one from our support team is available right now. Leave a message here and a "
    "person will get back to you as soon as someone is on duty."
)


class EscalationError(ApplicationError):
    """A move the escalation workflow refuses; the message is shown to the agent."""


class TakeoverConflict(Conflict, EscalationError):
    code = "taken"


class TicketStateConflict(Conflict, EscalationError):
    """The ticket or conversation is not in a state that allows the move (409)."""


class NotOwner(Forbidden, EscalationError):
    """Only the agent handling the conversation (or a supervisor) may do that (403)."""

    code = "not_owner"


# Supervisors (admins, ``config.roles``) may resolve or close a ticket another agent
# handles; other agents may not.


def agent_conversation_group(conversation_id: Any) -> str:
    """Agents' sockets on one conversation (ticket state changes); customers never join."""
    return f"agent.conversation.{conversation_id}"


_summaries = threading.local()


def _summaries_pending() -> dict[int, dict[str, Any]]:
    """This thread's inbox rows to be read at the next commit, by ticket id (a
    transaction and its on-commit callbacks run on one thread)."""
    pending = getattr(_summaries, "pending", None)
    if pending is None:
        pending = _summaries.pending = {}
    return pending


def ticket_publish(ticket: Ticket, *, change: str) -> None:
    """After commit, tell every open inbox and the agents on the conversation.

    The event carries the inbox row (read at commit time), so no socket has to query
    the database for it."""
    from escalation.selectors import ticket_summary_by_id

    ticket_id, conversation_id = ticket.pk, ticket.conversation_id
    # One read per ticket and commit, however many changes the transaction announces
    # (a new ticket is often "created" and "assigned" in the same one).
    pending = _summaries_pending()
    summary: dict[str, Any] = pending.setdefault(ticket_id, {})

    def event() -> dict[str, Any]:
        pending.pop(ticket_id, None)  # the next transaction reads its own
        if not summary:
            summary.update(ticket_summary_by_id(ticket_id) or {})
        return {
            "type": "escalation.ticket",
            "ticket_id": ticket_id,
            "change": change,
            "ticket": summary or None,
        }

    publish_on_commit(AGENTS_INBOX_GROUP, event)
    publish_on_commit(agent_conversation_group(conversation_id), event)


def _lock(conversation: Conversation) -> Conversation:
    return Conversation.objects.select_for_update().get(pk=conversation.pk)


def _sync(target: Conversation, source: Conversation) -> None:
    for name in ("handling", "assigned_agent_id", "last_seq", "status"):
        setattr(target, name, getattr(source, name))


@transaction.atomic(savepoint=False)
def escalation_open(
    *,
    conversation: Conversation,
    reason: str,
    reason_detail: str = "",
    priority: str = Priority.NORMAL,
    decision: Any = None,
    trigger_message: Message | None = None,
    sentiment: dict[str, Any] | None = None,
    draft_follows: bool = False,
    locked: bool = False,
) -> tuple[Ticket, bool]:
    """Hand the conversation to people: open a ticket unless one is active.

    Locks the conversation row; the assistant stops answering (``waiting_for_human``)
    and the customer's later messages wait for an agent. After commit: every open inbox
    hears of the ticket, on-duty agents get an e-mail, and the Step Functions workflow
    starts when a state machine is configured: at once, or, with ``draft_follows`` (an
    escalated turn whose withheld draft is still being written), when the turn reports
    its draft stored (``EscalationReviewer.draft_stored``). Returns (ticket, created).
    ``locked=True``: the caller holds the conversation's lock and ``conversation`` is the
    row it locked (the turn pipeline's and ``human_request``'s transactions).
    """
    locked_row = conversation if locked else _lock(conversation)
    return _escalation_open_locked(
        conversation=conversation,
        locked=locked_row,
        reason=reason,
        reason_detail=reason_detail,
        priority=priority,
        decision=decision,
        trigger_message=trigger_message,
        sentiment=sentiment,
        draft_follows=draft_follows,
    )


def _escalation_open_locked(
    *,
    conversation: Conversation,
    locked: Conversation,
    reason: str,
    reason_detail: str,
    priority: str,
    decision: Any,
    trigger_message: Message | None,
    sentiment: dict[str, Any] | None,
    draft_follows: bool,
) -> tuple[Ticket, bool]:
    active = (
        Ticket.objects.select_for_update()
        .filter(conversation=locked, status__in=Ticket.ACTIVE)
        .first()
    )
    if active is not None:
        if locked.handling == Conversation.Handling.ASSISTANT:
            # Handed back earlier but the ticket stayed open: the person is needed again.
            locked.handling = Conversation.Handling.WAITING_FOR_HUMAN
            locked.save(update_fields=["handling", "updated_at"])
            conversation_state_publish(locked)
        _sync(conversation, locked)
        return active, False
    ticket = Ticket(
        conversation=locked,
        reason=reason,
        reason_detail=reason_detail[:300],
        priority=priority,
        decision=decision,
        trigger_message=trigger_message,
        sentiment=sentiment or {},
        nobody_available=not agents_available().exists(),
    )
    # The related rows were handed in as objects: no query to re-check that they exist.
    ticket.full_clean(
        exclude=["conversation", "decision", "trigger_message", "assigned_agent"],
        validate_constraints=False,
    )
    ticket.save()
    if locked.handling == Conversation.Handling.ASSISTANT:
        locked.handling = Conversation.Handling.WAITING_FOR_HUMAN
        locked.save(update_fields=["handling", "updated_at"])
        conversation_state_publish(locked)
    message_append(
        conversation=locked,
        locked=True,
        role=Message.Role.SYSTEM,
        text=f"Escalated to a person: {reason_label(reason)}"
        + (f" ({reason_detail})" if reason_detail and reason_detail != "button" else ""),
        visibility=Message.Visibility.INTERNAL,
        marker=Message.Marker.ESCALATED,
    )
    _sync(conversation, locked)
    event_record(
        name=DomainEvent.Name.ESCALATION_CREATED,
        conversation=locked,
        ticket=ticket,
        payload={
            "reason": reason,
            "reason_detail": reason_detail,
            "priority": priority,
            "nobody_available": ticket.nobody_available,
        },
    )
    ticket_publish(ticket, change="created")
    transaction.on_commit(lambda: _after_open(ticket, start_workflow=not draft_follows))
    # Fair assignment: the new ticket goes to the agent with the most room, or queues.
    for assigned in _queue_drain(joined=locked.pk):
        if assigned.pk == ticket.pk:
            ticket.status, ticket.assigned_at = assigned.status, assigned.assigned_at
            ticket.assigned_agent = assigned.assigned_agent
    return ticket, True


def _queue_drain(*, joined: Any = None) -> list[Ticket]:
    from escalation.services.assignment import queue_drain

    return queue_drain(joined=joined)


def _after_open(ticket: Ticket, *, start_workflow: bool) -> None:
    from chat.task_queue import task_enqueue

    task_enqueue("escalation.tasks.ticket_notify_agents_task", ticket.pk)
    if start_workflow:
        workflow_start_queue(ticket_id=ticket.pk)


def workflow_start_queue(*, ticket_id: int) -> None:
    """Start the Step Functions workflow in the background, when one is configured."""
    from chat.task_queue import task_enqueue
    from escalation import stepfunctions

    if stepfunctions.workflow_configured():
        task_enqueue("escalation.tasks.workflow_start_task", ticket_id)


def customer_notice_for(ticket: Ticket) -> str:
    return NOTICE_NOBODY_AVAILABLE if ticket.nobody_available else NOTICE_AGENT_JOINING


@transaction.atomic
def conversation_take_over(*, conversation: Conversation, agent: User) -> Ticket:
    """The agent takes the conversation; from now on the assistant never answers in it.

    Locks the conversation row, then re-checks who handles it: of two agents racing,
    the second waits for the lock, sees the first one's takeover and gets
    ``TakeoverConflict``. An assistant answer in flight re-checks ``handling`` under the
    same lock before it is published (``chat.services.turns.turn_answer_store``), so it
    ends up withheld. Opens a ticket when none is active (an agent stepping in).
    """
    locked = _lock(conversation)
    if locked.status == Conversation.Status.ENDED:
        raise TicketStateConflict("This conversation has ended.", code="ended")
    if locked.handling == Conversation.Handling.HUMAN and locked.assigned_agent_id:
        if locked.assigned_agent_id == agent.pk:
            raise TakeoverConflict("You already handle this conversation.")
        owner = type(agent)._default_manager.get(pk=locked.assigned_agent_id)
        raise TakeoverConflict(f"{display_name(owner)} already took over this conversation.")
    now = timezone.now()
    ticket = (
        Ticket.objects.select_for_update()
        .filter(conversation=locked, status__in=Ticket.ACTIVE)
        .first()
    )
    previous_agent_id = ticket.assigned_agent_id if ticket is not None else None
    _refuse_if_assigned_to_another(ticket, agent)
    queue_moved = ticket is None or ticket.status == Ticket.Status.OPEN
    if ticket is None:
        ticket = Ticket(conversation=locked, reason="agent_takeover", priority=Priority.NORMAL)
        ticket.save()
    ticket.status = Ticket.Status.ASSIGNED
    ticket.assigned_agent = agent
    ticket.assigned_at = now
    ticket.save(update_fields=["status", "assigned_agent", "assigned_at"])
    locked.handling = Conversation.Handling.HUMAN
    locked.assigned_agent = agent
    locked.save(update_fields=["handling", "assigned_agent", "updated_at"])
    system_notice_post(
        conversation=locked,
        text=f"{display_name(agent)} from our support team joined the conversation.",
        marker=Message.Marker.HUMAN_START,
    )
    _sync(conversation, locked)
    event_record(
        name=DomainEvent.Name.TAKEOVER_STARTED,
        conversation=locked,
        ticket=ticket,
        payload={
            "agent": agent.get_username(),
            "waited_seconds": (now - ticket.handoff_at).total_seconds(),
        },
    )
    conversation_state_publish(locked)
    ticket_publish(ticket, change="assigned")
    if previous_agent_id not in (None, agent.pk):
        _queue_drain()  # a supervisor took it from another agent: their place freed
    elif queue_moved:
        _queue_publish()  # it left the queue: the customers behind it move up
    return ticket


def _refuse_if_assigned_to_another(ticket: Ticket | None, agent: User) -> None:
    """The queue gave the ticket to someone else: only they (or a supervisor) take it."""
    from escalation.selectors import is_supervisor

    if (
        ticket is None
        or ticket.assigned_agent_id in (None, agent.pk)
        or ticket.status != Ticket.Status.ASSIGNED
        or is_supervisor(agent)
    ):
        return
    owner = type(agent)._default_manager.get(pk=ticket.assigned_agent_id)
    raise TakeoverConflict(
        f"This conversation is assigned to {display_name(owner)}; a supervisor can reassign it."
    )


def _queue_publish() -> None:
    from escalation.services.assignment import queue_publish

    queue_publish()


@transaction.atomic
def ticket_claim(*, ticket: Ticket, agent: User) -> Ticket:
    """Take over the ticket's conversation (see ``conversation_take_over``)."""
    fresh = Ticket.objects.select_related("conversation").get(pk=ticket.pk)
    if not fresh.is_active:
        raise TicketStateConflict(f"This ticket is already {fresh.status}.", code="not_active")
    return conversation_take_over(conversation=fresh.conversation, agent=agent)


def _require_owner(locked: Conversation, agent: User) -> None:
    if locked.handling != Conversation.Handling.HUMAN or locked.assigned_agent_id != agent.pk:
        raise NotOwner("Take over the conversation before writing to the customer.")


@transaction.atomic
def agent_message_send(
    *, conversation: Conversation, agent: User, text: str, client_id: str = ""
) -> Message:
    """A message from the agent who took over, shown to the customer under their name.

    The first one sets the ticket's first response time (measured from the handoff)."""
    text = (text or "").strip()
    if not text:
        raise EscalationError("The message is empty.", code="empty")
    if len(text) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise EscalationError("The message is too long.", code="too_long")
    locked = _lock(conversation)
    _require_owner(locked, agent)
    message, created = message_append(
        conversation=locked, role=Message.Role.AGENT, text=text, author=agent, client_id=client_id
    )
    if created:
        Ticket.objects.filter(
            conversation=locked, status__in=Ticket.ACTIVE, first_response_at__isnull=True
        ).update(first_response_at=message.created_at)
    return message


@transaction.atomic
def note_add(*, conversation: Conversation, agent: User, text: str) -> Message:
    """A private note: agents see it in the history, the customer and the model never do."""
    text = (text or "").strip()
    if not text:
        raise EscalationError("The note is empty.", code="empty")
    message, _ = message_append(
        conversation=conversation,
        role=Message.Role.AGENT,
        text=text,
        author=agent,
        visibility=Message.Visibility.INTERNAL,
    )
    return message


def _hand_back(locked: Conversation, *, agent: User | None) -> None:
    name = display_name(agent) if agent else "Our support team"
    locked.handling = Conversation.Handling.ASSISTANT
    locked.assigned_agent = None
    locked.save(update_fields=["handling", "assigned_agent", "updated_at"])
    system_notice_post(
        conversation=locked,
        text=f"{name} handed the conversation back to the assistant.",
        marker=Message.Marker.HUMAN_END,
    )
    conversation_state_publish(locked)


@transaction.atomic
def conversation_hand_back(*, conversation: Conversation, agent: User) -> Conversation:
    """The assistant answers again; a system marker closes the human part for the model.

    Only the agent who took over may hand back. The ticket ends in the same step: closed
    as ``handed_back`` (its clock stops, it leaves the inbox, the agent's place frees and
    the queue is drained); a waiting Step Functions task gets SendTaskSuccess (a person
    handled it). A later escalation opens a new ticket.
    """
    locked = _lock(conversation)
    _require_owner(locked, agent)
    _hand_back(locked, agent=agent)
    ticket = Ticket.objects.filter(conversation=locked, status__in=Ticket.ACTIVE).first()
    event_record(
        name=DomainEvent.Name.HANDED_BACK,
        conversation=locked,
        ticket=ticket,
        payload={"agent": agent.get_username()},
    )
    if ticket is not None:
        _ticket_close_handed_back(ticket, agent=agent)
    _sync(conversation, locked)
    return locked


def _ticket_close_handed_back(ticket: Ticket, *, agent: User) -> Ticket:
    fresh = _finish(
        ticket,
        status=Ticket.Status.CLOSED,
        outcome=Ticket.Outcome.HANDED_BACK,
        note="",
        agent=agent,
    )
    payload = ticket_outcome_payload(fresh)
    event_record(
        name=DomainEvent.Name.ESCALATION_CLOSED,
        conversation=fresh.conversation,
        ticket=fresh,
        payload=payload,
    )
    _answer_callbacks(fresh, action=WorkflowCallback.Action.SUCCESS, output=payload)
    ticket_publish(fresh, change="handed_back")
    return fresh


def may_finish(ticket: Ticket, actor: Any) -> bool:
    """Who may resolve or close a ticket: the agent it is assigned to, any support staff
    while nobody has it (they then own it), a supervisor always."""
    if ticket.assigned_agent_id is None or ticket.assigned_agent_id == actor.pk:
        return True
    return bool(actor.has_perm(SUPERVISOR_PERMISSION))


def _finish(ticket: Ticket, *, status: str, outcome: str, note: str, agent: User | None) -> Ticket:
    """Resolve or close under the conversation and ticket locks. ``agent`` None is the
    system (expiry); a person must be allowed to (``may_finish``), else ``NotOwner``."""
    locked = _lock(ticket.conversation)
    fresh = Ticket.objects.select_for_update().get(pk=ticket.pk)
    if not fresh.is_active:
        raise TicketStateConflict(f"This ticket is already {fresh.status}.", code="not_active")
    if agent is not None and not may_finish(fresh, agent):
        raise NotOwner(
            f"{display_name(fresh.assigned_agent)} handles this ticket; only they or a "
            "supervisor may resolve or close it."
        )
    now = timezone.now()
    fresh.finished_by = agent
    fresh.status = status
    fresh.outcome = outcome
    fresh.outcome_note = note
    if status == Ticket.Status.RESOLVED:
        fresh.resolved_at = now
    else:
        fresh.closed_at = now
    if agent is not None and fresh.assigned_agent_id is None:
        fresh.assigned_agent = agent
        fresh.assigned_at = now
    fresh.full_clean(exclude=["conversation"], validate_constraints=False)
    fresh.save(
        update_fields=[
            "status",
            "outcome",
            "outcome_note",
            "resolved_at",
            "closed_at",
            "assigned_agent",
            "assigned_at",
            "finished_by",
        ]
    )
    if locked.handling != Conversation.Handling.ASSISTANT:
        _hand_back(locked, agent=agent)
    _sync(ticket.conversation, locked)
    # The agent's place freed (or the queue lost a ticket): give out the next one.
    _queue_drain()
    return fresh


def _answer_callbacks(ticket: Ticket, *, action: str, output: dict[str, Any]) -> None:
    waiting = list(
        WorkflowCallback.objects.select_for_update().filter(
            ticket=ticket, state=WorkflowCallback.State.WAITING
        )
    )
    for callback in waiting:
        callback.state = WorkflowCallback.State.SENDING
        callback.action = action
        callback.output = output
        callback.save(update_fields=["state", "action", "output"])
        transaction.on_commit(partial(_callback_enqueue, callback.pk))


def _callback_enqueue(callback_id: int) -> None:
    from chat.task_queue import task_enqueue

    task_enqueue("escalation.tasks.workflow_callback_answer_task", callback_id)


def ticket_outcome_payload(ticket: Ticket) -> dict[str, Any]:
    return {
        "ticket_id": ticket.pk,
        "conversation_id": str(ticket.conversation_id),
        "status": ticket.status,
        "outcome": ticket.outcome,
        "note": ticket.outcome_note,
        "person_needed": ticket.person_needed,
        "agent": ticket.assigned_agent.get_username() if ticket.assigned_agent else "",
        # Who resolved or closed it ("" for the system, e.g. expiry): a supervisor may
        # finish another agent's ticket.
        "acted_by": ticket.finished_by.get_username() if ticket.finished_by else "",
        "first_response_seconds": ticket.first_response_seconds,
        "resolution_seconds": ticket.resolution_seconds,
    }


@transaction.atomic
def ticket_resolve(
    *,
    ticket: Ticket,
    agent: User,
    outcome: str,
    note: str = "",
    person_needed: bool | None = None,
    category: str = "",
) -> Ticket:
    """Resolve with an outcome (approved/rejected and a note) and, optionally, the
    agent's answer to "was a person needed?" (``person_needed``; ``category`` names what
    it was). That answer becomes a training row for the intent router, on the message
    that was escalated (``escalation.services.intents.ticket_person_needed_record``).

    Only the agent handling the ticket or a supervisor may (``may_finish``). Locks the
    conversation and the ticket. The conversation goes back to the assistant
    (with a marker) if a person still held it; a waiting Step Functions task gets
    SendTaskSuccess with the outcome, once, through a background task.
    """
    from escalation.services.intents import ticket_person_needed_record

    if outcome not in (Ticket.Outcome.APPROVED, Ticket.Outcome.REJECTED):
        raise EscalationError("The outcome is approved or rejected.", code="invalid_outcome")
    fresh = _finish(
        ticket, status=Ticket.Status.RESOLVED, outcome=outcome, note=note.strip(), agent=agent
    )
    if person_needed is not None:
        fresh.person_needed = person_needed
        fresh.save(update_fields=["person_needed"])
        ticket_person_needed_record(
            ticket=fresh, agent=agent, person_needed=person_needed, category=category
        )
    payload = ticket_outcome_payload(fresh)
    event_record(
        name=DomainEvent.Name.ESCALATION_RESOLVED,
        conversation=fresh.conversation,
        ticket=fresh,
        payload=payload,
    )
    _answer_callbacks(fresh, action=WorkflowCallback.Action.SUCCESS, output=payload)
    ticket_publish(fresh, change="resolved")
    return fresh


@transaction.atomic
def ticket_close(
    *, ticket: Ticket, outcome: str, note: str = "", agent: User | None = None
) -> Ticket:
    """Close a ticket nobody resolved (abandoned or expired): SendTaskFailure once.

    ``agent`` None is the system (expiry); a person must be allowed to (``may_finish``)."""
    if outcome not in (Ticket.Outcome.ABANDONED, Ticket.Outcome.EXPIRED):
        raise EscalationError("The outcome is abandoned or expired.", code="invalid_outcome")
    fresh = _finish(ticket, status=Ticket.Status.CLOSED, outcome=outcome, note=note, agent=agent)
    payload = ticket_outcome_payload(fresh)
    event_record(
        name=DomainEvent.Name.ESCALATION_CLOSED,
        conversation=fresh.conversation,
        ticket=fresh,
        payload=payload,
    )
    _answer_callbacks(fresh, action=WorkflowCallback.Action.FAILURE, output=payload)
    ticket_publish(fresh, change="closed")
    return fresh


def tickets_expire(*, now: Any = None) -> int:
    """Close open tickets nobody took within ESCALATION_TICKET_EXPIRY_HOURS."""
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.ESCALATION_TICKET_EXPIRY_HOURS)
    count = 0
    for ticket in Ticket.objects.filter(status=Ticket.Status.OPEN, handoff_at__lt=cutoff):
        try:
            ticket_close(ticket=ticket, outcome=Ticket.Outcome.EXPIRED, note="Nobody took it.")
            count += 1
        except EscalationError:
            continue  # taken or closed meanwhile
    return count


def ticket_notify_agents(*, ticket_id: int) -> int:
    """E-mail every on-duty agent about a new ticket, once; returns the recipients count."""
    from escalation.models import AgentPresence
    from escalation.notifications import email_send

    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().select_related("conversation").get(pk=ticket_id)
        if ticket.agents_notified_at is not None or not ticket.is_active:
            return 0
        ticket.agents_notified_at = timezone.now()
        ticket.save(update_fields=["agents_notified_at"])
    recipients = sorted(
        AgentPresence.objects.filter(on_duty=True, agent__is_active=True)
        .exclude(agent__email="")
        .values_list("agent__email", flat=True)
    )
    last = ticket.trigger_message.text if ticket.trigger_message else ""
    try:
        email_send(
            to=recipients,
            subject=f"[Loopdesk] New escalation: {reason_label(ticket.reason)}",
            body=(
                f"A customer needs a person (ticket {ticket.pk}, priority {ticket.priority}).\n"
                f"Reason: {ticket.reason} {ticket.reason_detail}\n"
                f"Last message: {last[:500]}\n\n"
                f"Open the agent console: /agent/conversations/{ticket.conversation_id}/\n"
            ),
        )
    except Exception:
        Ticket.objects.filter(pk=ticket_id).update(agents_notified_at=None)  # retry later
        raise
    return len(recipients)
