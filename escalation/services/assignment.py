"""Fair assignment: the queue of tickets waiting for a person and who gets the next one.

- A new ticket goes to the on-duty, present agent with the most free capacity (capacity
  minus the tickets assigned to them), round robin among equals (the one assigned
  longest ago first); when every such agent is full, it waits in the queue: most urgent
  first, then longest waiting.
- The queue is drained, in that order, whenever capacity may have freed or grown: a
  ticket resolved, closed or handed back, an agent coming on duty, coming back to the
  console or raising their capacity, a ticket returned to the queue.
- Assigned means given: the ticket is the agent's, the customer is told who is coming,
  and the agent takes it over (``conversation_take_over``) to talk. Nobody else may take
  over a ticket assigned to someone (a supervisor may, or may reassign it).
- A ticket whose agent has not written to the customer within
  ESCALATION_ASSIGNEE_REPLY_SECONDS of the assignment goes back to the queue with an
  internal note (the scheduled sweep); an agent who had not even taken it over is set
  off duty, so the queue stops giving them tickets until they are back.

Locks, always in this order, so that nothing waits in a circle: the conversation, then
its ticket, then every agent's presence row (``presences_lock``). A drain never locks a
conversation, and locks queued tickets with SKIP LOCKED (a ticket someone is taking over
right now is not offered), re-checking their status under the lock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from chat.access import is_support_staff
from chat.errors import Forbidden
from chat.events import publish_each_on_commit
from chat.models import Conversation, Message
from chat.selectors import display_name
from chat.services import (
    conversation_group,
    conversation_state_publish,
    message_append,
    system_notice_post,
)
from chat.waiting import QUEUE_EVENT
from escalation import selectors
from escalation.models import AgentPresence, Ticket
from escalation.services.presence import presences_lock
from escalation.services.tickets import EscalationError, ticket_publish

logger = logging.getLogger(__name__)

# How many queued tickets a drain locks beyond the free places (tickets that may not go
# to the agents with room, having come back from them, are skipped).
QUEUE_LOOKAHEAD = 50


class NotSupervisor(Forbidden, EscalationError):
    code = "not_supervisor"


def _ticket_save(ticket: Ticket, fields: list[str]) -> None:
    """Validate the fields being written (not the relations: they are objects already
    loaded) and save only those."""
    exclude = [f.name for f in Ticket._meta.fields if f.name not in fields or f.is_relation]
    ticket.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
    ticket.save(update_fields=fields)


def _assign(ticket: Ticket, presence: AgentPresence, *, now: datetime) -> None:
    ticket.status = Ticket.Status.ASSIGNED
    ticket.assigned_agent = presence.agent
    ticket.assigned_at = now
    _ticket_save(ticket, ["status", "assigned_agent", "assigned_at"])
    presence.last_assigned_at = now
    presence.save(update_fields=["last_assigned_at"])
    ticket_publish(ticket, change="assigned")


@transaction.atomic(savepoint=False)
def queue_drain(*, joined: Any = None) -> list[Ticket]:
    """Give queued tickets, in queue order, to available agents with free capacity;
    returns the tickets assigned. After commit the waiting customers whose place changed
    hear it: all of them when tickets left the queue; when nothing left it and
    ``joined`` (a conversation whose ticket just entered the queue) is given, only that
    customer and those it went ahead of (an urgent ticket passes normal ones).

    Takes every presence row's lock first (``presences_lock``): two drains run one after
    the other, so an agent's load read here cannot change under it and no agent ever gets
    more tickets from the queue than their capacity. Queued tickets are locked with SKIP
    LOCKED and their status re-checked by the locking query, so a ticket an agent is
    taking over at this moment is left to them: exactly one owner."""
    presences = presences_lock()
    now = timezone.now()
    available = [p for p in presences if selectors.presence_is_available(p, now=now)]
    assigned: list[Ticket] = []
    if available:
        loads = selectors.agent_loads(agent_ids=[p.agent_id for p in available])
        free = {p.agent_id: p.capacity - loads.get(p.agent_id, 0) for p in available}
        places = sum(max(0, n) for n in free.values())
        if places > 0:
            queued = list(
                selectors.tickets_queued()
                .select_related("conversation")
                .select_for_update(skip_locked=True, of=("self",))[: places + QUEUE_LOOKAHEAD]
            )
            never = datetime.min.replace(tzinfo=now.tzinfo)
            for ticket in queued:
                if not any(n > 0 for n in free.values()):
                    break
                room = [
                    p
                    for p in available
                    if free[p.agent_id] > 0 and p.agent_id != ticket.returned_from_id
                ]
                if not room:
                    continue
                # Most free capacity; among equals the one assigned longest ago.
                best = min(
                    room,
                    key=lambda p: (-free[p.agent_id], p.last_assigned_at or never, p.pk),
                )
                _assign(ticket, best, now=timezone.now())
                free[best.agent_id] -= 1
                assigned.append(ticket)
    if assigned or joined is None:
        queue_publish(also=[t.conversation_id for t in assigned])
    else:
        queue_publish(behind=joined)
    return assigned


def queue_publish(*, also: Iterable[Any] = (), behind: Any = None) -> None:
    """After commit, tell each queued conversation (and ``also``: those that just left
    the queue) where it stands: a ``chat.queue`` event to the conversation's group. With
    ``behind``, only that conversation and the ones queued after it (the others' places
    did not change: a queue of hundreds gets one event per new ticket, not hundreds).

    Everything is read once, at commit time (not under the caller's locks): the queue's
    order, then, if anyone is to be told, the rest of the snapshot and who was assigned.
    """
    also_ids = {str(c) for c in also}

    def events() -> list[tuple[str, dict[str, Any]]]:
        order = [str(c) for c in selectors.queue_order()]
        if behind is not None:
            start = order.index(str(behind)) if str(behind) in order else len(order)
            conversation_ids = set(order[start:]) | {str(behind)}
        else:
            conversation_ids = set(order)
        conversation_ids |= also_ids
        if not conversation_ids:
            return []
        snapshot = selectors.queue_snapshot(order=order)
        assigned = {
            str(t.conversation_id): display_name(t.assigned_agent)
            for t in Ticket.objects.filter(
                conversation_id__in=conversation_ids, status=Ticket.Status.ASSIGNED
            ).select_related("assigned_agent")
        }
        out = []
        for conversation_id in sorted(conversation_ids):
            if conversation_id in assigned:
                status = {
                    "state": "assigned",
                    "agent_name": assigned[conversation_id],
                    "someone_on_duty": True,
                }
            else:
                status = snapshot.status_for(conversation_id)
            out.append(
                (
                    conversation_group(conversation_id),
                    {"type": QUEUE_EVENT, "conversation_id": conversation_id, **status},
                )
            )
        return out

    publish_each_on_commit(events)


def _requeue(
    ticket: Ticket,
    locked: Conversation,
    *,
    note: str,
    customer_notice: str = "",
) -> None:
    """Put a locked, assigned ticket back in the queue (the caller holds the conversation
    and ticket locks); the agent it leaves is never offered it again. If that agent had
    taken the conversation over, it waits for a person again and the customer is told."""
    previous = ticket.assigned_agent
    ticket.status = Ticket.Status.OPEN
    ticket.assigned_agent = None
    ticket.assigned_at = None
    ticket.returned_from = previous
    _ticket_save(ticket, ["status", "assigned_agent", "assigned_at", "returned_from"])
    if (
        previous is not None
        and locked.handling == Conversation.Handling.HUMAN
        and locked.assigned_agent_id == previous.pk
    ):
        locked.handling = Conversation.Handling.WAITING_FOR_HUMAN
        locked.assigned_agent = None
        locked.save(update_fields=["handling", "assigned_agent", "updated_at"])
        system_notice_post(
            conversation=locked,
            locked=True,
            text=customer_notice
            or (
                f"{display_name(previous)} had to step away. You keep your place in the "
                "queue; another person from our team will join you."
            ),
        )
        conversation_state_publish(locked)
    message_append(
        conversation=locked,
        locked=True,
        role=Message.Role.SYSTEM,
        text=note,
        visibility=Message.Visibility.INTERNAL,
    )
    ticket_publish(ticket, change="returned")


def _lock_ticket(ticket_id: int) -> tuple[Ticket, Conversation]:
    """The conversation's lock, then the ticket's (the order every service keeps)."""
    conversation_id = Ticket.objects.values_list("conversation_id", flat=True).get(pk=ticket_id)
    locked = Conversation.objects.select_for_update().get(pk=conversation_id)
    ticket = (
        Ticket.objects.select_for_update(of=("self",))
        .select_related("assigned_agent")
        .get(pk=ticket_id)
    )
    return ticket, locked


def _silent_minutes() -> str:
    seconds = settings.ESCALATION_ASSIGNEE_REPLY_SECONDS
    if seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds} seconds"


def _replied_since_assignment(ticket: Ticket) -> bool:
    return Message.objects.filter(
        conversation_id=ticket.conversation_id,
        role=Message.Role.AGENT,
        visibility=Message.Visibility.PUBLIC,
        author_id=ticket.assigned_agent_id,
        created_at__gte=ticket.assigned_at,
    ).exists()


@transaction.atomic
def ticket_return_if_silent(*, ticket_id: int, now: datetime | None = None) -> bool:
    """Put the ticket back in the queue if its agent has not written to the customer
    within ESCALATION_ASSIGNEE_REPLY_SECONDS of the assignment; True if it went back.

    Locks the conversation and the ticket and re-checks everything under the locks (a
    reply, a takeover, a resolve or a reassignment in between leaves it alone), so the
    sweep can run twice. An agent who had not even taken it over is set off duty."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.ESCALATION_ASSIGNEE_REPLY_SECONDS)
    ticket, locked = _lock_ticket(ticket_id)
    if (
        ticket.status != Ticket.Status.ASSIGNED
        or ticket.assigned_agent is None
        or ticket.assigned_at is None
        or ticket.assigned_at >= cutoff
        or _replied_since_assignment(ticket)
    ):
        return False
    agent = ticket.assigned_agent
    taken = locked.handling == Conversation.Handling.HUMAN and locked.assigned_agent_id == agent.pk
    name = display_name(agent)
    _requeue(
        ticket,
        locked,
        note=(
            f"Back in the queue: {name} did not reply within {_silent_minutes()}"
            + (" of taking it over." if taken else " and had not taken it over.")
        ),
    )
    if not taken:
        # Not even opened: the agent is away from the console. Stop giving them tickets.
        presences_lock()
        AgentPresence.objects.filter(agent=agent).update(on_duty=False)
    queue_drain()
    return True


def tickets_return_silent(*, now: datetime | None = None) -> int:
    """The scheduled sweep: every ticket whose agent stayed silent goes back to the
    queue (one transaction each); returns how many did."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.ESCALATION_ASSIGNEE_REPLY_SECONDS)
    replied = Message.objects.filter(
        conversation_id=OuterRef("conversation_id"),
        role=Message.Role.AGENT,
        visibility=Message.Visibility.PUBLIC,
        author_id=OuterRef("assigned_agent_id"),
        created_at__gte=OuterRef("assigned_at"),
    )
    silent = list(
        Ticket.objects.filter(status=Ticket.Status.ASSIGNED, assigned_at__lt=cutoff)
        .annotate(replied=Exists(replied))
        .filter(replied=False)
        .order_by("assigned_at")
        .values_list("pk", flat=True)
    )
    returned = 0
    for ticket_id in silent:
        try:
            returned += ticket_return_if_silent(ticket_id=ticket_id, now=now)
        except Exception:  # one bad ticket must not stop the sweep
            logger.exception("Could not return ticket %s to the queue", ticket_id)
    return returned


def tickets_return_from_agent(*, agent: User, note: str) -> int:
    """Every ticket given to ``agent`` that they have not taken over goes back to the
    queue (an agent going off duty); one transaction each. The caller drains the queue.

    Call it after the agent's duty change committed, so no drain gives them a ticket
    meanwhile."""
    returned = 0
    for ticket_id in Ticket.objects.filter(
        status=Ticket.Status.ASSIGNED, assigned_agent=agent
    ).values_list("pk", flat=True):
        with transaction.atomic():
            ticket, locked = _lock_ticket(ticket_id)
            taken = (
                locked.handling == Conversation.Handling.HUMAN
                and locked.assigned_agent_id == agent.pk
            )
            if ticket.status != Ticket.Status.ASSIGNED or ticket.assigned_agent_id != agent.pk:
                continue
            if taken:
                continue
            _requeue(ticket, locked, note=note)
            returned += 1
    return returned


@transaction.atomic
def ticket_reassign(*, ticket: Ticket, agent: User | None, by: User) -> Ticket:
    """A supervisor gives the ticket to ``agent`` (any support staff, whatever their
    capacity) or, with None, back to the queue.

    Locks the conversation and the ticket. If the previous agent had taken the
    conversation over, it waits for a person again and the customer is told; the new
    agent takes it over from their console. The agent it leaves is never offered it by
    the queue again. Leaves an internal note and drains the queue (capacity freed)."""
    if not selectors.is_supervisor(by):
        raise NotSupervisor("Only a supervisor can reassign tickets.")
    if agent is not None and (not is_support_staff(agent)):
        raise EscalationError("Tickets go to support staff only.", code="invalid")
    fresh, locked = _lock_ticket(ticket.pk)
    if not fresh.is_active:
        raise EscalationError(f"This ticket is already {fresh.status}.", code="not_active")
    previous = fresh.assigned_agent
    if (agent.pk if agent else None) == (previous.pk if previous else None):
        return fresh
    by_name = display_name(by)
    if agent is None:
        _requeue(
            fresh,
            locked,
            note=f"{by_name} put the ticket back in the queue (it was {display_name(previous)}'s).",
            customer_notice="We are passing you to another person from our team. "
            "You keep your place in the queue.",
        )
    else:
        if previous is not None:
            taken = (
                locked.handling == Conversation.Handling.HUMAN
                and locked.assigned_agent_id == previous.pk
            )
            if taken:
                locked.handling = Conversation.Handling.WAITING_FOR_HUMAN
                locked.assigned_agent = None
                locked.save(update_fields=["handling", "assigned_agent", "updated_at"])
                system_notice_post(
                    conversation=locked,
                    locked=True,
                    text=f"We are passing you to {display_name(agent)} from our team, "
                    "who will join you shortly.",
                )
                conversation_state_publish(locked)
            fresh.returned_from = previous
        fresh.status = Ticket.Status.ASSIGNED
        fresh.assigned_agent = agent
        fresh.assigned_at = timezone.now()
        _ticket_save(fresh, ["status", "assigned_agent", "assigned_at", "returned_from"])
        message_append(
            conversation=locked,
            locked=True,
            role=Message.Role.SYSTEM,
            text=f"{by_name} assigned the ticket to {display_name(agent)}"
            + (f" (it was {display_name(previous)}'s)." if previous else " from the queue."),
            visibility=Message.Visibility.INTERNAL,
        )
        ticket_publish(fresh, change="reassigned")
    queue_drain()
    return fresh
