"""The admin is the approval console: create runs, watch them train, evaluate, approve,
deploy and roll back adapters."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from chat.payloads import BoundedJSONFormField
from training.models import AdapterDeployment, RunMetric, TrainingRun
from training.selectors import (
    run_base_model_is_toy,
    run_guard_limits,
    run_metric_series,
    run_progress,
)
from training.services import deployments as deployment_services
from training.services import runs as run_services
from training.services.artifacts import artifacts_zip
from training.services.deployment_gate import deployment_gate_check
from training.services.guards import GUARD_KL, GUARD_LENGTH
from training.services.presets import PRESETS, preset_choices


class TrainingRunCreateForm(forms.ModelForm):
    lora_target_modules = BoundedJSONFormField(required=False)
    hyperparameters = BoundedJSONFormField(required=False)
    preset = forms.ChoiceField(
        choices=preset_choices,
        required=False,
        help_text="Fills algorithm, LoRA settings and hyperparameters; edit them after.",
    )

    class Meta:
        model = TrainingRun
        fields = [
            "name",
            "preset",
            "snapshot",
            "algorithm",
            "base_model",
            "reward_source",
            "reward_run",
            "seed",
            "device",
            "lora_r",
            "lora_alpha",
            "lora_dropout",
            "lora_target_modules",
            "hyperparameters",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from django.conf import settings

        self.fields["base_model"].initial = str(settings.HF_BASE_MODEL_PATH)
        self.fields["reward_source"].required = False  # online runs only; defaults
        self.fields["reward_run"].queryset = TrainingRun.objects.filter(
            algorithm=TrainingRun.Algorithm.REWARD_MODEL, status=TrainingRun.Status.SUCCEEDED
        )
        self.fields["preset"].widget.attrs["data-presets"] = json.dumps(
            {name: p.fields() for name, p in PRESETS.items()}
        )


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "__str__",
        "algorithm",
        "status",
        "progress",
        "snapshot",
        "created_at",
        "approved_at",
        "live_slots",
    ]
    list_filter = ["status", "algorithm"]
    list_select_related = ["snapshot"]
    search_fields = ["name", "error"]
    actions = ["cancel_runs", "approve_runs", "deploy_runs"]
    change_form_template = "admin/training/trainingrun/change_form.html"
    readonly_fields = [
        "snapshot",
        "algorithm",
        "preset",
        "base_model",
        "reward_source",
        "reward_run",
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "lora_target_modules",
        "hyperparameters",
        "seed",
        "device",
        "status",
        "error",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
        "heartbeat_at",
        "step",
        "total_steps",
        "artifact_prefix",
        "router_version",
        "approved_by",
        "approved_at",
    ]
    fields = ["name", *readonly_fields]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .defer("log_tail", "manifest", "evaluation")
            .prefetch_related("deployments")
        )

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = TrainingRunCreateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return TrainingRunCreateForm.Meta.fields
        return self.fields

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return super().get_fieldsets(request, obj)
        return [
            ("Run", {"fields": ["name", "snapshot", "algorithm", "preset", "base_model"]}),
            ("Reward", {"fields": ["reward_source", "reward_run"]}),
            (
                "LoRA and hyperparameters",
                {
                    "fields": [
                        "lora_r",
                        "lora_alpha",
                        "lora_dropout",
                        "lora_target_modules",
                        "hyperparameters",
                        "seed",
                        "device",
                    ]
                },
            ),
            (
                "Status",
                {
                    "fields": [
                        "status",
                        "error",
                        "step",
                        "total_steps",
                        "created_by",
                        "created_at",
                        "started_at",
                        "heartbeat_at",
                        "finished_at",
                    ]
                },
            ),
            (
                "Artifacts and approval",
                {"fields": ["artifact_prefix", "router_version", "approved_by", "approved_at"]},
            ),
        ]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    @admin.display(description="progress")
    def progress(self, run: TrainingRun) -> str:
        if not run.total_steps:
            return "-"
        return f"{run.step}/{run.total_steps}"

    @admin.display(description="live for")
    def live_slots(self, run: TrainingRun) -> str:
        slots = [d.slot or "default" for d in run.deployments.all() if d.active]
        return ", ".join(slots) or "-"

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["name"])
            return
        data = form.cleaned_data
        try:
            run = run_services.run_create(
                snapshot=data["snapshot"],
                created_by=request.user,
                preset=data.get("preset") or "",
                algorithm=data["algorithm"],
                base_model=data["base_model"],
                reward_run=data.get("reward_run"),
                reward_source=data.get("reward_source") or "",
                name=data.get("name") or "",
                seed=data["seed"],
                device=data["device"],
                lora_r=data["lora_r"],
                lora_alpha=data["lora_alpha"],
                lora_dropout=data["lora_dropout"],
                lora_target_modules=data["lora_target_modules"],
                hyperparameters=data["hyperparameters"],
            )
        except ValidationError as exc:
            self.message_user(request, "; ".join(exc.messages), messages.ERROR)
            return
        obj.pk = run.pk
        obj.refresh_from_db()

    # --- actions --------------------------------------------------------------------------
    @admin.action(description="Cancel selected runs", permissions=["change"])
    def cancel_runs(self, request, queryset: QuerySet[TrainingRun]):
        for run in queryset:
            try:
                run_services.run_cancel(run=run, by=request.user)
            except run_services.RunStateError as exc:
                self.message_user(request, str(exc), messages.WARNING)
            else:
                self.message_user(request, f"{run} cancelled.", messages.SUCCESS)

    @admin.action(description="Approve selected runs", permissions=["approve"])
    def approve_runs(self, request, queryset: QuerySet[TrainingRun]):
        for run in queryset:
            try:
                run_services.run_approve(run=run, by=request.user)
            except (run_services.RunStateError, PermissionDenied) as exc:
                self.message_user(request, f"{run}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{run} approved.", messages.SUCCESS)

    @admin.action(
        description="Deploy the selected run's adapter (default slot)",
        permissions=["deploy"],
    )
    def deploy_runs(self, request, queryset: QuerySet[TrainingRun]):
        for run in queryset[:1]:
            self._deploy(request, run, slot="")

    def has_approve_permission(self, request):
        return request.user.has_perm("training.approve_trainingrun")

    def has_deploy_permission(self, request):
        return request.user.has_perm("training.deploy_adapter")

    def _deploy(self, request, run: TrainingRun, *, slot: str, force_reason: str = "") -> None:
        try:
            deployment = deployment_services.adapter_deploy(
                run=run, by=request.user, slot=slot, force_reason=force_reason
            )
        except (deployment_services.DeploymentError, PermissionDenied) as exc:
            self.message_user(request, f"{run}: {exc}", messages.ERROR)
        except ValidationError as exc:  # e.g. a slot name longer than 100 characters
            self.message_user(request, f"{run}: {'; '.join(exc.messages)}", messages.ERROR)
        else:
            where = slot or "the default slot"
            forced = " (forced past the deployment gate)" if deployment.forced else ""
            what = run.adapter_name
            if deployment.router_version is not None:
                what = f"The intent router {deployment.router_version.name}"
                where = "every conversation"
            self.message_user(request, f"{what} is live for {where}{forced}.", messages.SUCCESS)

    # --- run page: live data, download, approve/deploy/rollback/cancel buttons -------------
    def get_urls(self):
        urls = [
            path(
                "<int:run_id>/live.json",
                self.admin_site.admin_view(self.live_view),
                name="training_trainingrun_live",
            ),
            path(
                "<int:run_id>/artifacts.zip",
                self.admin_site.admin_view(self.download_view),
                name="training_trainingrun_download",
            ),
            path(
                "<int:run_id>/act/",
                self.admin_site.admin_view(self.act_view),
                name="training_trainingrun_act",
            ),
        ]
        return urls + super().get_urls()

    def _run_for(self, request: HttpRequest, run_id: int) -> TrainingRun:
        run = get_object_or_404(TrainingRun, pk=run_id)
        if not self.has_view_permission(request, run):
            raise PermissionDenied
        return run

    def live_view(self, request: HttpRequest, run_id: int) -> JsonResponse:
        run = self._run_for(request, run_id)
        return JsonResponse(
            {**run_progress(run=run), "metrics": run_metric_series(run=run)},
        )

    def download_view(self, request: HttpRequest, run_id: int) -> HttpResponse:
        run = self._run_for(request, run_id)
        if run.status != TrainingRun.Status.SUCCEEDED or not run.artifact_prefix:
            raise PermissionDenied("This run has no artifacts.")
        response = HttpResponse(artifacts_zip(run=run), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-artifacts.zip"'
        return response

    def act_view(self, request: HttpRequest, run_id: int) -> HttpResponse:
        run = self._run_for(request, run_id)
        back = HttpResponseRedirect(reverse("admin:training_trainingrun_change", args=[run.pk]))
        if request.method != "POST":
            return back
        action = request.POST.get("action")
        slot = request.POST.get("slot", "").strip()
        try:
            if action == "cancel":
                if not self.has_change_permission(request, run):
                    raise PermissionDenied("You cannot change runs.")
                run_services.run_cancel(run=run, by=request.user)
                self.message_user(request, "Run cancelled.", messages.SUCCESS)
            elif action == "approve":
                run_services.run_approve(run=run, by=request.user)
                self.message_user(request, "Run approved.", messages.SUCCESS)
            elif action == "deploy":
                self._deploy(
                    request, run, slot=slot, force_reason=request.POST.get("force_reason", "")
                )
            elif action == "rollback":
                live = deployment_services.adapter_rollback(
                    by=request.user, slot=slot, kind=run.adapter_kind
                )
                self.message_user(
                    request, f"Rolled back: {_live_after(run, live)} is live.", messages.SUCCESS
                )
        except (
            PermissionDenied,
            run_services.RunStateError,
            deployment_services.DeploymentError,
        ) as exc:
            self.message_user(request, str(exc), messages.ERROR)
        return back

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if run is not None:
            deployable = run.status == TrainingRun.Status.SUCCEEDED and run.produces_adapter
            extra.update(
                {
                    "run": run,
                    "toy_base_model": run_base_model_is_toy(run=run),
                    "guard_limits": run_guard_limits(run=run),
                    "gate": deployment_gate_check(run=run, slot="") if deployable else None,
                    "can_force": request.user.has_perm("training.force_deploy_adapter"),
                    "log_lines": run_progress(run=run)["log_tail"],
                    "live_url": reverse("admin:training_trainingrun_live", args=[run.pk]),
                    "act_url": reverse("admin:training_trainingrun_act", args=[run.pk]),
                    "download_url": reverse("admin:training_trainingrun_download", args=[run.pk]),
                    "evaluation": run.evaluation,
                    "router_sides": _router_sides(run),
                    "can_approve": request.user.has_perm("training.approve_trainingrun"),
                    "can_deploy": request.user.has_perm("training.deploy_adapter"),
                    "deployments": run.deployments.order_by("-deployed_at")[:10],
                    "chart_metrics": json.dumps(CHART_METRICS.get(run.algorithm, [])),
                }
            )
        return super().change_view(request, object_id, form_url, extra)


def _router_sides(run: TrainingRun) -> list[tuple[dict, str]]:
    """An intent-router run's before/after rows for the run page."""
    evaluation = run.evaluation if isinstance(run.evaluation, dict) else {}
    if evaluation.get("kind") != "intent_router":
        return []
    return [
        (evaluation["before"], "Before (the version routing when the run started)"),
        (evaluation["after"], "After (this run's version)"),
    ]


