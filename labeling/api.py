"""DRF API: labeling items, assignments and label submission (external workforce),
snapshots, manifests and agreement figures."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat.serializers import ErrorSerializer
from labeling import selectors, services
from labeling.exports import jsonl_response, snapshot_export_lines
from labeling.groundtruth import (
    input_manifest_lines,
    manifest_size_check,
    output_manifest_import,
    output_manifest_lines,
)
from labeling.models import DatasetSnapshot, Label, LabelingItem, SamplingPolicy, SnapshotRow

JSONL_RESPONSE = OpenApiResponse(
    response=OpenApiTypes.STR, description="JSON Lines, streamed (application/jsonl)"
)


class ById(CursorPagination):
    ordering = "-id"


class ByAssignment(CursorPagination):
    ordering = ("assigned_at", "id")


class CanLabel(permissions.BasePermission):
    message = "Only reviewers can label."

    def has_permission(self, request, view):  # type: ignore[no-untyped-def]
        return bool(
            request.user.is_authenticated and request.user.has_perm("labeling.change_label")
        )


class SeesAllLabels(permissions.BasePermission):
    message = "Only ML engineers see everyone's labels."

    def has_permission(self, request, view):  # type: ignore[no-untyped-def]
        return bool(request.user.is_authenticated and selectors.user_sees_all_labels(request.user))


class ManagesSnapshots(permissions.BasePermission):
    def has_permission(self, request, view):  # type: ignore[no-untyped-def]
        if request.method in permissions.SAFE_METHODS:
            return request.user.has_perm("labeling.view_datasetsnapshot")
        return request.user.has_perm("labeling.add_datasetsnapshot")


# --- items and labels ---------------------------------------------------------------------


class ItemSerializer(serializers.ModelSerializer):
    """What a labeler needs: question, answer, context, who produced it."""

    class Meta:
        model = LabelingItem
        fields = [
            "id",
            "question",
            "answer",
            "context",
            "provider",
            "model_name",
            "adapter",
            "conversation",
            "reason",
            "created_at",
        ]
        read_only_fields = fields


class ItemConsolidatedSerializer(ItemSerializer):
    """For ML engineers: consolidation and the AI judge too."""

    class Meta(ItemSerializer.Meta):
        fields = [
            *ItemSerializer.Meta.fields,
            "batch",
            "status",
            "median_score",
            "score_spread",
            "adjudicated_score",
            "judge_score",
            "judge_comment",
            "judge_method",
            "judge_review",
            "judge_validated_score",
        ]
        read_only_fields = fields


class ViewsItems(permissions.BasePermission):
    message = "Only reviewers and ML engineers see labeling items."

    def has_permission(self, request, view):  # type: ignore[no-untyped-def]
        user = request.user
        return bool(user.is_authenticated and user.has_perm("labeling.view_labelingitem"))


class ItemViewSet(viewsets.ReadOnlyModelViewSet):
    """Labeling items. Reviewers see only the items assigned to them."""

    pagination_class = ById
    permission_classes = [permissions.IsAuthenticated, ViewsItems]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.items_visible_to(user=self.request.user).order_by("-id")

    def get_serializer_class(self):  # type: ignore[no-untyped-def]
        if selectors.user_sees_all_labels(self.request.user):
            return ItemConsolidatedSerializer
        return ItemSerializer


class LabelSerializer(serializers.ModelSerializer):
    item = ItemSerializer(read_only=True)
    reviewer: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )

    class Meta:
        model = Label
        fields = [
            "id",
            "item",
            "reviewer",
            "worker_id",
            "status",
            "score",
            "better_answer",
            "comment",
            "assigned_at",
            "submitted_at",
        ]
        read_only_fields = fields


class LabelSubmitSerializer(serializers.Serializer):
    score = serializers.IntegerField(min_value=1, max_value=5)
    better_answer = serializers.CharField(required=False, allow_blank=True, default="")
    comment = serializers.CharField(required=False, allow_blank=True, default="")


class JudgeAfterLabelSerializer(LabelSerializer):
    """A submitted label, with the AI score now revealed to its reviewer."""

    judge_score = serializers.IntegerField(source="item.judge_score", read_only=True)
    judge_method = serializers.CharField(source="item.judge_method", read_only=True)

    class Meta(LabelSerializer.Meta):
        fields = [*LabelSerializer.Meta.fields, "judge_score", "judge_method"]
        read_only_fields = fields


class AssignmentViewSet(viewsets.ReadOnlyModelViewSet):
    """Labels visible to the caller: a reviewer's own assignments only (``?status=``)."""

    serializer_class = LabelSerializer
    pagination_class = ByAssignment
    permission_classes = [permissions.IsAuthenticated, CanLabel]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        labels = selectors.labels_visible_to(user=self.request.user)
        wanted = self.request.query_params.get("status")
        if wanted in Label.Status.values:
            labels = labels.filter(status=wanted)
        return labels.order_by("assigned_at", "id")

    @extend_schema(
        parameters=[OpenApiParameter("status", str, enum=Label.Status.values, required=False)]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(request=LabelSubmitSerializer, responses=JudgeAfterLabelSerializer)
    @action(detail=True, methods=["post"])
    def submit(self, request: Request, pk: str | None = None) -> Response:
        """Submit the label for one of your assignments (once)."""
        label = self.get_object()
        data = LabelSubmitSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        label = services.label_submit(
            label=label,
            reviewer=request.user,  # type: ignore[arg-type]
            source=Label.Source.API,
            **data.validated_data,
        )
        label = Label.objects.select_related("item", "reviewer").get(pk=label.pk)
        return Response(JudgeAfterLabelSerializer(label).data)


# --- snapshots ------------------------------------------------------------------------------


class SnapshotSerializer(serializers.ModelSerializer):
    created_by: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )

    class Meta:
        model = DatasetSnapshot
        fields = [
            "id",
            "name",
            "version",
            "description",
            "created_by",
            "created_at",
            "filters",
            "redacted",
            "row_counts",
        ]
        read_only_fields = fields


