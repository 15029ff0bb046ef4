"""load_demo_labels: a realistic, idempotent demo set with pairs and KTO rows."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from labeling import selectors
from labeling.demo import OPEN_FOR_DEMO_REVIEWER
from labeling.models import DatasetSnapshot, Label, LabelingItem

pytestmark = pytest.mark.django_db


def test_load_demo_labels_builds_labels_and_a_training_snapshot_once(capsys):
    call_command("load_demo_labels")
    first = capsys.readouterr().out

    snapshot = DatasetSnapshot.objects.get(name="demo-support")
    assert snapshot.row_counts["pair"] >= 20 and snapshot.row_counts["kto"] >= 40
    pairs = list(selectors.snapshot_rows(snapshot=snapshot, kind="pair"))
    assert all(set(row) >= {"prompt", "chosen", "rejected"} for row in pairs)
    kto = list(selectors.snapshot_rows(snapshot=snapshot, kind="kto"))
    assert {row["label"] for row in kto} == {True, False}
    assert any(row["split"] == "test" for row in kto)
    assert LabelingItem.objects.filter(status="adjudication").exists()
    assert (
        LabelingItem.objects.filter(judge_score__isnull=False).count()
        == LabelingItem.objects.count()
    )
    assert (
        Label.objects.filter(reviewer__username="reviewer", status="assigned").count()
        == OPEN_FOR_DEMO_REVIEWER
    )
    assert "snapshot demo-support v1 (created)" in first
    counts = (LabelingItem.objects.count(), Label.objects.count(), DatasetSnapshot.objects.count())

    call_command("load_demo_labels")

    assert (
        "0 conversations, 0 items and 0 labels created, 0 items judged" in capsys.readouterr().out
    )
    assert (
        LabelingItem.objects.count(),
        Label.objects.count(),
        DatasetSnapshot.objects.count(),
    ) == counts
