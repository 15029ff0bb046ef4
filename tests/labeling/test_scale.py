"""The queue, the admin changelists and the API lists cost the same number of queries
with 5 rows as with 50."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from labeling import services
from labeling.models import LabelingBatch, LabelingItem
from tests.labeling.conftest import answered, label_all, make_item

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_judge")]


def _items(count: int, *, labeled: bool = True, start: int = 0) -> None:
    batch, _ = LabelingBatch.objects.get_or_create(name="scale")
    for i in range(start, start + count):
        item = make_item(answered(f"Question {i}?", f"Answer {i}."))
        LabelingItem.objects.filter(pk=item.pk).update(batch=batch, judge_score=1 + i % 5)
        if labeled:
            label_all(item, [1 + i % 5, 1 + i % 5, 1 + (i + 1) % 5])


def _queries(client, url, params=None) -> int:
    client.get(url, params or {})  # warm per-user caches (permissions) first
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params or {})
        if getattr(response, "streaming", False):
            b"".join(response.streaming_content)
    assert response.status_code == 200, url
    return len(captured)


EXPERT_PAGES = [
    ("admin:labeling_labelingitem_changelist", None),
    ("admin:labeling_label_changelist", None),
    ("admin:labeling_labelingitemjudgeview_changelist", None),
    ("admin:labeling_adjudicationitem_changelist", None),
    ("admin:labeling_labelingbatch_changelist", None),
    ("admin:labeling_datasetsnapshot_changelist", None),
]


@pytest.mark.parametrize(("name", "params"), EXPERT_PAGES)
def test_expert_changelists_run_a_constant_number_of_queries(
    client, reviewers, ml_engineer, name, params, django_assert_num_queries
):
    client.force_login(ml_engineer)
    _items(5)
    services.snapshot_create_from_labels(name="a")
    url = reverse(name)
    small = _queries(client, url, params)

    _items(45, start=5)
    services.snapshot_create_from_labels(name="b")

    with django_assert_num_queries(small):
        client.get(url, params or {})


def test_reviewer_queue_and_own_changelist_run_a_constant_number_of_queries(
    client, reviewers, django_assert_num_queries
):
    client.force_login(reviewers[0])
    _items(5, labeled=False)
    queue = reverse("admin:labeling_label_queue")
    changelist = reverse("admin:labeling_label_changelist")
    small_queue = _queries(client, queue)
    small_list = _queries(client, changelist)

    _items(45, labeled=False, start=5)

    with django_assert_num_queries(small_queue):
        client.get(queue)
    with django_assert_num_queries(small_list):
        client.get(changelist)


@pytest.mark.parametrize(
    "name", ["api:labeling-item-list", "api:labeling-assignment-list", "api:labeling-snapshot-list"]
)
def test_api_lists_run_a_constant_number_of_queries(
    api_client, reviewers, ml_engineer, name, django_assert_num_queries
):
    api_client.force_authenticate(ml_engineer)
    _items(5)
    services.snapshot_create_from_labels(name="a")
    small = _queries(api_client, reverse(name))

    _items(45, start=5)
    services.snapshot_create_from_labels(name="b")

    with django_assert_num_queries(small):
        api_client.get(reverse(name))
