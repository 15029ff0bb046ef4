from typing import Any

from django.apps import AppConfig


class EscalationConfig(AppConfig):
    name = "escalation"

    def ready(self) -> None:
        # The chat turn asks "is a person needed?" through chat's registry: chat never
        # imports escalation.
        from chat.review import reviewer_register
        from chat.waiting import waiting_status_provider_register
        from escalation.services.decisions import EscalationReviewer

        reviewer_register(EscalationReviewer())
        # The chat socket asks where a waiting customer stands in the queue.
        waiting_status_provider_register(QueuePlaces())


class QueuePlaces:
    """``chat.waiting.WaitingStatusProvider``: the customer's place in the queue."""

    def waiting_status(self, *, conversation_id: Any) -> dict[str, Any] | None:
        from escalation.selectors import waiting_status

        return waiting_status(conversation_id=conversation_id)
