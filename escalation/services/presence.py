"""Agent availability: on duty (a switch in the console), seen by a console socket, and
how many tickets the queue may give them at once.

Every change that can free or add capacity drains the queue (``assignment.queue_drain``)
in the same transaction; taking an agent off duty puts the tickets they were given but
had not taken over back in the queue.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from escalation import selectors
from escalation.models import AGENT_CAPACITY_MAX, AgentPresence


def agents_available() -> QuerySet[AgentPresence]:
    """On-duty agents whose console was seen within ESCALATION_AGENT_PRESENCE_SECONDS."""
    return selectors.agents_available()


def presences_lock() -> list[AgentPresence]:
    """Lock every agent's presence row, in id order, with its agent.

    The queue's one serialization point: every drain (and every change to an agent's
    duty or capacity) takes these locks first and in the same order, so assignments never
    run side by side and never deadlock one another; a drain then reads the agents'
    loads knowing nobody else is assigning to them."""
    return list(
        AgentPresence.objects.select_for_update(of=("self",)).select_related("agent").order_by("pk")
    )


def _presence_locked(agent: User) -> AgentPresence:
    presences_lock()
    presence, _ = AgentPresence.objects.select_for_update().get_or_create(agent=agent)
    return presence


def agent_presence_set(*, agent: User, on_duty: bool) -> AgentPresence:
    """Go on or off duty. On duty: the queue is drained (the agent may get tickets at
    once). Off duty: once that is committed (no drain gives them a ticket after it),
    the tickets given to the agent but not yet taken over go back to the queue, each
    under its conversation's lock, and on to other agents.

    Two transactions on purpose: returning a ticket locks its conversation, which must
    never be locked after the presence rows (see ``assignment``)."""
    from escalation.services.assignment import queue_drain, tickets_return_from_agent

    with transaction.atomic():
        presence = _presence_locked(agent)
        presence.on_duty = on_duty
        presence.last_seen_at = timezone.now()
        presence.save(update_fields=["on_duty", "last_seen_at"])
        if on_duty:
            queue_drain()
    if not on_duty:
        tickets_return_from_agent(
            agent=agent, note=f"{_name(agent)} went off duty before taking it over."
        )
        # Their tickets went on to others; waiting customers' estimates changed.
        queue_drain()
    return presence


@transaction.atomic
def agent_capacity_set(*, agent: User, capacity: int) -> AgentPresence:
    """How many tickets the queue gives the agent at once (1 to AGENT_CAPACITY_MAX).
    Raising it drains the queue; lowering it takes nothing away."""
    from escalation.services.assignment import queue_drain
    from escalation.services.tickets import EscalationError

    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise EscalationError("Capacity is a whole number.", code="invalid")
    if not 1 <= capacity <= AGENT_CAPACITY_MAX:
        raise EscalationError(
            f"Capacity is from 1 to {AGENT_CAPACITY_MAX} tickets.", code="invalid"
        )
    presence = _presence_locked(agent)
    presence.capacity = capacity
    presence.full_clean(exclude=["agent"])
    presence.save(update_fields=["capacity"])
    queue_drain()
    return presence


def agent_presence_ensure(*, agent: User, on_duty: bool) -> AgentPresence:
    """Give a new agent a duty status; an existing one keeps whatever they chose."""
    presence, _ = AgentPresence.objects.get_or_create(agent=agent, defaults={"on_duty": on_duty})
    return presence


def agent_presence_touch(*, agent: User) -> None:
    """A console socket of this agent is open (connect and heartbeat). An on-duty agent
    coming back after being away drains the queue (they may get tickets)."""
    from escalation.services.assignment import queue_drain

    now = timezone.now()
    since = now - timedelta(seconds=settings.ESCALATION_AGENT_PRESENCE_SECONDS)
    came_back = (
        AgentPresence.objects.filter(agent=agent, on_duty=True)
        .filter(Q(last_seen_at__lt=since) | Q(last_seen_at__isnull=True))
        .update(last_seen_at=now)
    )
    updated = came_back or AgentPresence.objects.filter(agent=agent).update(last_seen_at=now)
    if not updated:
        AgentPresence.objects.get_or_create(agent=agent, defaults={"last_seen_at": now})
    if came_back:
        queue_drain()


def _name(agent: User) -> str:
    from chat.selectors import display_name

    return display_name(agent)
