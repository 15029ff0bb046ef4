"""Submitting labels, blindness between reviewers, consolidation, agreement, adjudication."""

from __future__ import annotations

import pytest

from labeling import selectors, services
from labeling.models import Label, LabelingBatch, LabelingItem
from tests.labeling.conftest import answered, label_all, make_item

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_judge")]


def test_each_item_gets_three_distinct_reviewers(reviewers):
    item = make_item()

    assert sorted(item.labels.values_list("reviewer__username", flat=True)) == [
        "rev_a",
        "rev_b",
        "rev_c",
    ]
    assert set(item.labels.values_list("status", flat=True)) == {Label.Status.ASSIGNED}


def test_a_reviewer_cannot_submit_someone_elses_assignment(reviewers):
    item = make_item()
    theirs = item.labels.get(reviewer=reviewers[1])

    with pytest.raises(services.LabelingError):
        services.label_submit(label=theirs, reviewer=reviewers[0], score=5)

    theirs.refresh_from_db()
    assert theirs.status == Label.Status.ASSIGNED and theirs.score is None


def test_a_label_is_submitted_once(reviewers):
    item = make_item()
    mine = item.labels.get(reviewer=reviewers[0])
    services.label_submit(label=mine, reviewer=reviewers[0], score=4)

    with pytest.raises(services.LabelingError):
        services.label_submit(label=mine, reviewer=reviewers[0], score=1)
    mine.refresh_from_db()
    assert mine.score == 4


def test_reviewers_only_ever_see_their_own_labels(reviewers, ml_engineer):
    item = make_item()
    label_all(item, [5, 4, 5])

    own = selectors.labels_visible_to(user=reviewers[0])
    assert list(own.values_list("reviewer__username", flat=True)) == ["rev_a"]
    assert selectors.labels_visible_to(user=ml_engineer).count() == 3
    assert list(selectors.reviewer_queue(reviewer=reviewers[0])) == []


def test_consolidation_waits_for_every_label_then_stores_median_and_spread(reviewers):
    item = make_item()
    first, second, third = item.labels.order_by("reviewer_id")
    services.label_submit(label=first, reviewer=first.reviewer, score=4)
    services.label_submit(label=second, reviewer=second.reviewer, score=5)
    item.refresh_from_db()
    assert item.status == LabelingItem.Status.LABELING and item.median_score is None

    services.label_submit(label=third, reviewer=third.reviewer, score=4)

    item.refresh_from_db()
    assert item.status == LabelingItem.Status.CONSOLIDATED
    assert (item.median_score, item.score_spread) == (4.0, 1)


def test_disagreeing_reviewers_send_the_item_to_adjudication(reviewers, ml_engineer):
    item = make_item()
    label_all(item, [1, 3, 5])
    item.refresh_from_db()
    assert item.status == LabelingItem.Status.ADJUDICATION
    assert item.score_spread == 4

    services.item_adjudicate(item=item, score=2, by=ml_engineer)

    item.refresh_from_db()
    assert item.status == LabelingItem.Status.CONSOLIDATED
    assert item.final_score == 2.0


def test_batch_agreement_is_high_when_reviewers_agree_and_low_when_they_do_not(reviewers):
    agreeing = LabelingBatch.objects.create(name="agree")
    random_ = LabelingBatch.objects.create(name="random")
    for i, scores in enumerate([[5, 5, 4], [1, 1, 2], [3, 3, 3], [4, 5, 5], [2, 1, 1]]):
        item = make_item(answered(f"Agree {i}?", f"A{i}"))
        item.batch = agreeing
        item.save(update_fields=["batch"])
        label_all(item, scores)
    for i, scores in enumerate([[5, 1, 3], [1, 5, 2], [3, 1, 5], [2, 5, 1], [4, 1, 2]]):
        item = make_item(answered(f"Random {i}?", f"B{i}"))
        item.batch = random_
        item.save(update_fields=["batch"])
        label_all(item, scores)

    agreeing.refresh_from_db()
    random_.refresh_from_db()
    assert agreeing.agreement_alpha is not None and agreeing.agreement_alpha > 0.8
    assert random_.agreement_alpha is not None and random_.agreement_alpha < 0.2
    assert agreeing.agreement_items == 5


def test_per_reviewer_agreement_flags_the_reviewer_out_of_line(reviewers):
    for i, truth in enumerate([1, 2, 3, 4, 5, 1, 5, 3]):
        item = make_item(answered(f"Q {i}?", f"A {i}"))
        label_all(item, [truth, truth, 6 - truth])

    figures = {row.reviewer: row for row in selectors.reviewer_agreements()}

    assert figures["rev_a"].alpha > figures["rev_c"].alpha
    assert figures["rev_c"].alpha < -0.5
    assert figures["rev_a"].items == 8


def test_ordinal_alpha_is_undefined_without_variation():
    assert selectors.ordinal_alpha([{"a": 3, "b": 3}, {"a": 3, "b": 3}]).alpha is None


def test_items_short_of_reviewers_are_topped_up_when_reviewers_join(make_user):
    from config import roles

    item = make_item()
    assert item.labels.count() == 0  # nobody in the reviewers group yet
    for name in ("late_a", "late_b", "late_c", "late_d"):
        make_user(roles.REVIEWERS, username=name)

    added = services.items_top_up_assignments()

    assert added == 3
    assert item.labels.count() == 3
    assert services.items_top_up_assignments() == 0
