"""Labels on the assistant's answers and the dataset snapshots frozen from them."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class DatasetSnapshot(models.Model):
    """An immutable, versioned training set frozen from labels.

    Rows never change after the snapshot is created (see ``labeling.services``); training
    runs read them through ``labeling.selectors.snapshot_rows``.
    """

    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField()
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The filter that selected the labels, kept for provenance.
    filters = models.JSONField(default=dict, blank=True)
    redacted = models.BooleanField(default=False)
    # {"scored": n, "pair": n, "kto": n}
    row_counts = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="snapshot_unique_version")
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class SnapshotRow(models.Model):
    class Kind(models.TextChoices):
        SCORED = "scored", "Prompt / response / score"
        PAIR = "pair", "Preference pair (prompt, chosen, rejected)"
        KTO = "kto", "Desirable / undesirable (prompt, completion, label)"

    snapshot = models.ForeignKey(DatasetSnapshot, on_delete=models.CASCADE, related_name="rows")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    position = models.PositiveIntegerField()
    # scored: {prompt, response, score}; pair: {prompt, chosen, rejected};
    # kto: {prompt, completion, label: bool}. Every kind may add {"split": "train"|"test"}.
    data = models.JSONField()

    class Meta:
        ordering = ["snapshot", "kind", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["snapshot", "kind", "position"], name="snapshot_row_unique_position"
            )
        ]

    def __str__(self) -> str:
        return f"{self.snapshot} {self.kind} #{self.position}"
