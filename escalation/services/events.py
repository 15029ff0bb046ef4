"""Domain events (the prompt-chaining blog's event-driven design) and their webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chat.models import Conversation
from escalation import webhooks
from escalation.models import DomainEvent, Ticket, Webhook, WebhookDelivery


def signature_for(*, secret: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, body): the X-Loopdesk-Signature header."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def retry_delay_seconds(attempts: int) -> int:
    """Exponential backoff: base, 2*base, 4*base, ... capped at one hour."""
    return int(min(3600, settings.ESCALATION_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1)))


@transaction.atomic(savepoint=False)
def event_record(
    *,
    name: str,
    conversation: Conversation | None = None,
    ticket: Ticket | None = None,
    payload: dict[str, Any] | None = None,
) -> DomainEvent:
    """Store an event and queue one delivery per subscribed webhook (after commit)."""
    event = DomainEvent(
        name=name,
        conversation=conversation,
        ticket=ticket,
        payload=payload or {},
    )
    event.full_clean(exclude=["conversation", "ticket"])
    event.save()
    for webhook in Webhook.objects.filter(enabled=True):
        if not webhook.wants(name):
            continue
        delivery = WebhookDelivery.objects.create(webhook=webhook, event=event)
        transaction.on_commit(partial(_delivery_enqueue, delivery.pk))
    return event


def _delivery_enqueue(delivery_id: int) -> None:
    from chat.task_queue import task_enqueue

    task_enqueue("escalation.tasks.webhook_deliver_task", delivery_id)


def event_body(event: DomainEvent) -> dict[str, Any]:
    return {
        "id": event.pk,
        "event": event.name,
        "created_at": event.created_at.isoformat(),
        "conversation_id": str(event.conversation_id) if event.conversation_id else None,
        "ticket_id": event.ticket_id,
        "data": event.payload,
    }


def webhook_delivery_attempt(*, delivery_id: int) -> int | None:
    """POST the event once; returns seconds until the next try, or None when done.

    Idempotent: a delivery that is already delivered or failed is not sent again.
    The body is signed with the webhook's secret (``X-Loopdesk-Signature``); receivers
    de-duplicate on ``X-Loopdesk-Delivery`` (deliveries are at least once). Only public
    addresses are reached and redirects are not followed (``escalation.webhooks``); an
    internal destination fails the delivery at once, without retries.
    """
    delivery = WebhookDelivery.objects.select_related("webhook", "event").get(pk=delivery_id)
    if delivery.status != WebhookDelivery.Status.PENDING:
        return None
    webhook, event = delivery.webhook, delivery.event
    body = json.dumps(event_body(event), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Loopdesk-Webhooks/1",
        "X-Loopdesk-Event": event.name,
        "X-Loopdesk-Delivery": str(delivery.pk),
        "X-Loopdesk-Signature": signature_for(secret=webhook.secret, body=body),
    }
    status_code: int | None = None
    error = ""
    try:
        status_code = webhooks.webhook_post(
            url=webhook.url,
            body=body,
            headers=headers,
            timeout=settings.ESCALATION_WEBHOOK_TIMEOUT_SECONDS,
        )
    except webhooks.DestinationRefused as exc:
        # Final: retrying an internal destination would only probe it again.
        return _delivery_result(
            delivery_id=delivery.pk, status_code=None, error=str(exc), final=True
        )
    except (OSError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    return _delivery_result(delivery_id=delivery.pk, status_code=status_code, error=error)


@transaction.atomic
def _delivery_result(
    *, delivery_id: int, status_code: int | None, error: str, final: bool = False
) -> int | None:
    delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery_id)
    if delivery.status != WebhookDelivery.Status.PENDING:
        return None
    delivery.attempts += 1
    delivery.last_status_code = status_code
    ok = status_code is not None and 200 <= status_code < 300
    delivery.last_error = "" if ok else (error or f"HTTP {status_code}")[:2000]
    retry_in: int | None = None
    if ok:
        delivery.status = WebhookDelivery.Status.DELIVERED
        delivery.delivered_at = timezone.now()
    elif final or delivery.attempts >= settings.ESCALATION_RETRY_MAX_ATTEMPTS:
        delivery.status = WebhookDelivery.Status.FAILED
    else:
        retry_in = retry_delay_seconds(delivery.attempts)
    delivery.save(
        update_fields=["attempts", "last_status_code", "last_error", "status", "delivered_at"]
    )
    return retry_in
