"""Admin: rules, canned replies and webhooks are configured here; tickets, decisions,
events and deliveries are read-only audit views; reviewers approve expert articles."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest

from chat.errors import ApplicationError
from chat.payloads import BoundedJSONFormField
from escalation import services
from escalation.models import (
    AgentPresence,
    CannedReply,
    Decision,
    DomainEvent,
    EscalationRule,
    IntentPolicy,
    KnowledgeDraft,
    Ticket,
    Webhook,
    WebhookDelivery,
    WorkflowCallback,
)
from escalation.services import rules


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # the admin only serves signed-in staff
    return request.user


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(EscalationRule)
class EscalationRuleAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "kind",
        "enabled",
        "priority",
        "threshold",
        "upper_threshold",
        "count",
        "ticket_priority",
    ]
    list_editable = ["enabled", "priority"]
    list_filter = ["kind", "enabled"]
    fieldsets = [
        (
            None,
            {"fields": ["name", "kind", "enabled", "priority", "ticket_priority", "description"]},
        ),
        ("Thresholds", {"fields": ["threshold", "upper_threshold", "count", "patterns"]}),
    ]

    # Through the services: the reviewer's per-process copy of the rules is renewed on
    # commit (``escalation.services.rules``), so an edit applies to the next message.
    def save_model(
        self, request: HttpRequest, obj: EscalationRule, form: Any, change: bool
    ) -> None:
        try:
            rules.escalation_rule_save(rule=obj)
        except ValidationError as exc:
            self.message_user(request, "; ".join(exc.messages), messages.ERROR)

    def delete_model(self, request: HttpRequest, obj: EscalationRule) -> None:
        rules.escalation_rule_delete(rule=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[EscalationRule]) -> None:
        for rule in queryset:
            rules.escalation_rule_delete(rule=rule)


@admin.register(IntentPolicy)
class IntentPolicyAdmin(admin.ModelAdmin):
    """The intent router's escalating categories: thresholds, switches, ticket priority
    and the notice the customer sees at once. A change applies to the next message."""

    list_display = [
        "label",
        "escalate",
        "always_escalate",
        "threshold",
        "calibrated_threshold",
        "ticket_priority",
        "has_notice",
    ]
    list_editable = ["escalate", "always_escalate", "threshold", "ticket_priority"]
    fields = [
        "label",
        "escalate",
        "always_escalate",
        "threshold",
        "calibrated_threshold",
        "ticket_priority",
        "customer_notice",
    ]
    readonly_fields = ["calibrated_threshold"]

    def save_model(self, request: HttpRequest, obj: IntentPolicy, form: Any, change: bool) -> None:
        try:
            rules.intent_policy_save(policy=obj)
        except ValidationError as exc:
            self.message_user(request, "; ".join(exc.messages), messages.ERROR)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # one row per category, seeded by a migration

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="live model's threshold")
    def calibrated_threshold(self, policy: IntentPolicy) -> str:
        from chat.assistant.router import router_live_model

        model = router_live_model()
        value = model.thresholds.get(policy.label)
        return "—" if value is None else f"{value:g} ({model.version})"

    @admin.display(description="customer notice", boolean=True)
    def has_notice(self, policy: IntentPolicy) -> bool:
        return bool(policy.customer_notice.strip())


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "conversation",
        "rule_kind",
        "category",
        "score",
        "threshold",
        "outcome",
        "model_version",
        "detail",
    ]
    list_filter = ["rule_kind", "outcome", "category", "model_version"]
    list_select_related = ["conversation"]
    readonly_fields = [f.name for f in Decision._meta.fields]


@admin.register(Ticket)
class TicketAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "conversation",
        "reason",
        "priority",
        "status",
        "assigned_agent",
        "handoff_at",
        "first_response_at",
        "resolved_at",
        "outcome",
    ]
    list_filter = ["status", "priority", "reason", "outcome"]
    list_select_related = ["conversation", "assigned_agent"]
    readonly_fields = [f.name for f in Ticket._meta.fields]
    actions = ["abandon", "approve_reply"]

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("chat.approve_supportanswer")

    @admin.action(
        description="Approve the agent's reply for the answer memory", permissions=["approve"]
    )
    def approve_reply(self, request: HttpRequest, queryset: QuerySet[Ticket]) -> None:
        """Customers asking the same thing later get the reply, cited "From our support
        team" (revoke it in Chat > Support answers)."""
        approved = 0
        for ticket in queryset:
            try:
                services.ticket_reply_approve(ticket=ticket, approver=_user(request))
                approved += 1
            except ApplicationError as exc:
                self.message_user(request, f"Ticket {ticket.pk}: {exc.message}", messages.ERROR)
        self.message_user(request, f"{approved} agent reply(ies) approved for the answer memory.")

    @admin.action(description="Close as abandoned (answers Step Functions with a failure)")
    def abandon(self, request: HttpRequest, queryset: QuerySet[Ticket]) -> None:
        closed = 0
        for ticket in queryset.filter(status__in=Ticket.ACTIVE):
            try:
                services.ticket_close(
                    ticket=ticket, outcome=Ticket.Outcome.ABANDONED, agent=_user(request)
                )
                closed += 1
            except services.EscalationError as exc:
                self.message_user(request, f"Ticket {ticket.pk}: {exc.message}", messages.ERROR)
        self.message_user(request, f"Closed {closed} ticket(s).")


