"""The Step Functions human-review workflow: start it, take its task token, answer once."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chat.errors import Conflict, NotFound
from chat.models import Message
from escalation import stepfunctions
from escalation.models import Ticket, WorkflowCallback
from escalation.services.events import retry_delay_seconds
from escalation.services.tickets import _callback_enqueue, ticket_outcome_payload

logger = logging.getLogger(__name__)


def withheld_draft_for(ticket: Ticket) -> Message | None:
    """The assistant's draft kept from the customer on the escalated turn, if stored."""
    drafts = Message.objects.filter(
        conversation_id=ticket.conversation_id,
        role=Message.Role.ASSISTANT,
        visibility=Message.Visibility.WITHHELD,
    )
    if ticket.trigger_message_id:
        drafts = drafts.filter(reply_to_id=ticket.trigger_message_id)
    return drafts.order_by("-seq").first()


def workflow_input(ticket: Ticket) -> dict[str, Any]:
    draft = withheld_draft_for(ticket)
    return {
        "ticket_id": ticket.pk,
        "conversation_id": str(ticket.conversation_id),
        "reason": ticket.reason,
        "reason_detail": ticket.reason_detail,
        "priority": ticket.priority,
        "customer_message": ticket.trigger_message.text if ticket.trigger_message else "",
        "withheld_draft": draft.text if draft else "",
        "callback_path": "/api/escalation/callbacks/step-functions/",
    }


def workflow_start(*, ticket_id: int) -> str:
    """Start the configured state machine for the ticket, once (idempotent by name).

    Queued when the ticket opens, or, for an escalated turn, once the turn's withheld
    draft is settled (``EscalationReviewer.draft_stored``): the input carries the draft
    without waiting for it."""
    if not stepfunctions.workflow_configured():
        return ""
    ticket = Ticket.objects.select_related("trigger_message").get(pk=ticket_id)
    if ticket.workflow_execution_arn:
        return ticket.workflow_execution_arn
    arn = stepfunctions.execution_start(
        name=f"loopdesk-ticket-{ticket.pk}", payload=workflow_input(ticket)
    )
    Ticket.objects.filter(pk=ticket.pk, workflow_execution_arn="").update(
        workflow_execution_arn=arn
    )
    return arn


@transaction.atomic
def workflow_callback_register(*, ticket_id: int, task_token: str) -> tuple[WorkflowCallback, bool]:
    """Store the task token a Lambda posted for the ticket; returns (callback, created).

    The same token posted again is a no-op. A token for a ticket that is already
    resolved or closed is answered right away.
    """
    ticket = Ticket.objects.select_for_update().filter(pk=ticket_id).first()
    if ticket is None:
        raise NotFound("No such ticket.")
    existing = WorkflowCallback.objects.filter(task_token=task_token).first()
    if existing is not None:
        if existing.ticket_id != ticket.pk:
            raise Conflict("This token belongs to another ticket.")
        return existing, False
    callback = WorkflowCallback(ticket=ticket, task_token=task_token)
    if not ticket.is_active:
        callback.state = WorkflowCallback.State.SENDING
        callback.action = (
            WorkflowCallback.Action.SUCCESS
            if ticket.status == Ticket.Status.RESOLVED
            else WorkflowCallback.Action.FAILURE
        )
        callback.output = ticket_outcome_payload(ticket)
    callback.full_clean(exclude=["ticket"])
    callback.save()
    if callback.state == WorkflowCallback.State.SENDING:
        transaction.on_commit(lambda: _callback_enqueue(callback.pk))
    return callback, True


def workflow_callback_answer(*, callback_id: int) -> int | None:
    """Send SendTaskSuccess/SendTaskFailure for a queued answer; returns seconds until
    the next try, or None when finished.

    Idempotent: the row is claimed under a lock and marked answered after AWS accepted
    it, so a redelivered task does not answer the token twice. A token AWS no longer
    knows (timed out, answered) is marked failed without retrying.
    """
    with transaction.atomic():
        callback = WorkflowCallback.objects.select_for_update().get(pk=callback_id)
        if callback.state != WorkflowCallback.State.SENDING:
            return None
        callback.attempts += 1
        callback.save(update_fields=["attempts"])
        try:
            if callback.action == WorkflowCallback.Action.SUCCESS:
                stepfunctions.task_succeed(task_token=callback.task_token, output=callback.output)
            else:
                outcome = callback.output.get("outcome") or "abandoned"
                stepfunctions.task_fail(
                    task_token=callback.task_token,
                    error=f"Ticket{str(outcome).title()}",
                    cause=f"Ticket {callback.ticket_id} was {outcome} without a resolution.",
                )
        except Exception as exc:
            callback.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            final = stepfunctions.token_already_answered(exc) or (
                callback.attempts >= settings.ESCALATION_RETRY_MAX_ATTEMPTS
            )
            if final:
                callback.state = WorkflowCallback.State.FAILED
            callback.save(update_fields=["last_error", "state"])
            logger.warning("Step Functions answer for callback %s failed: %s", callback_id, exc)
            return None if final else retry_delay_seconds(callback.attempts)
        callback.state = WorkflowCallback.State.ANSWERED
        callback.answered_at = timezone.now()
        callback.last_error = ""
        callback.save(update_fields=["state", "answered_at", "last_error"])
        return None
