"""DRF API for training runs: create/list/retrieve, live progress, cancel, approve, deploy."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from labeling.models import DatasetSnapshot
from training.models import AdapterDeployment, TrainingRun
from training.selectors import run_metric_series, run_progress
from training.services import deployments as deployment_services
from training.services import runs as run_services
from training.services.presets import PRESETS


class TrainingRunSerializer(serializers.ModelSerializer):
    snapshot = serializers.PrimaryKeyRelatedField(queryset=DatasetSnapshot.objects.all())
    reward_run = serializers.PrimaryKeyRelatedField(
        queryset=TrainingRun.objects.filter(algorithm=TrainingRun.Algorithm.REWARD_MODEL),
        required=False,
        allow_null=True,
    )
    preset = serializers.ChoiceField(choices=["", *PRESETS], required=False, default="")
    algorithm = serializers.ChoiceField(
        choices=TrainingRun.Algorithm.choices, required=False, default=""
    )
    reward_source = serializers.ChoiceField(
        choices=TrainingRun.RewardSource.choices, required=False, default="", allow_blank=True
    )
    lora_r = serializers.IntegerField(required=False, allow_null=True, default=None)
    lora_alpha = serializers.IntegerField(required=False, allow_null=True, default=None)
    lora_dropout = serializers.FloatField(required=False, allow_null=True, default=None)
    lora_target_modules = serializers.ListField(
        child=serializers.CharField(), required=False, allow_null=True, default=None
    )
    hyperparameters = serializers.DictField(required=False, default=dict)
    base_model = serializers.CharField(required=False, default="")

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "name",
            "snapshot",
            "preset",
            "algorithm",
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
            "step",
            "total_steps",
            "created_at",
            "started_at",
            "finished_at",
            "approved_at",
            "evaluation",
            "manifest",
        ]
        read_only_fields = [
            "status",
            "error",
            "step",
            "total_steps",
            "created_at",
            "started_at",
            "finished_at",
            "approved_at",
            "evaluation",
            "manifest",
        ]


class DeploySerializer(serializers.Serializer):
    slot = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)


class RollbackSerializer(DeploySerializer):
    kind = serializers.ChoiceField(
        choices=AdapterDeployment.Kind.choices,
        required=False,
        default=AdapterDeployment.Kind.GENERATOR,
        help_text="Which adapter of the slot to roll back: generator or retriever.",
    )


class DeployRunSerializer(DeploySerializer):
    force_reason = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=2000,
        help_text=(
            "Admins only: deploy although the evaluation is not better than what is live, "
            "and why (kept with the deployment)."
        ),
    )


class DeploymentSerializer(serializers.ModelSerializer):
    adapter_name = serializers.CharField(source="run.adapter_name", read_only=True)

    class Meta:
        model = AdapterDeployment
        fields = [
            "slot",
            "kind",
            "adapter_name",
            "run",
            "active",
            "deployed_at",
            "gate_summary",
            "forced_reason",
        ]
        read_only_fields = fields


class RollbackResultSerializer(serializers.Serializer):
    live = DeploymentSerializer(allow_null=True)


class TrainingRole(permissions.DjangoModelPermissions):
    """Training is for ML engineers and admins: reading a run or a deployment needs its
    ``view`` permission too (a run's evaluation quotes customers' questions, reviewers'
    reference answers and server paths), not only being signed in."""

    perms_map = {
        **permissions.DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
    }


class NewestRunsFirst(CursorPagination):
    ordering = "-created_at"


class RunProgressSerializer(serializers.Serializer):
    """``/live/``: a run's progress and its metric curves."""

    status = serializers.ChoiceField(choices=TrainingRun.Status.choices)
    step = serializers.IntegerField()
    total_steps = serializers.IntegerField(allow_null=True)
    fraction = serializers.FloatField()
    eta_seconds = serializers.FloatField(allow_null=True)
    error = serializers.CharField(allow_blank=True)
    log_tail = serializers.ListField(child=serializers.CharField(allow_blank=True))
    metrics = serializers.DictField(
        child=serializers.ListField(child=serializers.ListField(child=serializers.FloatField())),
        help_text="{metric name: [[step, value], ...]}",
    )


class TrainingRunViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = TrainingRunSerializer
    permission_classes = [TrainingRole]
    pagination_class = NewestRunsFirst
    queryset = TrainingRun.objects.select_related("snapshot").order_by("-created_at")

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        serializer.instance = run_services.run_create(created_by=self.request.user, **data)

    @extend_schema(responses=RunProgressSerializer)
    @action(detail=True, methods=["get"])
    def live(self, request: Request, pk=None) -> Response:
        run = self.get_object()
        return Response({**run_progress(run=run), "metrics": run_metric_series(run=run)})

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk=None) -> Response:
        run = self.get_object()
        if not request.user.has_perm("training.change_trainingrun"):
            raise PermissionDenied("You cannot change training runs.")
        run = run_services.run_cancel(run=run, by=request.user)
        return Response(self.get_serializer(run).data)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk=None) -> Response:
        run = run_services.run_approve(run=self.get_object(), by=request.user)
        return Response(self.get_serializer(run).data)

    @extend_schema(request=DeployRunSerializer, responses=DeploymentSerializer)
    @action(detail=True, methods=["post"], serializer_class=DeployRunSerializer)
    def deploy(self, request: Request, pk=None) -> Response:
        """Deploy the run's adapter to ``slot``. 409 with the deployment gate's comparison
        (``gate``) when its evaluation is not better than what is live; an admin may
        force it with ``force_reason``."""
        run = self.get_object()
        body = DeployRunSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        deployment = deployment_services.adapter_deploy(
            run=run,
            by=request.user,
            slot=body.validated_data["slot"],
            force_reason=body.validated_data["force_reason"],
        )
        return Response(DeploymentSerializer(deployment).data)


class DeploymentViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """The live adapter of each slot ("" is the organisation's default)."""

    serializer_class = DeploymentSerializer
    pagination_class = None
    permission_classes = [TrainingRole]
    queryset = AdapterDeployment.objects.select_related("run").order_by("-deployed_at", "-pk")

    def get_queryset(self):
        return super().get_queryset().filter(active=True)

    @extend_schema(request=RollbackSerializer, responses=RollbackResultSerializer)
    @action(detail=False, methods=["post"], serializer_class=RollbackSerializer)
    def rollback(self, request: Request) -> Response:
        body = RollbackSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        live = deployment_services.adapter_rollback(
            by=request.user, slot=body.validated_data["slot"], kind=body.validated_data["kind"]
        )
        return Response({"live": DeploymentSerializer(live).data if live else None})
