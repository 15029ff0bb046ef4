"""Agent availability: on duty (a switch in the console) and seen by a console socket."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from escalation.models import AgentPresence


@transaction.atomic
def agent_presence_set(*, agent: User, on_duty: bool) -> AgentPresence:
    presence, _ = AgentPresence.objects.select_for_update().get_or_create(agent=agent)
    presence.on_duty = on_duty
    presence.last_seen_at = timezone.now()
    presence.save(update_fields=["on_duty", "last_seen_at"])
    return presence


def agent_presence_ensure(*, agent: User, on_duty: bool) -> AgentPresence:
    """Give a new agent a duty status; an existing one keeps whatever they chose."""
    presence, _ = AgentPresence.objects.get_or_create(agent=agent, defaults={"on_duty": on_duty})
    return presence


def agent_presence_touch(*, agent: User) -> None:
    """A console socket of this agent is open (connect and heartbeat)."""
    updated = AgentPresence.objects.filter(agent=agent).update(last_seen_at=timezone.now())
    if not updated:
        AgentPresence.objects.get_or_create(agent=agent, defaults={"last_seen_at": timezone.now()})


def agents_available() -> QuerySet[AgentPresence]:
    """On-duty agents whose console was seen within ESCALATION_AGENT_PRESENCE_SECONDS."""
    since = timezone.now() - timedelta(seconds=settings.ESCALATION_AGENT_PRESENCE_SECONDS)
    return AgentPresence.objects.filter(
        on_duty=True, last_seen_at__gte=since, agent__is_active=True
    )