@admin.register(AgentPresence)
class AgentPresenceAdmin(admin.ModelAdmin):
    list_display = ["agent", "on_duty", "capacity", "last_seen_at", "last_assigned_at"]
    list_editable = ["on_duty"]
    list_select_related = ["agent"]


@admin.register(CannedReply)
class CannedReplyAdmin(admin.ModelAdmin):
    list_display = ["title", "enabled", "position"]
    list_editable = ["enabled", "position"]


@admin.register(WorkflowCallback)
class WorkflowCallbackAdmin(ReadOnlyAdmin):
    list_display = ["ticket", "state", "action", "attempts", "received_at", "answered_at"]
    list_filter = ["state", "action"]
    exclude = ["task_token"]


@admin.register(DomainEvent)
class DomainEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "name", "conversation", "ticket"]
    list_filter = ["name"]
    list_select_related = ["conversation", "ticket"]


class DeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    extra = 0
    can_delete = False
    readonly_fields = [
        "event",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "delivered_at",
    ]
    fields = tuple(readonly_fields)

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookDelivery]:
        return super().get_queryset(request).select_related("event")


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    list_display = ["name", "url", "enabled", "created_at"]
    formfield_overrides = {models.JSONField: {"form_class": BoundedJSONFormField}}
    inlines = [DeliveryInline]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "webhook", "event", "status", "attempts", "last_status_code"]
    list_filter = ["status", "webhook"]
    list_select_related = ["webhook", "event"]


@admin.register(KnowledgeDraft)
class KnowledgeDraftAdmin(ReadOnlyAdmin):
    list_display = ["article", "ticket", "status", "created_by", "reviewed_by", "reviewed_at"]
    list_filter = ["status"]
    list_select_related = ["article", "ticket", "created_by", "reviewed_by"]
    readonly_fields = ("article", "ticket", "status", "created_by", "reviewed_by", "reviewed_at")
    actions = ["approve", "reject"]

    def _review(
        self, request: HttpRequest, queryset: QuerySet[KnowledgeDraft], approve: bool
    ) -> None:
        done = 0
        for draft in queryset:
            try:
                services.knowledge_draft_review(
                    draft=draft, reviewer=_user(request), approve=approve
                )
                done += 1
            except services.EscalationError as exc:
                self.message_user(request, f"{draft}: {exc.message}", messages.ERROR)
        self.message_user(request, f"Reviewed {done} draft(s).")

    @admin.action(description="Approve and publish", permissions=["approve"])
    def approve(self, request: HttpRequest, queryset: QuerySet[KnowledgeDraft]) -> None:
        self._review(request, queryset, approve=True)

    @admin.action(description="Reject", permissions=["approve"])
    def reject(self, request: HttpRequest, queryset: QuerySet[KnowledgeDraft]) -> None:
        self._review(request, queryset, approve=False)

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("escalation.approve_knowledgedraft")