class SnapshotCreateSerializer(serializers.Serializer):
    name = serializers.SlugField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    batch_ids = serializers.ListField(child=serializers.IntegerField(), required=False)
    since = serializers.DateField(required=False)
    until = serializers.DateField(required=False)
    test_share = serializers.FloatField(min_value=0.0, max_value=0.9, default=0.1)
    redact = serializers.BooleanField(default=False)
    include_takeovers = serializers.BooleanField(default=True)


class SnapshotViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Frozen datasets. POST freezes the consolidated labels into a new version."""

    queryset = DatasetSnapshot.objects.select_related("created_by").order_by("-id")
    serializer_class = SnapshotSerializer
    pagination_class = ById
    permission_classes = [permissions.IsAuthenticated, ManagesSnapshots]

    @extend_schema(request=SnapshotCreateSerializer, responses={201: SnapshotSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = SnapshotCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        filters: dict[str, Any] = {}
        if values.get("batch_ids"):
            filters["batch_ids"] = values["batch_ids"]
        for key in ("since", "until"):
            if values.get(key):
                filters[key] = values[key].isoformat()
        snapshot = services.snapshot_create_from_labels(
            name=values["name"],
            created_by=request.user,  # type: ignore[arg-type]
            filters=filters,
            test_share=values["test_share"],
            redact=values["redact"],
            include_takeovers=values["include_takeovers"],
            description=values["description"],
        )
        return Response(SnapshotSerializer(snapshot).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[
            OpenApiParameter("kind", str, enum=SnapshotRow.Kind.values, required=True),
            OpenApiParameter("split", str, enum=["train", "test"], required=False),
            OpenApiParameter("redact", bool, required=False),
        ],
        responses={(200, "application/jsonl"): JSONL_RESPONSE},
    )
    @action(detail=True, methods=["get"], url_path="rows")
    def rows(self, request: Request, pk: str | None = None) -> Any:
        """The snapshot's rows of one kind as streamed JSON Lines."""
        snapshot = self.get_object()
        kind = request.query_params.get("kind", "")
        if kind not in SnapshotRow.Kind.values:
            raise ValidationError({"kind": [f"One of {', '.join(SnapshotRow.Kind.values)}."]})
        split = request.query_params.get("split") or None
        redact = request.query_params.get("redact") in ("1", "true")
        return jsonl_response(
            snapshot_export_lines(snapshot=snapshot, kind=kind, split=split, redact=redact),
            f"{snapshot.name}-v{snapshot.version}-{kind}.jsonl",
        )


