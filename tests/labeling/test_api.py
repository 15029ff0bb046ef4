"""The labeling API: items, assignments and submission, snapshots, manifests, schema."""

from __future__ import annotations

import io
import json

import pytest
from django.urls import reverse

from labeling.models import Label, LabelingItem, SamplingPolicy
from tests.labeling.conftest import answered, label_all, make_item

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_judge")]


def test_external_workforce_lists_and_submits_its_own_assignments(api_client, reviewers):
    item = make_item(answered("Does it work offline?", "Yes, schedules keep running."))
    LabelingItem.objects.filter(pk=item.pk).update(judge_score=4, judge_method="heuristic")
    api_client.force_authenticate(reviewers[0])

    listing = api_client.get(reverse("api:labeling-assignment-list"), {"status": "assigned"})
    assert listing.status_code == 200
    [assignment] = listing.json()["results"]
    assert assignment["item"]["question"] == "Does it work offline?"
    assert "judge_score" not in json.dumps(assignment)  # not before submitting

    submitted = api_client.post(
        reverse("api:labeling-assignment-submit", args=[assignment["id"]]),
        {"score": 5, "comment": "correct"},
        format="json",
    )

    assert submitted.status_code == 200
    assert submitted.json()["judge_score"] == 4
    label = Label.objects.get(pk=assignment["id"])
    assert (label.status, label.score, label.source) == ("submitted", 5, "api")
    again = api_client.post(
        reverse("api:labeling-assignment-submit", args=[assignment["id"]]),
        {"score": 1},
        format="json",
    )
    assert again.status_code == 409


def test_api_never_shows_another_reviewers_label(api_client, reviewers):
    item = make_item()
    theirs = item.labels.get(reviewer=reviewers[1])
    api_client.force_authenticate(reviewers[0])

    listing = api_client.get(reverse("api:labeling-assignment-list"))
    assert [row["reviewer"] for row in listing.json()["results"]] == ["rev_a"]
    assert (
        api_client.get(reverse("api:labeling-assignment-detail", args=[theirs.pk])).status_code
        == 404
    )
    submit = api_client.post(
        reverse("api:labeling-assignment-submit", args=[theirs.pk]), {"score": 5}, format="json"
    )
    assert submit.status_code == 404
    item_view = api_client.get(reverse("api:labeling-item-detail", args=[item.pk])).json()
    assert "median_score" not in item_view


def test_invalid_score_is_rejected(api_client, reviewers):
    label = make_item().labels.get(reviewer=reviewers[0])
    api_client.force_authenticate(reviewers[0])

    response = api_client.post(
        reverse("api:labeling-assignment-submit", args=[label.pk]), {"score": 9}, format="json"
    )

    assert response.status_code == 400
    label.refresh_from_db()
    assert label.status == "assigned"


def test_customers_cannot_label(api_client, customer):
    api_client.force_authenticate(customer)
    assert api_client.get(reverse("api:labeling-assignment-list")).status_code == 403


def test_snapshot_create_list_and_rows_export(api_client, reviewers, ml_engineer):
    label_all(make_item(answered("Q?", "A good answer.")), [5, 5, 4])
    label_all(make_item(answered("Q?", "A bad answer.")), [1, 1, 2])
    api_client.force_authenticate(ml_engineer)

    created = api_client.post(
        reverse("api:labeling-snapshot-list"),
        {"name": "api-set", "test_share": 0.0},
        format="json",
    )

    assert created.status_code == 201
    body = created.json()
    assert body["version"] == 1 and body["row_counts"]["pair"] == 1
    rows = api_client.get(
        reverse("api:labeling-snapshot-rows", args=[body["id"]]), {"kind": "pair"}
    )
    assert rows.streaming
    [pair] = [json.loads(line) for line in b"".join(rows.streaming_content).splitlines()]
    assert (pair["chosen"], pair["rejected"]) == ("A good answer.", "A bad answer.")
    api_client.force_authenticate(reviewers[0])
    forbidden = api_client.post(reverse("api:labeling-snapshot-list"), {"name": "x"}, format="json")
    assert forbidden.status_code == 403


def test_manifest_export_and_import_through_the_api(api_client, reviewers, ml_engineer):
    label_all(make_item(answered("Q1?", "A1")), [4, 4, 5])
    api_client.force_authenticate(ml_engineer)

    exported = api_client.get(reverse("api:labeling-output-manifest"))
    body = b"".join(exported.streaming_content)
    assert len(body.splitlines()) == 3
    LabelingItem.objects.all().delete()

    upload = io.BytesIO(body)
    upload.name = "output.manifest"
    imported = api_client.post(
        reverse("api:labeling-manifest-import"), {"manifest": upload}, format="multipart"
    )

    assert imported.status_code == 200
    assert imported.json()["labels_created"] == 3
    bad = io.BytesIO(b'{"source": "x"}\n')
    bad.name = "bad.manifest"
    rejected = api_client.post(
        reverse("api:labeling-manifest-import"), {"manifest": bad}, format="multipart"
    )
    assert rejected.status_code == 400
    assert rejected.json()["fields"]["manifest"][0].startswith("line 1:")


def test_sampling_run_on_demand_and_agreement_report(api_client, reviewers, ml_engineer):
    answered(escalated=True)
    policy = SamplingPolicy.objects.create(name="api", random_share=0)
    api_client.force_authenticate(ml_engineer)

    run = api_client.post(reverse("api:labeling-sampling-run", args=[policy.pk]))

    assert run.status_code == 200 and run.json()["created"] == 1
    report = api_client.get(reverse("api:labeling-agreement")).json()
    assert set(report) == {"batches", "reviewers", "judge"}
    assert report["judge"]["usable"] is False


def test_openapi_schema_lists_the_labeling_endpoints(api_client, ml_engineer):
    api_client.force_authenticate(ml_engineer)

    schema = api_client.get(reverse("schema"), {"format": "json"}).json()

    paths = set(schema["paths"])
    for expected in (
        "/api/labeling/items/",
        "/api/labeling/assignments/{id}/submit/",
        "/api/labeling/snapshots/",
        "/api/labeling/snapshots/{id}/rows/",
        "/api/labeling/exports/output-manifest.jsonl",
        "/api/labeling/exports/input-manifest.jsonl",
        "/api/labeling/imports/output-manifest/",
        "/api/labeling/agreement/",
    ):
        assert expected in paths


def test_judge_usable_as_reward_needs_agreement_above_the_threshold(reviewers, settings):
    from labeling.judge import judge_usable_as_reward
    from labeling.selectors import judge_human_agreement

    settings.LABELING_JUDGE_MIN_AGREEMENT = 0.6
    for i, (humans, ai) in enumerate(
        [([5, 5, 5], 5), ([1, 1, 1], 1), ([3, 3, 3], 3), ([4, 4, 4], 4), ([2, 2, 2], 2)] * 2
    ):
        item = make_item(answered(f"Q{i}?", f"A{i}"))
        LabelingItem.objects.filter(pk=item.pk).update(judge_score=ai)
        label_all(item, humans)
    assert judge_human_agreement().alpha == pytest.approx(1.0)
    assert judge_usable_as_reward() is True

    LabelingItem.objects.update(judge_score=3)
    LabelingItem.objects.filter(median_score__gte=4).update(judge_score=1)
    figure = judge_human_agreement()
    assert figure.alpha < 0.6 and not figure.usable
    assert judge_usable_as_reward() is False
