"""Sampling policies: patterns, random share, daily cap, never the same answer twice."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError
from django.utils import timezone

from labeling import services, tasks
from labeling.models import LabelingItem, SamplingPolicy
from tests.labeling.conftest import answered

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_judge")]


def policy(**kwargs) -> SamplingPolicy:
    defaults = {
        "name": "default",
        "random_share": 0.0,
        "include_escalated": True,
        "include_negative": True,
        "low_rating_max": 2,
        "daily_cap": 100,
    }
    return SamplingPolicy.objects.create(**{**defaults, **kwargs})


def test_patterns_pick_escalated_negative_and_low_rated_answers_only(reviewers):
    plain = answered("How do I reset?", "Hold the button.")
    escalated = answered("Where is my refund?", "I do not know.", escalated=True)
    negative = answered("This is useless!", "Sorry to hear.", sentiment_negative=True)
    low = answered("Why is it cold?", "Check the boiler.", rating=1)
    happy = answered("Thanks, what's E34?", "A heating fault.", rating=5)

    result = services.sampling_policy_run(policy=policy())

    items = {item.message_id: item for item in LabelingItem.objects.all()}
    assert set(items) == {escalated.pk, negative.pk, low.pk}
    assert plain.pk not in items and happy.pk not in items
    assert items[escalated.pk].reason == LabelingItem.Reason.ESCALATED
    assert items[negative.pk].reason == LabelingItem.Reason.NEGATIVE
    assert items[low.pk].reason == LabelingItem.Reason.LOW_RATING
    assert result.created == 3


def test_a_live_turn_with_negative_sentiment_is_sampled_as_negative(reviewers, pipeline):
    """Regression: the pipeline stored its signals where sampling never looked, so live
    conversations were never sampled for negative sentiment. Here the customer's message
    goes through the real pipeline with the real sentiment check: clearly negative
    (shouting), yet the router (scripted here) kept it, so the assistant answered."""
    from tests.factories import ConversationFactory
    from tests.labeling.conftest import ROUTED_TO_ANSWER

    pipeline.bot.sentiment = None  # the real VADER check
    pipeline.bot.intent = ROUTED_TO_ANSWER
    turn = pipeline.ask(ConversationFactory(), "This is useless!")
    assert (turn.status, turn.sentiment_label) == ("answered", "negative")
    calm = pipeline.ask(ConversationFactory(), "How do I read my meter?")
    assert calm.sentiment_label != "negative"

    policy_ = policy(include_escalated=False, low_rating_max=None)
    services.sampling_policy_run(policy=policy_)

    item = LabelingItem.objects.select_related("message").get()
    assert item.reason == LabelingItem.Reason.NEGATIVE
    assert item.message.reply_to_id == turn.customer_message_id
    assert item.question == "This is useless!"


def test_item_holds_question_answer_context_provider_and_conversation(reviewers):
    reply = answered("Does the hub work on 5GHz wifi?", "Only 2.4 GHz.", escalated=True)

    services.sampling_policy_run(policy=policy())

    item = LabelingItem.objects.get()
    assert item.question == "Does the hub work on 5GHz wifi?"
    assert item.answer == "Only 2.4 GHz."
    assert item.context == [{"slug": "wifi", "title": "Wi-Fi", "score": 0.7}]
    assert (item.provider, item.model_name) == ("fake", "scripted")
    assert item.conversation_id == reply.conversation_id


def test_withheld_drafts_and_customer_messages_are_never_sampled(reviewers):
    reply = answered(escalated=True)
    from chat.services import message_append

    message_append(
        conversation=reply.conversation,
        role="assistant",
        text="draft",
        visibility="withheld",
        reply_to=reply.reply_to,
        broadcast=False,
    )

    services.sampling_policy_run(policy=policy())

    assert list(LabelingItem.objects.values_list("message_id", flat=True)) == [reply.pk]


def test_random_share_is_stable_and_roughly_the_share(reviewers):
    for i in range(200):
        answered(f"Question {i}?", f"Answer {i}.")
    share = policy(
        random_share=0.25,
        include_escalated=False,
        include_negative=False,
        low_rating_max=None,
        daily_cap=1000,
    )

    first = services.sampling_policy_run(policy=share).created
    second = services.sampling_policy_run(policy=share).created

    assert 30 <= first <= 70
    assert second == 0  # a re-run does not roll the dice again


def test_running_twice_never_samples_an_answer_twice(reviewers):
    answered(escalated=True)
    services.sampling_policy_run(policy=policy())
    services.sampling_policy_run(policy=policy(name="second"))

    assert LabelingItem.objects.count() == 1


def test_database_refuses_a_second_item_for_the_same_answer():
    reply = answered()
    LabelingItem.objects.create(message=reply, question="q", answer="a", source_hash="x")
    with pytest.raises(IntegrityError):
        LabelingItem.objects.create(message=reply, question="q", answer="a", source_hash="y")


def test_daily_cap_holds_within_a_day_and_resets_the_next(reviewers):
    for i in range(5):
        answered(f"Angry {i}?", "Sorry.", sentiment_negative=True)
    capped = policy(daily_cap=2)
    now = timezone.now()

    assert services.sampling_policy_run(policy=capped, now=now).created == 2
    again = services.sampling_policy_run(policy=capped, now=now)
    assert again.created == 0 and again.capped
    LabelingItem.objects.update(created_at=now - dt.timedelta(days=1))
    assert services.sampling_policy_run(policy=capped, now=now).created == 2


def test_inactive_policy_samples_nothing(reviewers):
    answered(escalated=True)
    assert services.sampling_policy_run(policy=policy(is_active=False)).created == 0


def test_scheduled_task_runs_active_policies_and_the_schedule_exists(reviewers):
    from django_q.models import Schedule

    answered(escalated=True)
    policy()

    summary = tasks.sampling_run_all_task()

    assert summary["items_created"] == 1
    assert Schedule.objects.filter(func="labeling.tasks.sampling_run_all_task").exists()


def test_sampled_items_get_three_least_loaded_reviewers(make_user, settings):
    from config import roles

    settings.LABELING_REVIEWERS_PER_ITEM = 2
    people = [make_user(roles.REVIEWERS, username=f"r{i}") for i in range(4)]
    for i in range(4):
        answered(f"Q{i}?", "A.", escalated=True)

    services.sampling_policy_run(policy=policy())

    loads = sorted(LabelingItem.objects.filter(labels__reviewer=p).count() for p in people)
    assert loads == [2, 2, 2, 2]
    assert all(item.labels.count() == 2 for item in LabelingItem.objects.all())
