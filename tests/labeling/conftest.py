"""Helpers for labeling tests: answered questions built through chat's message_append."""

from __future__ import annotations

import pytest

from chat.models import Message
from chat.services import message_append
from config import roles
from labeling import services
from labeling.models import LabelingItem
from tests.factories import ConversationFactory, CustomerFeedbackFactory


def answered(
    question: str = "Does the hub work on 5GHz wifi?",
    answer: str = "No, the Hub only connects on the 2.4 GHz band.",
    *,
    conversation=None,
    sentiment_negative: bool = False,
    escalated: bool = False,
    rating: int | None = None,
    better_answer: str = "",
    sources=None,
) -> Message:
    """A customer question and the assistant's public answer to it."""
    conversation = conversation or ConversationFactory()
    internal = {"sentiment": {"negative": 1 if sentiment_negative else 0}}
    asked, _ = message_append(
        conversation=conversation,
        role=Message.Role.CUSTOMER,
        text=question,
        broadcast=False,
        internal=internal,
    )
    reply, _ = message_append(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        text=answer,
        broadcast=False,
        reply_to=asked,
        sources=sources
        if sources is not None
        else [{"slug": "wifi", "title": "Wi-Fi", "score": 0.7}],
        provider="local",
        model_name="minilm-retrieval",
        adapter="",
    )
    if escalated:
        message_append(
            conversation=conversation, role=Message.Role.AGENT, text="Let me help.", broadcast=False
        )
    if rating is not None:
        CustomerFeedbackFactory(
            conversation=conversation, score=rating, better_answer=better_answer
        )
    return reply


@pytest.fixture
def reviewers(make_user):
    return [make_user(roles.REVIEWERS, username=name) for name in ("rev_a", "rev_b", "rev_c")]


@pytest.fixture
def no_judge(monkeypatch):
    """Sampling queues the judge; most tests do not need MiniLM to run."""
    monkeypatch.setattr("labeling.services.sampling._queue_judge", lambda item: None)


def make_item(message: Message | None = None, **kwargs) -> LabelingItem:
    item = services.item_create_from_message(
        message=message or answered(**kwargs), reason=LabelingItem.Reason.MANUAL
    )
    assert item is not None
    return item


def label_all(item: LabelingItem, scores: list[int], better: str = "") -> None:
    for label, score in zip(item.labels.order_by("reviewer_id"), scores, strict=True):
        services.label_submit(
            label=label, reviewer=label.reviewer, score=score, better_answer=better
        )
