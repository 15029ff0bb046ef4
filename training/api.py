"""DRF API for training runs: create/list/retrieve, live progress, cancel, approve, deploy."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from chat.errors import error_body
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


class TrainingRunViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = TrainingRunSerializer
    permission_classes = [permissions.DjangoModelPermissions]
    queryset = TrainingRun.objects.select_related("snapshot").order_by("-created_at")
    ordering = "-created_at"

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        try:
            run = run_services.run_create(created_by=self.request.user, **data)
        except DjangoValidationError as exc:
            detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
            raise ValidationError(detail) from exc
        serializer.instance = run

    @action(detail=True, methods=["get"])
    def live(self, request: Request, pk=None) -> Response:
        run = self.get_object()
        return Response({**run_progress(run=run), "metrics": run_metric_series(run=run)})

    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk=None) -> Response:
        run = self.get_object()
        if not request.user.has_perm("training.change_trainingrun"):
            raise PermissionDenied("You cannot change training runs.")
        try:
            run = run_services.run_cancel(run=run, by=request.user)
        except run_services.RunStateError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(run).data)

    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk=None) -> Response:
        run = self.get_object()
        try:
            run = run_services.run_approve(run=run, by=request.user)
        except DjangoPermissionDenied as exc:
            raise PermissionDenied(str(exc)) from exc
        except run_services.RunStateError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
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
        try:
            deployment = deployment_services.adapter_deploy(
                run=run,
                by=request.user,
                slot=body.validated_data["slot"],
                force_reason=body.validated_data["force_reason"],
            )
        except DjangoPermissionDenied as exc:
            raise PermissionDenied(str(exc)) from exc
        except deployment_services.DeploymentGateRefused as exc:
            return Response(
                error_body("deployment_gate", str(exc), gate=exc.verdict.as_dict()),
                status=status.HTTP_409_CONFLICT,
            )
        except deployment_services.DeploymentError as exc:
            return Response(error_body("conflict", str(exc)), status=status.HTTP_409_CONFLICT)
        return Response(DeploymentSerializer(deployment).data)


class DeploymentViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """The live adapter of each slot ("" is the organisation's default)."""

    serializer_class = DeploymentSerializer
    pagination_class = None
    permission_classes = [permissions.DjangoModelPermissions]
    queryset = AdapterDeployment.objects.select_related("run").order_by("-deployed_at", "-pk")
    ordering = "-deployed_at"

    def get_queryset(self):
        return super().get_queryset().filter(active=True)

    @extend_schema(request=DeploySerializer, responses=RollbackResultSerializer)
    @action(detail=False, methods=["post"], serializer_class=DeploySerializer)
    def rollback(self, request: Request) -> Response:
        body = DeploySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            live = deployment_services.adapter_rollback(
                by=request.user, slot=body.validated_data["slot"]
            )
        except DjangoPermissionDenied as exc:
            raise PermissionDenied(str(exc)) from exc
        except deployment_services.DeploymentError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response({"live": DeploymentSerializer(live).data if live else None})
