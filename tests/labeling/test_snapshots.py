"""Dataset snapshots from labels: rows, pairs, KTO, splits, redaction, immutability."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from labeling import selectors, services
from labeling.models import DatasetSnapshot, SnapshotRow
from tests.labeling.conftest import answered, label_all, make_item

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_judge")]


@pytest.fixture
def labeled(reviewers):
    """Two answers to one question rated differently, one with a better answer."""
    good = make_item(answered("How do I reset the Hub?", "Hold the button for 10 seconds."))
    label_all(good, [5, 4, 5])
    bad = make_item(answered("How do I reset the hub?", "Call jo@example.com or +49 30 1234567."))
    label_all(bad, [1, 2, 1], better="Hold the reset button for 10 seconds.")
    return good, bad


def test_snapshot_holds_scored_rows_pairs_and_kto_rows(labeled, ml_engineer):
    snapshot = services.snapshot_create_from_labels(
        name="support", created_by=ml_engineer, test_share=0.0
    )

    scored = list(selectors.snapshot_rows(snapshot=snapshot, kind="scored"))
    pairs = list(selectors.snapshot_rows(snapshot=snapshot, kind="pair"))
    kto = list(selectors.snapshot_rows(snapshot=snapshot, kind="kto"))
    assert sorted(row["score"] for row in scored) == [1.0, 5.0]
    assert {(row["chosen"], row["rejected"]) for row in pairs} == {
        # the reviewer's better answer vs. the original
        ("Hold the reset button for 10 seconds.", "Call jo@example.com or +49 30 1234567."),
        # the higher- vs. the lower-rated answer to the same question
        ("Hold the button for 10 seconds.", "Call jo@example.com or +49 30 1234567."),
    }
    assert all(set(row) == {"prompt", "chosen", "rejected", "split"} for row in pairs)
    labels = {(row["completion"], row["label"]) for row in kto}
    assert ("Hold the button for 10 seconds.", True) in labels
    assert ("Call jo@example.com or +49 30 1234567.", False) in labels
    assert ("Hold the reset button for 10 seconds.", True) in labels
    assert snapshot.version == 1 and snapshot.created_by == ml_engineer
    assert snapshot.row_counts == {"scored": 2, "pair": 2, "kto": 3}
    assert snapshot.filters["test_share"] == 0.0


def test_takeover_pairs_join_the_snapshot(labeled, monkeypatch):
    from labeling.services import snapshots

    pair = {
        "prompt": "Where is my refund?",
        "chosen": "I issued it today; it arrives in 3 days.",
        "rejected": "I cannot help with refunds.",
        "conversation_id": "c1",
    }
    monkeypatch.setattr(snapshots, "_takeover_pairs", lambda: iter([pair]))

    snapshot = services.snapshot_create_from_labels(name="support")

    pairs = list(selectors.snapshot_rows(snapshot=snapshot, kind="pair"))
    assert {k: pairs[-1][k] for k in ("prompt", "chosen", "rejected")} == {
        k: pair[k] for k in ("prompt", "chosen", "rejected")
    }
    assert snapshot.filters["pair_origins"]["takeover"] == 1


def test_held_out_split_keeps_one_question_on_one_side(reviewers):
    for i in range(40):
        label_all(make_item(answered(f"Question number {i}?", f"Answer {i}.")), [4, 4, 5])

    snapshot = services.snapshot_create_from_labels(name="support", test_share=0.3)

    test_rows = list(selectors.snapshot_rows(snapshot=snapshot, kind="scored", split="test"))
    train_rows = list(selectors.snapshot_rows(snapshot=snapshot, kind="scored", split="train"))
    assert 4 <= len(test_rows) <= 22 and len(test_rows) + len(train_rows) == 40
    test_prompts = {row["prompt"] for row in test_rows}
    kto_test = {
        row["prompt"]
        for row in selectors.snapshot_rows(snapshot=snapshot, kind="kto")
        if row["split"] == "test"
    }
    assert kto_test == test_prompts


def test_redaction_removes_emails_and_phone_numbers(labeled):
    snapshot = services.snapshot_create_from_labels(name="support", redact=True)

    text = json.dumps([row.data for row in SnapshotRow.objects.filter(snapshot=snapshot)])
    assert "jo@example.com" not in text and "1234567" not in text
    assert "[EMAIL]" in text and "[PHONE]" in text
    assert snapshot.redacted


def test_versions_increase_and_a_snapshot_is_immutable(labeled, client, ml_engineer):
    first = services.snapshot_create_from_labels(name="support")
    second = services.snapshot_create_from_labels(name="support")
    assert (first.version, second.version) == (1, 2)

    with pytest.raises(services.SnapshotImmutableError):
        services.snapshot_update(snapshot=first, description="changed")

    client.force_login(ml_engineer)
    change_url = reverse("admin:labeling_datasetsnapshot_change", args=[first.pk])
    page = client.get(change_url)
    assert page.status_code == 200
    assert b'name="description"' not in page.content  # read-only
    client.post(change_url, {"name": "hacked", "version": 9, "description": "x"})
    first.refresh_from_db()
    assert (first.name, first.version, first.description) == ("support", 1, "")
    row = SnapshotRow.objects.filter(snapshot=first).first()
    client.post(reverse("admin:labeling_snapshotrow_change", args=[row.pk]), {"data": "{}"})
    row.refresh_from_db()
    assert row.data != {}
    delete = client.post(reverse("admin:labeling_datasetsnapshot_delete", args=[first.pk]))
    assert delete.status_code == 403
    assert DatasetSnapshot.objects.filter(pk=first.pk).exists()


def test_admin_freeze_page_and_streamed_export(labeled, client, ml_engineer):
    client.force_login(ml_engineer)

    response = client.post(
        reverse("admin:labeling_snapshot_freeze"),
        {"name": "from-admin", "test_share": "0.0", "include_takeovers": "on"},
    )

    snapshot = DatasetSnapshot.objects.get(name="from-admin")
    assert response.status_code == 302
    export = client.get(
        reverse("admin:labeling_snapshot_export", args=[snapshot.pk]), {"kind": "pair"}
    )
    assert export.streaming
    lines = [json.loads(line) for line in b"".join(export.streaming_content).splitlines()]
    assert len(lines) == 2 and set(lines[0]) == {"prompt", "chosen", "rejected", "split"}
    redacted = client.get(
        reverse("admin:labeling_snapshot_export", args=[snapshot.pk]),
        {"kind": "pair", "redact": "1"},
    )
    assert b"jo@example.com" not in b"".join(redacted.streaming_content)


def test_real_takeover_pairs_from_escalation_join_the_snapshot(reviewers):
    from chat.models import Message
    from chat.services import message_append
    from tests.factories import ConversationFactory

    conversation = ConversationFactory()
    asked, _ = message_append(
        conversation=conversation, role="customer", text="My radiator valve leaks!", broadcast=False
    )
    message_append(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        text="Try restarting the app.",
        visibility=Message.Visibility.WITHHELD,
        reply_to=asked,
        broadcast=False,
    )
    message_append(
        conversation=conversation,
        role=Message.Role.AGENT,
        text="Close the valve and I'll send a replacement today.",
        broadcast=False,
    )

    snapshot = services.snapshot_create_from_labels(name="takeovers", test_share=0.0)

    pairs = list(selectors.snapshot_rows(snapshot=snapshot, kind="pair"))
    assert {k: pairs[0][k] for k in ("prompt", "chosen", "rejected")} == {
        "prompt": "My radiator valve leaks!",
        "chosen": "Close the valve and I'll send a replacement today.",
        "rejected": "Try restarting the app.",
    }
