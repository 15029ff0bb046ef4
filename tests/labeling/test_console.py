"""The reviewer console in the admin: queue, focused labeling page, blindness, AI score
after submitting, expert pages (judge validation, adjudication, agreement)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from labeling import services
from labeling.models import Label, LabelingItem
from tests.labeling.conftest import answered, label_all, make_item

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_judge")]


def _judged(item: LabelingItem, score: int = 2) -> LabelingItem:
    LabelingItem.objects.filter(pk=item.pk).update(
        judge_score=score, judge_method="heuristic:minilm-question", judge_comment="close"
    )
    item.refresh_from_db()
    return item


def test_queue_lists_only_my_open_assignments(client, reviewers):
    mine = make_item(answered("Where is my invoice?", "In Billing."))
    make_item(answered("How do I pair?", "Hold the button."))
    label_all(mine, [4, 4, 4])
    client.force_login(reviewers[0])

    page = client.get(reverse("admin:labeling_label_queue"))

    assert page.status_code == 200
    assert b"How do I pair?" in page.content
    assert b"Where is my invoice?" not in page.content
    assert b"1 open, 1 labeled by you." in page.content


def test_labeling_page_shows_question_answer_and_the_ground_truth_instructions(client, reviewers):
    item = make_item(answered("Does the hub work on 5GHz wifi?", "Only on 2.4 GHz."))
    label = item.labels.get(reviewer=reviewers[0])
    client.force_login(reviewers[0])

    page = client.get(reverse("admin:labeling_label_annotate", args=[label.pk]))

    html = page.content.decode()
    assert "Does the hub work on 5GHz wifi?" in html and "Only on 2.4 GHz." in html
    assert "How relevant is the below answer to the question" in html
    assert "Conversation Relevance Instructions" in html
    assert "How relevant is the below answer to the given question?" in html
    assert html.count('name="score"') == 5
    assert 'name="better_answer"' in html and 'name="comment"' in html
    assert "labeling/annotate.js" in html


def test_ai_score_is_hidden_until_the_reviewer_has_submitted(client, reviewers):
    item = _judged(make_item(), score=2)
    label = item.labels.get(reviewer=reviewers[0])
    client.force_login(reviewers[0])
    url = reverse("admin:labeling_label_annotate", args=[label.pk])

    before = client.get(url)
    assert b'data-testid="judge"' not in before.content

    response = client.post(url, {"score": 5, "better_answer": "", "comment": "fine"}, follow=True)

    assert b"The AI judge scored this answer 2" in response.content
    after = client.get(url)
    assert b'data-testid="judge"' in after.content


def test_save_and_next_opens_the_next_item_in_my_queue(client, reviewers):
    first = make_item(answered("First?", "One."))
    second = make_item(answered("Second?", "Two."))
    client.force_login(reviewers[0])
    label = first.labels.get(reviewer=reviewers[0])

    response = client.post(
        reverse("admin:labeling_label_annotate", args=[label.pk]),
        {"score": 3, "better_answer": "One, really.", "comment": ""},
        follow=True,
    )

    next_label = second.labels.get(reviewer=reviewers[0])
    assert response.redirect_chain[-1][0] == reverse(
        "admin:labeling_label_annotate", args=[next_label.pk]
    )
    label.refresh_from_db()
    assert (label.status, label.score, label.better_answer) == ("submitted", 3, "One, really.")


def test_missing_score_is_refused_and_nothing_saved(client, reviewers):
    item = make_item()
    label = item.labels.get(reviewer=reviewers[0])
    client.force_login(reviewers[0])

    page = client.post(reverse("admin:labeling_label_annotate", args=[label.pk]), {"comment": "x"})

    assert b"Choose a relevance" in page.content
    label.refresh_from_db()
    assert label.status == Label.Status.ASSIGNED


def test_a_reviewer_cannot_open_or_submit_another_reviewers_label(client, reviewers):
    item = make_item()
    theirs = item.labels.get(reviewer=reviewers[1])
    services.label_submit(label=theirs, reviewer=reviewers[1], score=1, comment="secret")
    client.force_login(reviewers[0])
    url = reverse("admin:labeling_label_annotate", args=[theirs.pk])

    assert client.get(url).status_code == 404
    assert client.post(url, {"score": 5}).status_code == 404
    changelist = client.get(reverse("admin:labeling_label_changelist"))
    assert changelist.status_code == 200
    assert b"secret" not in changelist.content
    assert changelist.context["cl"].result_count == 1  # their own assignment only
    # Items (with everyone's labels and the consolidation) are for experts only.
    assert client.get(reverse("admin:labeling_labelingitem_changelist")).status_code == 403
    assert client.get(reverse("admin:labeling_agreement")).status_code == 403


def test_experts_see_every_label_and_the_agreement_figures(client, reviewers, ml_engineer):
    for i, scores in enumerate([[5, 5, 4], [1, 1, 2], [3, 3, 3], [4, 4, 5]]):
        label_all(make_item(answered(f"Q{i}?", f"A{i}")), scores)
    from labeling.models import LabelingBatch

    batch = LabelingBatch.objects.create(name="week 1")
    LabelingItem.objects.update(batch=batch)
    services.batch_agreement_refresh(batch=batch)
    client.force_login(ml_engineer)

    page = client.get(reverse("admin:labeling_agreement"))

    assert page.status_code == 200
    assert b"week 1" in page.content
    batch.refresh_from_db()
    assert f"{batch.agreement_alpha:.2f}".encode() in page.content
    assert b"rev_a" in page.content
    assert client.get(reverse("admin:labeling_label_changelist")).context["cl"].result_count == 12


def test_experts_accept_and_override_ai_scores_in_bulk(client, reviewers, ml_engineer):
    agree = _judged(make_item(answered("Q1?", "A1")), score=5)
    disagree = _judged(make_item(answered("Q2?", "A2")), score=5)
    label_all(agree, [5, 5, 4])
    label_all(disagree, [1, 2, 1])
    client.force_login(ml_engineer)
    url = reverse("admin:labeling_labelingitemjudgeview_changelist")

    listing = client.get(url, {"disagreement": "disagree"})
    assert [row.pk for row in listing.context["cl"].result_list] == [disagree.pk]
    client.post(url, {"action": "override_with_humans", "_selected_action": [disagree.pk]})
    client.post(url, {"action": "accept", "_selected_action": [agree.pk]})

    agree.refresh_from_db()
    disagree.refresh_from_db()
    assert (agree.judge_review, agree.judge_validated_score) == ("accepted", 5)
    assert (disagree.judge_review, disagree.judge_validated_score) == ("overridden", 1)
    assert disagree.judge_validated_by == ml_engineer


def test_ai_score_range_filter(client, reviewers, ml_engineer):
    low = _judged(make_item(answered("Q1?", "A1")), score=1)
    _judged(make_item(answered("Q2?", "A2")), score=5)
    client.force_login(ml_engineer)

    listing = client.get(
        reverse("admin:labeling_labelingitemjudgeview_changelist"), {"ai_score": "low"}
    )

    assert [row.pk for row in listing.context["cl"].result_list] == [low.pk]


def test_adjudication_list_holds_disagreements_and_an_expert_settles_them(
    client, reviewers, ml_engineer
):
    split = make_item(answered("Split?", "Maybe."))
    label_all(split, [1, 5, 3])
    label_all(make_item(answered("Fine?", "Yes.")), [4, 4, 4])
    client.force_login(ml_engineer)
    url = reverse("admin:labeling_adjudicationitem_changelist")

    listing = client.get(url)
    assert [row.pk for row in listing.context["cl"].result_list] == [split.pk]
    client.post(
        url,
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-0-id": str(split.pk),
            "form-0-adjudicated_score": "2",
            "_save": "Save",
        },
    )

    split.refresh_from_db()
    assert (split.status, split.adjudicated_score) == ("consolidated", 2)
    assert client.get(url).context["cl"].result_count == 0


def test_sampling_policy_admin_action_runs_the_policy(client, reviewers, ml_engineer):
    from labeling.models import SamplingPolicy

    answered(escalated=True)
    policy = SamplingPolicy.objects.create(name="p", random_share=0)
    client.force_login(ml_engineer)

    client.post(
        reverse("admin:labeling_samplingpolicy_changelist"),
        {"action": "run_now", "_selected_action": [policy.pk]},
    )

    assert LabelingItem.objects.count() == 1
