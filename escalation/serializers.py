"""DRF serializers for the escalation API (shapes only; writes go through services)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from chat.models import INTENT_LABELS
from chat.selectors import display_name
from escalation.models import (
    AGENT_CAPACITY_MAX,
    ESCALATING_INTENTS,
    DomainEvent,
    Ticket,
    Webhook,
    WebhookDelivery,
)
from escalation.webhooks import DestinationRefused, destination_check


class TicketSerializer(serializers.ModelSerializer):
    conversation_id = serializers.UUIDField(read_only=True)
    # "" until the ticket is resolved or closed (documented as such, not as an enum miss).
    outcome = serializers.ChoiceField(
        choices=Ticket.Outcome.choices, allow_blank=True, read_only=True
    )
    assigned_agent = serializers.SerializerMethodField()
    first_response_seconds = serializers.FloatField(read_only=True, allow_null=True)
    resolution_seconds = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = Ticket
        fields = [
            "id",
            "conversation_id",
            "reason",
            "reason_detail",
            "priority",
            "status",
            "sentiment",
            "nobody_available",
            "assigned_agent",
            "handoff_at",
            "assigned_at",
            "first_response_at",
            "resolved_at",
            "closed_at",
            "outcome",
            "outcome_note",
            "person_needed",
            "first_response_seconds",
            "resolution_seconds",
            "workflow_execution_arn",
        ]
        read_only_fields = fields

    def get_assigned_agent(self, ticket: Ticket) -> str:
        return display_name(ticket.assigned_agent)


class TicketDetailSerializer(TicketSerializer):
    """One ticket, with the withheld draft (the list leaves it out: one query per row)."""

    withheld_draft = serializers.SerializerMethodField()

    class Meta(TicketSerializer.Meta):
        fields = [*TicketSerializer.Meta.fields, "withheld_draft"]
        read_only_fields = fields

    def get_withheld_draft(self, ticket: Ticket) -> str:
        """The assistant's draft kept from the customer on the escalated turn ("" if none)."""
        from escalation.services.workflows import withheld_draft_for

        draft = withheld_draft_for(ticket)
        return draft.text if draft else ""


class ResolveSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=[Ticket.Outcome.APPROVED, Ticket.Outcome.REJECTED])
    note = serializers.CharField(required=False, allow_blank=True, max_length=4000, default="")
    person_needed = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Was a person needed? false: the assistant could have answered.",
    )
    category = serializers.ChoiceField(
        choices=INTENT_LABELS,
        required=False,
        allow_blank=True,
        default="",
        help_text="What the message was (an intent label); default: the router's category.",
    )


class FlagSerializer(serializers.Serializer):
    """A conversation the assistant kept that should have come to a person."""

    category = serializers.ChoiceField(choices=ESCALATING_INTENTS)
    message_id = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="The customer's message (default: the last one the assistant answered).",
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=300, default="")


class FlagResponseSerializer(serializers.Serializer):
    example_id = serializers.IntegerField()
    category = serializers.CharField()
    message_id = serializers.IntegerField(allow_null=True)


class CloseSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(
        choices=[Ticket.Outcome.ABANDONED, Ticket.Outcome.EXPIRED], default="abandoned"
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=4000, default="")


class PresenceSerializer(serializers.Serializer):
    """Either or both: going on or off duty, how many tickets the queue may give you."""

    on_duty = serializers.BooleanField(required=False)
    capacity = serializers.IntegerField(required=False, min_value=1, max_value=AGENT_CAPACITY_MAX)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("Send on_duty, capacity or both.")
        return attrs


class PresenceStateSerializer(serializers.Serializer):
    on_duty = serializers.BooleanField()
    capacity = serializers.IntegerField()
    load = serializers.IntegerField(help_text="Tickets assigned to you now.")
    supervisor = serializers.BooleanField()


class AssignSerializer(serializers.Serializer):
    """A supervisor gives the ticket to an agent, or (null) puts it back in the queue."""

    agent = serializers.IntegerField(allow_null=True, min_value=1, max_value=2**63 - 1)


class DomainEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = DomainEvent
        fields = ["id", "name", "conversation", "ticket", "payload", "created_at"]
        read_only_fields = fields


class WebhookSerializer(serializers.ModelSerializer):
    secret = serializers.CharField(write_only=True, max_length=200)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=DomainEvent.Name.choices), required=False
    )

    class Meta:
        model = Webhook
        fields = ["id", "name", "url", "secret", "events", "enabled", "created_at"]
        read_only_fields = ["id", "created_at"]

    def validate_url(self, value: str) -> str:
        try:
            destination_check(value)
        except DestinationRefused as exc:
            raise serializers.ValidationError(str(exc)) from exc
        return value


class WebhookDeliverySerializer(serializers.ModelSerializer):
    event_name = serializers.CharField(source="event.name", read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event",
            "event_name",
            "status",
            "attempts",
            "last_status_code",
            "last_error",
            "created_at",
            "delivered_at",
        ]
        read_only_fields = fields


class CallbackSerializer(serializers.Serializer):
    """What the Step Functions Lambda posts: the ticket and the task token to answer."""

    ticket_id = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    task_token = serializers.CharField(min_length=1, max_length=2048, trim_whitespace=False)

    def validate_task_token(self, value: str) -> str:
        if value != value.strip() or any(ch.isspace() for ch in value):
            raise serializers.ValidationError("A task token has no whitespace.")
        return value


class KnowledgeDraftCreatedSerializer(serializers.Serializer):
    draft_id = serializers.IntegerField()
    article = serializers.SlugField(help_text="The unpublished article's slug")


class CallbackResponseSerializer(serializers.Serializer):
    callback_id = serializers.IntegerField()
    state = serializers.CharField()
    created = serializers.BooleanField()
