"""DRF serializers of the chat API (shapes only; writes go through chat.services)."""

from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from chat.models import Conversation, CustomerFeedback, Message, Turn
from chat.selectors import display_name


class ErrorSerializer(serializers.Serializer):
    """Every API error (``chat.errors``): a stable code, a message for people, and for
    invalid input the problems by field."""

    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.JSONField(), required=False, help_text="Problems by field"
    )


class ConversationSerializer(serializers.ModelSerializer):
    agent_name = serializers.SerializerMethodField()

    class Meta:
        model = Conversation
        fields = [
            "id",
            "title",
            "channel",
            "status",
            "handling",
            "agent_name",
            "last_seq",
            "needs_attention",
            "created_at",
            "updated_at",
            "ended_at",
        ]
        read_only_fields = fields

    def get_agent_name(self, conversation: Conversation) -> str:
        return display_name(conversation.assigned_agent)


class ConversationCreateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class MessageSerializer(serializers.ModelSerializer):
    """What a customer sees of a message."""

    author_name = serializers.SerializerMethodField()
    reply_to_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "seq",
            "client_id",
            "role",
            "author_name",
            "text",
            "sources",
            "reply_to_id",
            "created_at",
        ]
        read_only_fields = fields

    def get_author_name(self, message: Message) -> str:
        return display_name(message.author)


class TurnSerializer(serializers.ModelSerializer):
    """What the assistant's turn saw and decided (support staff only)."""

    class Meta:
        model = Turn
        fields = [
            "id",
            "status",
            "route",
            "decision_reason",
            "decision_category",
            "decision_detail",
            "decision_priority",
            "sentiment_label",
            "sentiment_score",
            "sentiment_method",
            "intent",
            "intent_confidence",
            "router_version",
            "retrieval_top_score",
            "no_answer",
            "withheld_reason",
            "provider",
            "model_name",
            "adapter",
            "retriever_adapter",
            "support_answer",
            "latency_ms",
            "first_token_ms",
            "error",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class AgentMessageSerializer(MessageSerializer):
    """Agents also see withheld drafts, the turn behind an answer and which model
    answered."""

    turn = TurnSerializer(read_only=True, allow_null=True)

    class Meta(MessageSerializer.Meta):
        fields = [
            *MessageSerializer.Meta.fields,
            "visibility",
            "marker",
            "turn",
            "provider",
            "model_name",
            "adapter",
            "latency_ms",
        ]
        read_only_fields = fields


class ConversationMessageSerializer(MessageSerializer):
    """Schema only: a message as the messages endpoint returns it. Customers get the
    public fields; support staff also get the fields below (absent for customers)."""

    visibility = serializers.ChoiceField(choices=Message.Visibility.choices, required=False)
    marker = serializers.ChoiceField(
        choices=Message.Marker.choices, allow_blank=True, required=False
    )
    turn = TurnSerializer(required=False, allow_null=True)
    provider = serializers.CharField(required=False, allow_blank=True)
    model_name = serializers.CharField(required=False, allow_blank=True)
    adapter = serializers.CharField(required=False, allow_blank=True)
    latency_ms = serializers.IntegerField(required=False, allow_null=True)

    class Meta(MessageSerializer.Meta):
        fields = AgentMessageSerializer.Meta.fields
        read_only_fields = MessageSerializer.Meta.fields


class MessageCreateSerializer(serializers.Serializer):
    client_id = serializers.CharField(
        max_length=64, help_text="Client-generated id; a retry with the same id is deduplicated."
    )
    # Length is checked by the service (settings.CHAT_MAX_MESSAGE_CHARS) for one error text.
    text = serializers.CharField(trim_whitespace=False, allow_blank=True)


class TurnResultSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(
        choices=["answered", "withheld", "escalated", "blocked", "failed", "silent", "duplicate"]
    )
    message = MessageSerializer()
    reply = MessageSerializer(allow_null=True)
    notice = MessageSerializer(allow_null=True)


class FeedbackSerializer(serializers.ModelSerializer):
    score = serializers.IntegerField(
        min_value=1,
        max_value=5,
        help_text="1 strongly disagree, 2 disagree, 3 neutral, 4 agree, 5 strongly agree",
    )
    better_answer = serializers.CharField(
        required=False, allow_blank=True, max_length=settings.CHAT_MAX_MESSAGE_CHARS
    )
    comment = serializers.CharField(
        required=False, allow_blank=True, max_length=settings.CHAT_MAX_MESSAGE_CHARS
    )
    message_id = serializers.IntegerField(required=False, allow_null=True)

    class Meta:
        model = CustomerFeedback
        fields = ["id", "score", "better_answer", "comment", "message_id", "created_at"]
        read_only_fields = ["id", "created_at"]


class TranscriptSerializer(serializers.Serializer):
    path = serializers.CharField()
    url = serializers.CharField()
