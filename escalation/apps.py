from django.apps import AppConfig


class EscalationConfig(AppConfig):
    name = "escalation"

    def ready(self) -> None:
        # The chat turn asks "is a person needed?" through chat's registry: chat never
        # imports escalation.
        from chat.review import reviewer_register
        from escalation.services.decisions import EscalationReviewer

        reviewer_register(EscalationReviewer())