# --- Ground Truth manifests, sampling, agreement --------------------------------------------


class OutputManifestView(APIView):
    permission_classes = [permissions.IsAuthenticated, SeesAllLabels]

    @extend_schema(responses={(200, "application/jsonl"): JSONL_RESPONSE})
    def get(self, request: Request) -> Any:
        """Consolidated labels as a Ground Truth output manifest (one line per worker)."""
        return jsonl_response(output_manifest_lines(), "output.manifest")


class InputManifestView(APIView):
    permission_classes = [permissions.IsAuthenticated, SeesAllLabels]

    @extend_schema(responses={(200, "application/jsonl"): JSONL_RESPONSE})
    def get(self, request: Request) -> Any:
        """Every item as a Ground Truth input manifest line {"source": "question,answer"}."""
        return jsonl_response(input_manifest_lines(), "input.manifest")


class ManifestImportSerializer(serializers.Serializer):
    manifest = serializers.FileField()
    label_attribute = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=200
    )

    def validate_manifest(self, value: Any) -> Any:
        return manifest_size_check(value)


class ImportResultSerializer(serializers.Serializer):
    items_created = serializers.IntegerField()
    labels_created = serializers.IntegerField()
    labels_updated = serializers.IntegerField()
    consolidated = serializers.IntegerField()


class ManifestImportView(APIView):
    permission_classes = [permissions.IsAuthenticated, SeesAllLabels]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": ManifestImportSerializer},
        responses={200: ImportResultSerializer, 400: ErrorSerializer},
    )
    def post(self, request: Request) -> Response:
        """Import a Ground Truth output manifest: all lines or none. A refused manifest
        answers 400 with the first problems by line under ``fields.manifest`` and their
        count in ``message``."""
        data = ManifestImportSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = output_manifest_import(
            lines=data.validated_data["manifest"],
            attribute=data.validated_data["label_attribute"] or None,
        )
        return Response(ImportResultSerializer(result).data)


class SamplingRunSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    by_reason = serializers.DictField(child=serializers.IntegerField())
    capped = serializers.BooleanField()


class RunsSampling(permissions.BasePermission):
    message = "Only ML engineers run sampling policies."

    def has_permission(self, request, view):  # type: ignore[no-untyped-def]
        return bool(
            request.user.is_authenticated and request.user.has_perm("labeling.run_sampling")
        )


class SamplingPolicyRunView(APIView):
    permission_classes = [permissions.IsAuthenticated, RunsSampling]

    @extend_schema(request=None, responses=SamplingRunSerializer)
    def post(self, request: Request, pk: int) -> Response:
        """Run one sampling policy now."""
        policy = get_object_or_404(SamplingPolicy, pk=pk)
        result = services.sampling_policy_run(policy=policy)
        return Response(SamplingRunSerializer(result).data)


class AgreementSerializer(serializers.Serializer):
    alpha = serializers.FloatField(allow_null=True)
    items = serializers.IntegerField()


class ReviewerAgreementSerializer(AgreementSerializer):
    reviewer = serializers.CharField()


class JudgeAgreementSerializer(AgreementSerializer):
    threshold = serializers.FloatField()
    min_items = serializers.IntegerField()
    usable = serializers.BooleanField()


class AgreementReportSerializer(serializers.Serializer):
    batches = serializers.ListField(child=serializers.DictField())
    reviewers = ReviewerAgreementSerializer(many=True)
    judge = JudgeAgreementSerializer()


class AgreementView(APIView):
    permission_classes = [permissions.IsAuthenticated, SeesAllLabels]

    @extend_schema(responses=AgreementReportSerializer)
    def get(self, request: Request) -> Response:
        """Krippendorff's alpha per batch and per reviewer, and judge-human agreement."""
        from labeling.models import LabelingBatch

        batches = [
            {"id": pk, "name": name, "alpha": alpha, "items": items}
            for pk, name, alpha, items in LabelingBatch.objects.order_by("-created_at").values_list(
                "pk", "name", "agreement_alpha", "agreement_items"
            )[:100]
        ]
        report = {
            "batches": batches,
            "reviewers": selectors.reviewer_agreements(),
            "judge": selectors.judge_human_agreement(),
        }
        return Response(AgreementReportSerializer(report).data)
