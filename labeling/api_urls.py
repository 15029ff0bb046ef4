from django.urls import path
from rest_framework.routers import SimpleRouter

from labeling import api

router = SimpleRouter()
router.register("labeling/items", api.ItemViewSet, basename="labeling-item")
router.register("labeling/assignments", api.AssignmentViewSet, basename="labeling-assignment")
router.register("labeling/snapshots", api.SnapshotViewSet, basename="labeling-snapshot")

urlpatterns = [
    path(
        "labeling/exports/output-manifest.jsonl",
        api.OutputManifestView.as_view(),
        name="labeling-output-manifest",
    ),
    path(
        "labeling/exports/input-manifest.jsonl",
        api.InputManifestView.as_view(),
        name="labeling-input-manifest",
    ),
    path(
        "labeling/imports/output-manifest/",
        api.ManifestImportView.as_view(),
        name="labeling-manifest-import",
    ),
    path(
        "labeling/sampling-policies/<int:pk>/run/",
        api.SamplingPolicyRunView.as_view(),
        name="labeling-sampling-run",
    ),
    path("labeling/agreement/", api.AgreementView.as_view(), name="labeling-agreement"),
    *router.urls,
]