def _live_after(run: TrainingRun, live: AdapterDeployment | None) -> str:
    """What serves after a rollback, in words."""
    if run.adapter_kind == AdapterDeployment.Kind.ROUTER:
        from chat.services.intents import router_version_routing

        return f"the intent router {router_version_routing().name}"
    return live.run.adapter_name if live else "the base model"


TOY_LABEL = "Toy starter model (mechanics only)"

# The curves drawn on the run page (the first is the headline: PPO's reward/mean).
CHART_METRICS = {
    TrainingRun.Algorithm.PPO: ["objective/scores", GUARD_KL, GUARD_LENGTH, "loss/policy_avg"],
    TrainingRun.Algorithm.GRPO: ["reward", GUARD_KL, GUARD_LENGTH, "reward_std"],
    TrainingRun.Algorithm.RLOO: ["reward", GUARD_KL, GUARD_LENGTH, "reward_std"],
    TrainingRun.Algorithm.REWARD_MODEL: ["accuracy", "margin", "loss"],
    TrainingRun.Algorithm.DPO: ["rewards/margins", "rewards/accuracies", "loss"],
    TrainingRun.Algorithm.KTO: ["rewards/chosen", "rewards/rejected", "kl", "loss"],
    TrainingRun.Algorithm.INTENT_ROUTER: [
        "after/escalate_recall",
        "after/escalate_precision",
        "before/escalate_recall",
        "before/escalate_precision",
        "calibration/escalate_recall",
        "calibration/escalate_precision",
    ],
}


