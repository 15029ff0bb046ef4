"""Admin for conversations, messages and customer feedback (read-mostly: every write
goes through chat.services). The Article admin is added by the assistant's owner."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, F, Q, QuerySet
from django.http import HttpRequest

from chat.models import (
    Article,
    ArticlePassage,
    Conversation,
    CustomerFeedback,
    IntentExample,
    Message,
    RouterVersion,
    SupportAnswer,
)
from chat.services import (
    SupportAnswerError,
    article_publish_set,
    article_save,
    articles_embed_queue,
    support_answer_restore,
    support_answer_revoke,
)
from chat.transcripts import transcript_export


class MessageInline(admin.TabularInline):
    model = Message
    fk_name = "conversation"
    extra = 0
    can_delete = False
    fields = ("seq", "role", "visibility", "author", "text", "provider", "latency_ms")
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


# --- knowledge base (owned by the assistant) ---------------------------------------------


class EmbeddingStatusFilter(admin.SimpleListFilter):
    title = "embedding"
    parameter_name = "embedding"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("current", "Up to date"), ("pending", "Missing or outdated")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Article]) -> QuerySet[Article]:
        from chat.assistant.providers import embedder_current

        current = Q(embedded_at__isnull=False, embedded_at__gte=F("updated_at")) & Q(
            embedding_model=embedder_current().name
        )
        if self.value() == "current":
            return queryset.filter(current)
        if self.value() == "pending":
            return queryset.exclude(current)
        return queryset


class ArticlePassageInline(admin.TabularInline):
    """How the article was split (written by the background embedding, read-only)."""

    model = ArticlePassage
    fields = ["position", "anchor", "kind", "heading", "text"]
    readonly_fields = ["position", "anchor", "kind", "heading", "text"]
    extra = 0
    can_delete = False
    show_change_link = False
    verbose_name_plural = "Passages (what the assistant retrieves and cites)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[ArticlePassage]:
        return super().get_queryset(request).defer("embedding", "token_vectors")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Article)
class ArticleAdmin(admin.ModelAdmin):
    list_display = [
        "title",
        "slug",
        "category",
        "is_published",
        "source",
        "embedding_status",
        "updated_at",
    ]
    list_filter = ["is_published", "category", "source", EmbeddingStatusFilter]
    search_fields = ["title", "slug", "body", "search_labels"]
    prepopulated_fields = {"slug": ["title"]}
    readonly_fields = ["embedding_status", "embedding_model", "embedded_at", "created_at"]
    fields = [
        "title",
        "slug",
        "category",
        "body",
        "search_labels",
        "is_published",
        "source",
        *readonly_fields,
    ]
    actions = ["publish", "unpublish", "recompute_embeddings"]
    inlines = [ArticlePassageInline]

    def get_inlines(self, request: HttpRequest, obj: Article | None) -> list[Any]:
        return list(self.inlines) if obj is not None else []  # a new article has none yet

    def get_queryset(self, request: HttpRequest) -> QuerySet[Article]:
        # The vector is a few KB per row and never shown.
        return super().get_queryset(request).defer("embedding")

    @admin.display(description="Embedding")
    def embedding_status(self, obj: Article) -> str:
        from chat.assistant.providers import embedder_current

        if obj.embedded_at is None:
            return "pending"
        if obj.embedding_model != embedder_current().name:
            return f"other model ({obj.embedding_model})"
        if obj.updated_at and obj.embedded_at < obj.updated_at:
            return "outdated, pending"
        return "up to date"

    def save_model(self, request: HttpRequest, obj: Article, form: Any, change: bool) -> None:
        try:
            article_save(article=obj)
        except ValidationError as exc:
            self.message_user(request, "; ".join(exc.messages), messages.ERROR)

    @admin.action(description="Publish selected articles", permissions=["change"])
    def publish(self, request: HttpRequest, queryset: QuerySet[Article]) -> None:
        changed = article_publish_set(
            article_ids=list(queryset.values_list("pk", flat=True)), published=True
        )
        self.message_user(request, f"Published {changed} article(s).", messages.SUCCESS)

    @admin.action(description="Unpublish selected articles", permissions=["change"])
    def unpublish(self, request: HttpRequest, queryset: QuerySet[Article]) -> None:
        changed = article_publish_set(
            article_ids=list(queryset.values_list("pk", flat=True)), published=False
        )
        self.message_user(request, f"Unpublished {changed} article(s).", messages.SUCCESS)

    @admin.action(description="Recompute embeddings in the background", permissions=["change"])
    def recompute_embeddings(self, request: HttpRequest, queryset: QuerySet[Article]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        with transaction.atomic():
            tasks = articles_embed_queue(article_ids=ids, force=True)
        self.message_user(
            request, f"Queued {len(ids)} article(s) in {tasks} embedding task(s).", messages.SUCCESS
        )


@admin.register(IntentExample)
class IntentExampleAdmin(admin.ModelAdmin):
    """Messages labelled by agents: the router's extra training rows (read-only; a wrong
    row can be deleted)."""

    list_display = ["created_at", "label", "source", "router_label", "recorded_by", "short_text"]
    list_filter = ["source", "label", "router_label"]
    list_select_related = ["recorded_by"]
    search_fields = ["text"]
    readonly_fields = [f.name for f in IntentExample._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="message")
    def short_text(self, example: IntentExample) -> str:
        return example.text[:80]


@admin.register(RouterVersion)
class RouterVersionAdmin(admin.ModelAdmin):
    """Router versions with their escalate-or-not figures on the evaluation part. New
    versions come from ``manage.py intents_train``; "Make live" refuses a version that
    evaluates worse than the live one."""

    list_display = [
        "name",
        "is_live",
        "source",
        "eval_precision",
        "eval_recall",
        "eval_accuracy",
        "eval_critical_missed",
        "train_rows",
        "agent_rows",
        "created_at",
        "made_live_at",
    ]
    list_filter = ["is_live", "source"]
    readonly_fields = [f.name for f in RouterVersion._meta.fields]
    actions = ["make_live"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # every turn names its version: keep them all

    def has_make_live_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("chat.make_live_routerversion")

    @admin.action(
        description="Make live (only if at least as good as the live one)",
        permissions=["make_live"],
    )
    def make_live(self, request: HttpRequest, queryset: QuerySet[RouterVersion]) -> None:
        from django.contrib.auth.models import User

        from chat.errors import ApplicationError
        from chat.services.intents import router_version_make_live

        if queryset.count() != 1:
            self.message_user(request, "Choose exactly one version.", messages.ERROR)
            return
        user = request.user if isinstance(request.user, User) else None
        try:
            version = router_version_make_live(version=queryset.get(), by=user)
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self.message_user(
            request,
            f"{version.name} is live: escalate-or-not precision {version.eval_precision:.3f}, "
            f"recall {version.eval_recall:.3f}.",
            messages.SUCCESS,
        )


@admin.register(SupportAnswer)
class SupportAnswerAdmin(admin.ModelAdmin):
    """Answer memory: which answers from the team customers may get, who wrote and who
    approved each, and how often it answered. Approval happens where the answer was
    written (a label's better answer, a resolved ticket); here it is revoked or restored.
    Rows are never edited or deleted: a wrong one is revoked, and turns keep pointing at
    what answered them."""

    list_display = [
        "question_short",
        "answer_short",
        "status",
        "origin",
        "article",
        "approved_by",
        "approved_at",
        "answered_turns",
    ]
    list_filter = ["status", "origin"]
    list_select_related = ["article", "approved_by"]
    search_fields = ["question", "answer", "origin_ref"]
    readonly_fields = (
        "question",
        "answer",
        "article",
        "origin",
        "origin_ref",
        "message",
        "written_by",
        "status",
        "approved_by",
        "approved_at",
        "revoked_by",
        "revoked_at",
        "embedding_model",
        "answered_turns",
    )
    fields = readonly_fields
    actions = ["revoke", "restore"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[SupportAnswer]:
        return (
            super()
            .get_queryset(request)
            .defer("embedding", "answer_embedding")
            .annotate(turn_count=Count("turns"))
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("chat.approve_supportanswer")

    @admin.display(description="Question")
    def question_short(self, obj: SupportAnswer) -> str:
        return obj.question[:80]

    @admin.display(description="Answer")
    def answer_short(self, obj: SupportAnswer) -> str:
        return obj.answer[:120]

    @admin.display(description="Turns answered", ordering="turn_count")
    def answered_turns(self, obj: SupportAnswer) -> int:
        return getattr(obj, "turn_count", 0)

    @admin.action(
        description="Revoke: customers no longer get these answers", permissions=["approve"]
    )
    def revoke(self, request: HttpRequest, queryset: QuerySet[SupportAnswer]) -> None:
        for row in queryset:
            support_answer_revoke(support_answer=row, by=request.user)
        self.message_user(request, f"Revoked {queryset.count()} answer(s).", messages.SUCCESS)

    @admin.action(description="Approve again", permissions=["approve"])
    def restore(self, request: HttpRequest, queryset: QuerySet[SupportAnswer]) -> None:
        restored = 0
        for row in queryset:
            try:
                support_answer_restore(support_answer=row, by=request.user)
                restored += 1
            except SupportAnswerError as exc:
                self.message_user(request, f"{row}: {exc.message}", messages.ERROR)
        self.message_user(request, f"Approved {restored} answer(s) again.", messages.SUCCESS)
