"""django-q2 entry points: ids in, one service call, retries with exponential backoff.

A failed attempt that should be retried schedules the same task once, later
(``Schedule.ONCE``); the services are idempotent, so a redelivered task is harmless.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from escalation import services


def _retry_later(func: str, *args: int, seconds: int) -> None:
    from django_q.models import Schedule
    from django_q.tasks import schedule

    schedule(
        func,
        *args,
        schedule_type=Schedule.ONCE,
        repeats=1,
        next_run=timezone.now() + timedelta(seconds=seconds),
    )


def webhook_deliver_task(delivery_id: int) -> None:
    retry_in = services.webhook_delivery_attempt(delivery_id=delivery_id)
    if retry_in is not None:
        _retry_later("escalation.tasks.webhook_deliver_task", delivery_id, seconds=retry_in)


def workflow_callback_answer_task(callback_id: int) -> None:
    retry_in = services.workflow_callback_answer(callback_id=callback_id)
    if retry_in is not None:
        _retry_later(
            "escalation.tasks.workflow_callback_answer_task", callback_id, seconds=retry_in
        )


def workflow_start_task(ticket_id: int, attempt: int = 1) -> str:
    from django.conf import settings

    try:
        return services.workflow_start(ticket_id=ticket_id)
    except Exception:
        if attempt >= settings.ESCALATION_RETRY_MAX_ATTEMPTS:
            raise
        _retry_later(
            "escalation.tasks.workflow_start_task",
            ticket_id,
            attempt + 1,
            seconds=services.retry_delay_seconds(attempt),
        )
        return ""


def ticket_notify_agents_task(ticket_id: int) -> int:
    return services.ticket_notify_agents(ticket_id=ticket_id)


def tickets_expire_task() -> int:
    return services.tickets_expire()


def tickets_return_silent_task() -> int:
    """Scheduled every minute: tickets whose agent stayed silent go back to the queue."""
    return services.tickets_return_silent()
