"""Helpers for labeling tests: answered questions built through the real turn pipeline."""

from __future__ import annotations

import pytest

from chat.assistant.contract import Intent, Passage, Sentiment
from chat.models import Message
from chat.services import feedback_submit
from config import roles
from escalation.services import agent_message_send, conversation_take_over
from labeling import services
from labeling.models import LabelingItem
from tests.factories import ConversationFactory, UserFactory

_pipeline = None  # the running test's ``pipeline`` fixture (autouse below)
ROUTED_TO_ANSWER = Intent(
    label="answer", confidence=1.0, scores={"answer": 1.0}, model_version="scripted"
)


@pytest.fixture(autouse=True)
def _turns_through_the_pipeline(pipeline):
    global _pipeline
    _pipeline = pipeline
    yield
    _pipeline = None


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
    """A customer question answered by the assistant, through the real turn pipeline
    (only the model provider is scripted, its sentiment check and its router included:
    the router keeps every question for the assistant).
    ``sentiment_negative``: it finds the question negative, yet not enough to call a
    person;
    ``escalated``: an agent took over afterwards and wrote; ``rating``: the customer
    rated the conversation."""
    assert _pipeline is not None
    conversation = conversation or ConversationFactory()
    bot = _pipeline.bot
    bot.answer = answer
    bot.passages = [
        Passage(slug=s["slug"], title=s["title"], text=answer, score=s["score"])
        for s in (
            sources if sources is not None else [{"slug": "wifi", "title": "Wi-Fi", "score": 0.7}]
        )
    ]
    bot.sentiment = (
        Sentiment(label="negative", score=-0.45, method="vader")
        if sentiment_negative
        else Sentiment(label="neutral", score=0.0, method="vader")
    )
    bot.intent = ROUTED_TO_ANSWER
    turn = _pipeline.ask(conversation, question)
    assert turn.status == "answered", (turn.status, turn.decision_reason)
    reply = turn.outputs.get(role=Message.Role.ASSISTANT)
    if escalated:
        agent = UserFactory(role=roles.AGENTS)
        conversation_take_over(conversation=conversation, agent=agent)
        agent_message_send(conversation=conversation, agent=agent, text="Let me help.")
    if rating is not None:
        feedback_submit(conversation=conversation, score=rating, better_answer=better_answer)
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
