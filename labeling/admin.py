"""The labeling console: reviewers' queue and focused labeling page, experts' pages for
consolidation, adjudication, AI-score validation, snapshots and Ground Truth manifests.

Reviewers see only their own assignments (``selectors.labels_visible_to``); everything
that shows other reviewers' labels requires ``labeling.see_all_labels``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, F, FloatField, Func, QuerySet
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from chat.errors import ApplicationError
from labeling import selectors, services
from labeling.exports import jsonl_response, snapshot_export_lines
from labeling.forms import LabelForm, ManifestImportForm, SnapshotFreezeForm
from labeling.groundtruth import (
    ManifestError,
    input_manifest_lines,
    output_manifest_import,
    output_manifest_lines,
)
from labeling.instructions import FULL_INSTRUCTIONS, SHORT_INSTRUCTIONS, TASK_HEADER
from labeling.models import (
    AdjudicationItem,
    DatasetSnapshot,
    Label,
    LabelingBatch,
    LabelingItem,
    LabelingItemJudgeView,
    SamplingPolicy,
    SnapshotRow,
)


def _sees_all(request: HttpRequest) -> bool:
    return selectors.user_sees_all_labels(request.user)


def _acting(request: HttpRequest) -> Any:
    """The logged-in user (admin views only run for authenticated staff)."""
    return request.user


class ExpertOnlyMixin:
    """Pages that show everyone's labels: ML engineers (``see_all_labels``) only."""

    def has_module_permission(self, request):  # type: ignore[no-untyped-def]
        return _sees_all(request) and super().has_module_permission(request)  # type: ignore[misc]

    def has_view_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return _sees_all(request) and super().has_view_permission(request, obj)  # type: ignore[misc]


# --- sampling --------------------------------------------------------------------------------


