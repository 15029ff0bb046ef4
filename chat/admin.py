"""Admin for conversations, messages and customer feedback (read-mostly: every write
goes through chat.services). The Article admin is added by the assistant's owner."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from chat.models import Conversation, CustomerFeedback, Message
from chat.transcripts import transcript_export


class MessageInline(admin.TabularInline):
    model = Message
    fk_name = "conversation"
    extra = 0
    can_delete = False
    fields = ["seq", "role", "visibility", "author", "text", "provider", "latency_ms"]
    readonly_fields = fields
    ordering = ["seq"]

    def has_add_permission(self, request: HttpRequest, obj: object | None = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return super().get_queryset(request).select_related("author")


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "customer",
        "channel",
        "status",
        "handling",
        "assigned_agent",
        "needs_attention",
        "last_seq",
        "created_at",
    ]
    list_filter = ["status", "handling", "channel", "needs_attention", "created_at"]
    list_select_related = ["customer", "assigned_agent"]
    search_fields = ["id", "title", "visitor_id", "customer__username", "messages__text"]
    readonly_fields = [
        "id",
        "customer",
        "visitor_id",
        "channel",
        "status",
        "handling",
        "assigned_agent",
        "last_seq",
        "needs_attention",
        "attention_reason",
        "adapter_name",
        "created_at",
        "updated_at",
        "ended_at",
    ]
    fields = ["title", *readonly_fields]
    inlines = [MessageInline]
    actions = ["export_transcripts"]
    date_hierarchy = "created_at"

    @admin.action(description="Export transcripts (JSON) to storage")
    def export_transcripts(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> None:
        paths = [transcript_export(conversation=c) for c in queryset]
        self.message_user(
            request,
            f"Exported {len(paths)} transcript(s): {', '.join(paths[:5])}",
            messages.SUCCESS,
        )


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = [
        "conversation",
        "seq",
        "role",
        "visibility",
        "provider",
        "model_name",
        "adapter",
        "latency_ms",
        "created_at",
    ]
    list_filter = ["role", "visibility", "provider", "adapter"]
    list_select_related = ["conversation"]
    search_fields = ["text", "conversation__id"]
    readonly_fields = [f.name for f in Message._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(CustomerFeedback)
class CustomerFeedbackAdmin(admin.ModelAdmin):
    list_display = ["conversation", "score", "message", "created_at"]
    list_filter = ["score", "created_at"]
    list_select_related = ["conversation", "message"]
    readonly_fields = ["conversation", "message", "score", "better_answer", "comment", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
