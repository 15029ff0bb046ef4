"""Forms of the reviewer console and the snapshot/manifest admin pages."""

from __future__ import annotations

from typing import Any

from django import forms

from labeling.models import LabelingBatch

RELEVANCE_CHOICES = [
    (5, "5 - Highly relevant"),
    (4, "4 - Relevant"),
    (3, "3 - Moderately relevant"),
    (2, "2 - Slightly relevant"),
    (1, "1 - Not relevant"),
]


class LabelForm(forms.Form):
    score = forms.TypedChoiceField(
        label="Relevance",
        choices=RELEVANCE_CHOICES,
        coerce=int,
        widget=forms.RadioSelect,
        error_messages={"required": "Choose a relevance from 1 to 5 (keys 1-5)."},
    )
    better_answer = forms.CharField(
        label="Better answer (optional)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
    )
    comment = forms.CharField(
        label="Comment (optional)", required=False, widget=forms.Textarea(attrs={"rows": 2})
    )


class SnapshotFreezeForm(forms.Form):
    name = forms.SlugField(max_length=100, initial="support-feedback")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    batches = forms.ModelMultipleChoiceField(
        queryset=LabelingBatch.objects.order_by("-created_at"),
        required=False,
        help_text="Leave empty for every batch.",
    )
    since = forms.DateField(required=False, help_text="Consolidated on or after (YYYY-MM-DD).")
    until = forms.DateField(required=False, help_text="Consolidated on or before.")
    test_share = forms.FloatField(min_value=0.0, max_value=0.9, initial=0.1)
    redact = forms.BooleanField(
        required=False, initial=True, help_text="Replace e-mails, phone, card and IBAN numbers."
    )
    include_takeovers = forms.BooleanField(required=False, initial=True)

    def snapshot_filters(self) -> dict:
        data = self.cleaned_data
        filters: dict = {}
        if data.get("batches"):
            filters["batch_ids"] = sorted(batch.pk for batch in data["batches"])
        if data.get("since"):
            filters["since"] = data["since"].isoformat()
        if data.get("until"):
            filters["until"] = data["until"].isoformat()
        return filters


class ManifestImportForm(forms.Form):
    manifest = forms.FileField(help_text="A Ground Truth output manifest (JSON Lines).")
    label_attribute = forms.CharField(
        required=False, max_length=200, help_text="Leave empty to detect it from the first line."
    )

    def clean_manifest(self) -> Any:
        from labeling.groundtruth import ManifestError, manifest_size_check

        try:
            return manifest_size_check(self.cleaned_data["manifest"])
        except ManifestError as exc:
            raise forms.ValidationError(exc.errors[0]) from exc