@admin.register(SamplingPolicy)
class SamplingPolicyAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "is_active",
        "random_share",
        "include_escalated",
        "include_negative",
        "low_rating_max",
        "daily_cap",
        "last_run_at",
    ]
    list_editable = ["is_active"]
    actions = ["run_now"]

    @admin.action(description="Run the selected policies now", permissions=["run"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[SamplingPolicy]) -> None:
        for policy in queryset:
            result = services.sampling_policy_run(policy=policy)
            reasons = ", ".join(f"{n} {reason}" for reason, n in result.by_reason.items())
            self.message_user(
                request,
                f"{policy}: {result.created} new items"
                + (f" ({reasons})" if reasons else "")
                + (" - daily cap reached" if result.capped else ""),
                messages.SUCCESS,
            )

    def has_run_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("labeling.run_sampling")


@admin.register(LabelingBatch)
class LabelingBatchAdmin(ExpertOnlyMixin, admin.ModelAdmin):
    list_display = ["name", "policy", "created_at", "item_count", "agreement", "agreement_items"]
    list_select_related = ["policy"]
    readonly_fields = ["name", "policy", "created_at", "agreement_alpha", "agreement_items"]
    actions = ["recompute_agreement"]

    def get_queryset(self, request):  # type: ignore[no-untyped-def]
        return super().get_queryset(request).annotate(n_items=Count("items"))

    @admin.display(description="items", ordering="n_items")
    def item_count(self, batch: LabelingBatch) -> int:
        return batch.n_items  # type: ignore[attr-defined]

    @admin.display(description="Krippendorff's alpha", ordering="agreement_alpha")
    def agreement(self, batch: LabelingBatch) -> str:
        return "-" if batch.agreement_alpha is None else f"{batch.agreement_alpha:.2f}"

    @admin.action(description="Recompute agreement")
    def recompute_agreement(self, request: HttpRequest, queryset: QuerySet[LabelingBatch]) -> None:
        for batch in queryset:
            services.batch_agreement_refresh(batch=batch)
        self.message_user(request, "Agreement recomputed.", messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_urls(self):  # type: ignore[no-untyped-def]
        return [
            path(
                "agreement/",
                self.admin_site.admin_view(self.agreement_view),
                name="labeling_agreement",
            ),
            *super().get_urls(),
        ]

    def agreement_view(self, request: HttpRequest) -> HttpResponse:
        if not _sees_all(request):
            raise PermissionDenied
        batches = (
            LabelingBatch.objects.select_related("policy")
            .annotate(n_items=Count("items"))
            .order_by("-created_at")[:50]
        )
        context = {
            **self.admin_site.each_context(request),
            "title": "Agreement",
            "batches": batches,
            "reviewers": selectors.reviewer_agreements(),
            "judge": selectors.judge_human_agreement(),
            "adjudication_count": LabelingItem.objects.filter(
                status=LabelingItem.Status.ADJUDICATION
            ).count(),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/labeling/agreement.html", context)


# --- items -------------------------------------------------------------------------------------


class LabelInline(admin.TabularInline):
    model = Label
    extra = 0
    can_delete = False
    fields = [
        "reviewer",
        "worker_id",
        "status",
        "score",
        "better_answer",
        "comment",
        "submitted_at",
    ]
    readonly_fields = list(fields)  # type: ignore[arg-type]

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(LabelingItem)
class LabelingItemAdmin(ExpertOnlyMixin, admin.ModelAdmin):
    list_display = [
        "pk",
        "short_question",
        "reason",
        "status",
        "median_score",
        "score_spread",
        "judge_score",
        "batch",
        "created_at",
    ]
    list_filter = ["status", "reason", "judge_review", "provider"]
    search_fields = ["question", "answer"]
    list_select_related = ["batch"]
    date_hierarchy = "created_at"
    inlines = [LabelInline]
    actions = ["judge_now", "assign_reviewers"]
    readonly_fields = [
        "conversation_link",
        "message",
        "batch",
        "reason",
        "question",
        "answer",
        "context",
        "provider",
        "model_name",
        "adapter",
        "reference_answer",
        "status",
        "reviewers_required",
        "median_score",
        "score_spread",
        "consolidated_at",
        "adjudicated_score",
        "adjudicated_by",
        "judge_score",
        "judge_comment",
        "judge_method",
        "judged_at",
        "judge_review",
        "judge_validated_score",
    ]
    exclude = ["conversation", "judge_validated_by"]
    change_list_template = "admin/labeling/labelingitem/change_list.html"

    def get_queryset(self, request):  # type: ignore[no-untyped-def]
        return (
            super()
            .get_queryset(request)
            .defer("context", "reference_answer", "judge_comment", "answer")
        )

    @admin.display(description="question")
    def short_question(self, item: LabelingItem) -> str:
        return item.question[:80]

    @admin.display(description="conversation")
    def conversation_link(self, item: LabelingItem) -> str:
        if not item.conversation_id:
            return "-"
        url = reverse("admin:chat_conversation_change", args=[item.conversation_id])
        return format_html('<a href="{}">{}</a>', url, item.conversation_id)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    @admin.action(description="Score with the AI judge")
    def judge_now(self, request: HttpRequest, queryset: QuerySet[LabelingItem]) -> None:
        for item in queryset:
            services.item_judge(item=item, force=True)
        self.message_user(request, f"{queryset.count()} items judged.", messages.SUCCESS)

    @admin.action(description="Assign reviewers where missing")
    def assign_reviewers(self, request: HttpRequest, queryset: QuerySet[LabelingItem]) -> None:
        added = sum(len(services.item_assign_reviewers(item=item)) for item in queryset)
        self.message_user(request, f"{added} assignments added.", messages.SUCCESS)

    def get_urls(self):  # type: ignore[no-untyped-def]
        view = self.admin_site.admin_view
        return [
            path(
                "manifest/output.jsonl",
                view(self.output_manifest_view),
                name="labeling_output_manifest",
            ),
            path(
                "manifest/input.jsonl",
                view(self.input_manifest_view),
                name="labeling_input_manifest",
            ),
            path("manifest/import/", view(self.import_view), name="labeling_manifest_import"),
            *super().get_urls(),
        ]

    def output_manifest_view(self, request: HttpRequest) -> HttpResponseBase:
        if not _sees_all(request):
            raise PermissionDenied
        return jsonl_response(output_manifest_lines(), "output.manifest")

    def input_manifest_view(self, request: HttpRequest) -> HttpResponseBase:
        if not _sees_all(request):
            raise PermissionDenied
        return jsonl_response(input_manifest_lines(), "input.manifest")

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not (_sees_all(request) and request.user.has_perm("labeling.add_label")):
            raise PermissionDenied
        form = ManifestImportForm(request.POST or None, request.FILES or None)
        errors: list[str] = []
        if request.method == "POST" and form.is_valid():
            try:
                result = output_manifest_import(
                    lines=form.cleaned_data["manifest"],
                    attribute=form.cleaned_data["label_attribute"] or None,
                )
            except ManifestError as exc:
                errors = exc.errors
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(
                    request,
                    f"Imported: {result.items_created} new items, {result.labels_created} new "
                    f"labels, {result.labels_updated} updated, {result.consolidated} consolidated.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:labeling_labelingitem_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Import a Ground Truth output manifest",
            "form": form,
            "errors": errors,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/labeling/manifest_import.html", context)


class JudgeScoreRange(admin.SimpleListFilter):
    title = "AI score"
    parameter_name = "ai_score"

    def lookups(self, request, model_admin):  # type: ignore[no-untyped-def]
        return [("low", "1-2"), ("mid", "3"), ("high", "4-5"), ("none", "not scored")]

    def queryset(self, request, queryset):  # type: ignore[no-untyped-def]
        ranges = {"low": (1, 2), "mid": (3, 3), "high": (4, 5)}
        if self.value() == "none":
            return queryset.filter(judge_score__isnull=True)
        if self.value() in ranges:
            low, high = ranges[self.value()]
            return queryset.filter(judge_score__gte=low, judge_score__lte=high)
        return queryset


class HumanDisagreement(admin.SimpleListFilter):
    title = "disagreement with reviewers"
    parameter_name = "disagreement"

    def lookups(self, request, model_admin):  # type: ignore[no-untyped-def]
        return [
            ("agree", "within 1 point"),
            ("disagree", "2 points or more"),
            ("unlabeled", "no human score yet"),
        ]

    def queryset(self, request, queryset):  # type: ignore[no-untyped-def]
        if self.value() == "agree":
            return queryset.filter(disagreement__lt=2)
        if self.value() == "disagree":
            return queryset.filter(disagreement__gte=2)
        if self.value() == "unlabeled":
            return queryset.filter(median_score__isnull=True)
        return queryset


class Abs(Func):
    function = "ABS"


@admin.register(LabelingItemJudgeView)
class JudgeValidationAdmin(ExpertOnlyMixin, admin.ModelAdmin):
    """RLAIF validation: experts filter and sort AI scores and accept or override them."""

    list_display = [
        "pk",
        "short_question",
        "judge_score",
        "judge_method",
        "human_score",
        "disagreement_display",
        "judge_review",
        "judge_validated_score",
    ]
    list_display_links = ["pk", "short_question"]
    list_editable = ["judge_validated_score"]
    list_filter = [JudgeScoreRange, HumanDisagreement, "judge_review", "judge_method"]
    search_fields = ["question", "answer", "judge_comment"]
    actions = ["accept", "override_with_humans"]
    change_list_template = "admin/labeling/judge_change_list.html"
    fields = [
        "question",
        "answer",
        "reference_answer",
        "judge_score",
        "judge_comment",
        "judge_method",
        "median_score",
        "judge_review",
        "judge_validated_score",
    ]
    readonly_fields = list(fields[:-1])  # type: ignore[arg-type]

    def get_ordering(self, request):  # type: ignore[no-untyped-def]
        return [F("disagreement").desc(nulls_last=True), "pk"]

    def get_queryset(self, request):  # type: ignore[no-untyped-def]
        return (
            super()
            .get_queryset(request)
            .filter(judge_score__isnull=False)
            .annotate(
                disagreement=Abs(
                    Cast(F("judge_score"), FloatField()) - F("median_score"),
                    output_field=FloatField(),
                )
            )
            .defer("context", "answer", "reference_answer", "judge_comment")
        )

    @admin.display(description="question")
    def short_question(self, item: LabelingItem) -> str:
        return item.question[:70]

    @admin.display(description="human (median)", ordering="median_score")
    def human_score(self, item: LabelingItem) -> str:
        return "-" if item.final_score is None else f"{item.final_score:g}"

    @admin.display(description="|AI - human|", ordering="disagreement")
    def disagreement_display(self, item: LabelingItem) -> str:
        value = getattr(item, "disagreement", None)
        return "-" if value is None else f"{value:g}"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return request.user.has_perm("labeling.validate_judge")

    def save_model(self, request, obj, form, change):  # type: ignore[no-untyped-def]
        score = form.cleaned_data.get("judge_validated_score")
        if score is None:
            return
        try:
            if score == obj.judge_score:
                services.judge_accept(items=[obj], by=_acting(request))
            else:
                services.judge_override(item=obj, score=score, by=_acting(request))
        except (ValueError, ValidationError) as exc:
            self.message_user(request, str(exc), messages.ERROR)

    @admin.action(description="Accept the AI scores", permissions=["change"])
    def accept(self, request: HttpRequest, queryset: QuerySet[LabelingItem]) -> None:
        count = services.judge_accept(items=queryset, by=_acting(request))
        self.message_user(request, f"{count} AI scores accepted.", messages.SUCCESS)

    @admin.action(description="Override with the reviewers' score", permissions=["change"])
    def override_with_humans(self, request: HttpRequest, queryset: QuerySet[LabelingItem]) -> None:
        count = services.judge_override_with_humans(items=queryset, by=_acting(request))
        self.message_user(request, f"{count} AI scores overridden.", messages.SUCCESS)

    def changelist_view(self, request, extra_context=None):  # type: ignore[no-untyped-def]
        extra_context = {**(extra_context or {}), "judge": selectors.judge_human_agreement()}
        return super().changelist_view(request, extra_context)


@admin.register(AdjudicationItem)
class AdjudicationAdmin(ExpertOnlyMixin, admin.ModelAdmin):
    list_display = [
        "pk",
        "short_question",
        "median_score",
        "score_spread",
        "judge_score",
        "adjudicated_score",
    ]
    list_display_links = ["pk", "short_question"]
    list_editable = ["adjudicated_score"]
    inlines = [LabelInline]
    fields = [
        "question",
        "answer",
        "median_score",
        "score_spread",
        "judge_score",
        "adjudicated_score",
    ]
    readonly_fields = list(fields[:-1])  # type: ignore[arg-type]

    def get_queryset(self, request):  # type: ignore[no-untyped-def]
        return (
            super()
            .get_queryset(request)
            .filter(status=LabelingItem.Status.ADJUDICATION)
            .defer("context", "reference_answer", "judge_comment")
        )

    @admin.display(description="question")
    def short_question(self, item: LabelingItem) -> str:
        return item.question[:70]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return _sees_all(request) and request.user.has_perm("labeling.change_labelingitem")

    def save_model(self, request, obj, form, change):  # type: ignore[no-untyped-def]
        score = form.cleaned_data.get("adjudicated_score")
        if score is None:
            return
        try:
            services.item_adjudicate(
                item=LabelingItem.objects.get(pk=obj.pk), score=score, by=_acting(request)
            )
        except services.LabelingError as exc:
            self.message_user(request, str(exc), messages.ERROR)

    def save_formset(self, request, form, formset, change):  # type: ignore[no-untyped-def]
        return None  # labels are read-only here


# --- reviewer console --------------------------------------------------------------------------


class OwnStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):  # type: ignore[no-untyped-def]
        return Label.Status.choices

    def queryset(self, request, queryset):  # type: ignore[no-untyped-def]
        return queryset.filter(status=self.value()) if self.value() else queryset


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    """Reviewers: their own assignments (the queue) and the focused labeling page."""

    list_display = ["item_question", "status", "score", "assigned_at", "submitted_at", "open_link"]
    list_filter = [OwnStatusFilter]
    list_select_related = ["item"]
    change_list_template = "admin/labeling/label/change_list.html"
    actions = ["approve_better_answers"]

    def get_list_display(self, request):  # type: ignore[no-untyped-def]
        if _sees_all(request):
            return ["item_question", "reviewer", "worker_id", *self.list_display[1:]]
        return self.list_display

    def get_queryset(self, request):  # type: ignore[no-untyped-def]
        labels = selectors.labels_visible_to(user=request.user)
        return labels.defer("item__context", "item__answer", "item__judge_comment")

    @admin.display(description="question", ordering="item__question")
    def item_question(self, label: Label) -> str:
        return label.item.question[:80]

    @admin.display(description="")
    def open_link(self, label: Label) -> str:
        url = reverse("admin:labeling_label_annotate", args=[label.pk])
        text = "Label" if label.status == Label.Status.ASSIGNED else "View"
        return format_html('<a class="button" href="{}">{}</a>', url, text)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("chat.approve_supportanswer")

    @admin.action(
        description="Approve the better answers for the answer memory", permissions=["approve"]
    )
    def approve_better_answers(self, request: HttpRequest, queryset: QuerySet[Label]) -> None:
        """Customers asking the same thing later get these answers, cited "From our
        support team" (revoke them in Chat > Support answers)."""
        approved = 0
        for label in queryset.exclude(better_answer=""):
            try:
                services.label_better_answer_approve(label=label, approver=_acting(request))
                approved += 1
            except ApplicationError as exc:
                self.message_user(request, f"Label {label.pk}: {exc.message}", messages.ERROR)
        self.message_user(
            request,
            f"{approved} better answer(s) approved for the answer memory.",
            messages.SUCCESS,
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):  # type: ignore[no-untyped-def]
        return HttpResponseRedirect(reverse("admin:labeling_label_annotate", args=[object_id]))

    def get_urls(self):  # type: ignore[no-untyped-def]
        view = self.admin_site.admin_view
        return [
            path("queue/", view(self.queue_view), name="labeling_label_queue"),
            path("next/", view(self.next_view), name="labeling_label_next"),
            path("<int:pk>/annotate/", view(self.annotate_view), name="labeling_label_annotate"),
            *super().get_urls(),
        ]

    def queue_view(self, request: HttpRequest) -> HttpResponse:
        """My queue: open assignments (two queries whatever the queue's length)."""
        if not request.user.has_perm("labeling.change_label"):
            raise PermissionDenied
        queue = selectors.reviewer_queue(reviewer=request.user)
        open_labels = list(queue[:200])
        done = Label.objects.filter(
            reviewer_id=request.user.pk, status=Label.Status.SUBMITTED
        ).count()
        context = {
            **self.admin_site.each_context(request),
            "title": "My labeling queue",
            "queue": open_labels,
            "done": done,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/labeling/label/queue.html", context)

    def next_view(self, request: HttpRequest) -> HttpResponse:
        label = selectors.reviewer_next_label(reviewer=request.user)
        if label is None:
            self.message_user(request, "Your queue is empty. Thank you!", messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:labeling_label_queue"))
        return HttpResponseRedirect(reverse("admin:labeling_label_annotate", args=[label.pk]))

    def annotate_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The focused labeling page. Only the assigned reviewer may open it; the AI
        score shows only once the reviewer has submitted (unless configured otherwise)."""
        label = get_object_or_404(
            selectors.labels_visible_to(user=request.user).select_related("item__conversation"),
            pk=pk,
        )
        own = label.reviewer_id == request.user.pk
        if request.method == "POST":
            if not own:
                raise PermissionDenied
            form = LabelForm(request.POST)
            if form.is_valid():
                try:
                    services.label_submit(
                        label=label,
                        reviewer=_acting(request),
                        score=form.cleaned_data["score"],
                        better_answer=form.cleaned_data["better_answer"],
                        comment=form.cleaned_data["comment"],
                    )
                except (services.LabelingError, ValidationError) as exc:
                    self.message_user(request, str(exc), messages.ERROR)
                else:
                    label.item.refresh_from_db(fields=["judge_score", "judge_method"])
                    self.message_user(request, _saved_message(label.item, form), messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:labeling_label_next"))
        else:
            form = LabelForm()
        submitted = label.status == Label.Status.SUBMITTED
        remaining = selectors.reviewer_queue(reviewer=request.user).count()
        context = {
            **self.admin_site.each_context(request),
            "title": "Label an answer",
            "label": label,
            "item": label.item,
            "form": form,
            "own": own,
            "submitted": submitted,
            "show_judge": submitted or settings.LABELING_SHOW_JUDGE_BEFORE_LABEL,
            "remaining": remaining,
            "task_header": TASK_HEADER,
            "short_instructions": SHORT_INSTRUCTIONS,
            "full_instructions": FULL_INSTRUCTIONS,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/labeling/label/annotate.html", context)


def _saved_message(item: LabelingItem, form: LabelForm) -> str:
    text = f"Saved: relevance {form.cleaned_data['score']}."
    if item.judge_score is not None:
        text += f" The AI judge scored this answer {item.judge_score} ({item.judge_method})."
    return text


# --- snapshots ---------------------------------------------------------------------------------


@admin.register(DatasetSnapshot)
class DatasetSnapshotAdmin(admin.ModelAdmin):
    """Read-only: a snapshot never changes. New versions come from the freeze page."""

    list_display = ["name", "version", "created_by", "created_at", "counts", "redacted", "exports"]
    list_select_related = ["created_by"]
    readonly_fields = [
        "name",
        "version",
        "description",
        "created_by",
        "created_at",
        "filters",
        "redacted",
        "row_counts",
        "exports",
    ]
    change_list_template = "admin/labeling/datasetsnapshot/change_list.html"

    @admin.display(description="rows")
    def counts(self, snapshot: DatasetSnapshot) -> str:
        return ", ".join(f"{kind} {n}" for kind, n in snapshot.row_counts.items())

    @admin.display(description="export (JSON Lines)")
    def exports(self, snapshot: DatasetSnapshot) -> str:
        if snapshot.pk is None:
            return "-"
        url = reverse("admin:labeling_snapshot_export", args=[snapshot.pk])
        return format_html(
            '<a href="{}?kind=scored">scored</a> · <a href="{}?kind=pair">pairs</a> · '
            '<a href="{}?kind=kto">KTO</a>',
            url,
            url,
            url,
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False  # training runs point at snapshots; they are kept as frozen

    def get_urls(self):  # type: ignore[no-untyped-def]
        view = self.admin_site.admin_view
        return [
            path("freeze/", view(self.freeze_view), name="labeling_snapshot_freeze"),
            path("<int:pk>/export.jsonl", view(self.export_view), name="labeling_snapshot_export"),
            *super().get_urls(),
        ]

    def freeze_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("labeling.add_datasetsnapshot"):
            raise PermissionDenied
        form = SnapshotFreezeForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            snapshot = services.snapshot_create_from_labels(
                name=data["name"],
                created_by=_acting(request),
                filters=form.snapshot_filters(),
                test_share=data["test_share"],
                redact=data["redact"],
                include_takeovers=data["include_takeovers"],
                description=data["description"],
            )
            self.message_user(request, f"Froze {snapshot}: {self.counts(snapshot)}.")
            return HttpResponseRedirect(
                reverse("admin:labeling_datasetsnapshot_change", args=[snapshot.pk])
            )
        context = {
            **self.admin_site.each_context(request),
            "title": "Freeze a dataset snapshot",
            "form": form,
            "consolidated": LabelingItem.objects.filter(
                status=LabelingItem.Status.CONSOLIDATED
            ).count(),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/labeling/snapshot_freeze.html", context)

    def export_view(self, request: HttpRequest, pk: int) -> HttpResponseBase:
        if not request.user.has_perm("labeling.view_snapshotrow"):
            raise PermissionDenied
        snapshot = get_object_or_404(DatasetSnapshot, pk=pk)
        kind = request.GET.get("kind", SnapshotRow.Kind.SCORED)
        if kind not in SnapshotRow.Kind.values:
            kind = SnapshotRow.Kind.SCORED
        split = request.GET.get("split") or None
        redact = request.GET.get("redact") == "1"
        return jsonl_response(
            snapshot_export_lines(snapshot=snapshot, kind=kind, split=split, redact=redact),
            f"{snapshot.name}-v{snapshot.version}-{kind}.jsonl",
        )


@admin.register(SnapshotRow)
class SnapshotRowAdmin(admin.ModelAdmin):
    list_display = ["snapshot", "kind", "position", "data"]
    list_filter = ["kind"]
    list_select_related = ["snapshot"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