@admin.register(RunMetric)
class RunMetricAdmin(admin.ModelAdmin):
    list_display = ["run", "step", "name", "value"]
    list_filter = ["name"]
    list_select_related = ["run"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


DEPLOYMENT_FIELDS = (
    "slot",
    "kind",
    "adapter",
    "base_model",
    "active",
    "deployed_by",
    "deployed_at",
    "rolled_back_at",
    "previous",
    "gate_summary",
    "forced_reason",
    "router_version",
    "replaced_router_version",
)


@admin.register(AdapterDeployment)
class AdapterDeploymentAdmin(admin.ModelAdmin):
    list_display = [
        "slot_label",
        "kind",
        "adapter",
        "base_model",
        "active",
        "gate",
        "deployed_by",
        "deployed_at",
        "rolled_back_at",
    ]
    list_filter = ["active", "kind"]
    list_select_related = ["run", "deployed_by"]
    actions = ["rollback"]
    fields = DEPLOYMENT_FIELDS
    readonly_fields = DEPLOYMENT_FIELDS

    @admin.display(description="base model")
    def base_model(self, deployment: AdapterDeployment) -> str:
        if run_base_model_is_toy(run=deployment.run):
            return format_html('<span class="training-toy">{}</span>', TOY_LABEL)
        return deployment.run.base_model

    @admin.display(description="deployment gate")
    def gate(self, deployment: AdapterDeployment) -> str:
        if deployment.forced:
            return format_html(
                '<strong class="training-forced">forced</strong>: {}', deployment.forced_reason
            )
        return "passed" if deployment.gate_summary else "-"

    @admin.display(description="slot")
    def slot_label(self, deployment: AdapterDeployment) -> str:
        return deployment.slot or "default"

    @admin.display(description="adapter")
    def adapter(self, deployment: AdapterDeployment) -> str:
        url = reverse("admin:training_trainingrun_change", args=[deployment.run_id])
        return format_html('<a href="{}">run-{}</a>', url, deployment.run_id)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Roll back the selected slots to their previous adapter")
    def rollback(self, request, queryset: QuerySet[AdapterDeployment]):
        for kind, slot in sorted({(d.kind, d.slot) for d in queryset if d.active}):
            try:
                live = deployment_services.adapter_rollback(by=request.user, slot=slot, kind=kind)
            except (deployment_services.DeploymentError, PermissionDenied) as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                if kind == AdapterDeployment.Kind.ROUTER:
                    from chat.services.intents import router_version_routing

                    now = f"the intent router {router_version_routing().name}"
                else:
                    now = live.run.adapter_name if live else "the base model"
                self.message_user(
                    request, f"{slot or 'default'} ({kind}): {now} is live.", messages.SUCCESS
                )
