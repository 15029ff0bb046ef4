"""The local provider for real: MiniLM retrieval over the demo articles, VADER, streaming."""

from __future__ import annotations

import asyncio

import pytest

from chat.assistant import assistant_draft, assistant_prepare, assistant_stream
from chat.assistant.embeddings import query_batcher
from tests.chat.knowledge_fixtures import knowledge_base

__all__ = ["knowledge_base"]

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def local_provider(settings):
    settings.ASSISTANT_PROVIDER = "local"


async def test_wifi_question_retrieves_and_cites_the_wifi_article(knowledge_base):
    question = "How do I connect my hub to the wifi? It doesn't find my 5GHz network"

    prepared = await assistant_prepare(question=question, history=[])
    answer, info = await assistant_draft(question=question, history=[], prepared=prepared)

    assert not prepared.no_answer
    assert prepared.sources[0]["slug"] == "connecting-the-hub-to-wifi"
    # Answered, or hedged (the calibration answers confidently only above the confidence
    # at which 95% of the dev and train sets' unanswerable questions get no answer).
    assert prepared.retrieval.top_score >= prepared.retrieval.hedge_score
    assert "2.4 GHz" in answer
    assert "[1]" in answer
    assert info.provider == "local"
    assert "MiniLM" in info.model_name


async def test_off_topic_question_gives_an_honest_no_answer(knowledge_base):
    question = "Who won the football last night?"

    prepared = await assistant_prepare(question=question, history=[])
    answer, _ = await assistant_draft(question=question, history=[], prepared=prepared)

    assert prepared.no_answer
    assert prepared.sources == []
    assert prepared.retrieval.no_answer is True
    assert "don't know" in answer
    assert "person" in answer


async def test_angry_message_is_flagged_negative_and_a_question_is_not(knowledge_base):
    angry = await assistant_prepare(
        question="The hub just died after 18 months. €149 for this junk?? Terrible service!",
        history=[],
    )
    calm = await assistant_prepare(question="How do I submit a meter reading?", history=[])

    assert angry.sentiment.label == "negative" and angry.sentiment.negative
    assert angry.sentiment.method == "vader"
    assert angry.sentiment.score < 0
    assert not calm.sentiment.negative


async def test_the_quoted_answer_comes_as_one_piece(knowledge_base):
    """The quoting model has its whole answer at once: no point in chopping it up."""
    question = "How do I turn on two-factor authentication?"
    prepared = await assistant_prepare(question=question, history=[])

    stream, info = assistant_stream(question=question, history=[], prepared=prepared)
    chunks = [chunk async for chunk in stream]

    assert len(chunks) == 1
    assert prepared.sources[0]["slug"] == "two-factor-authentication"
    assert "".join(chunks).startswith("From our help article")
    assert info.adapter == ""


async def test_follow_up_question_is_searched_with_the_previous_one(knowledge_base):
    history = [
        {"role": "customer", "text": "My hub shows error E21"},
        {"role": "assistant", "text": "That means the Wi-Fi connection was lost."},
    ]

    prepared = await assistant_prepare(question="what should I do?", history=history)

    assert prepared.sources[0]["slug"] == "error-e21-wifi-connection-lost"


async def test_concurrent_prepares_are_encoded_in_batches(knowledge_base):
    questions = [
        "How do I pay by direct debit?",
        "What is away mode?",
        "How do I cancel my account?",
        "My bill looks too high",
        "How do I update the hub firmware?",
        "Can I share the app with my partner?",
    ]
    from chat.assistant import embeddings

    embeddings._recent.clear()  # questions an earlier test encoded are not encoded again
    batcher = query_batcher()
    batcher.batch_sizes.clear()

    results = await asyncio.gather(*(assistant_prepare(question=q, history=[]) for q in questions))

    assert all(r.sources for r in results)
    assert sum(batcher.batch_sizes) == len(questions)
    assert max(batcher.batch_sizes) > 1


async def test_warm_up_loads_the_models_and_can_be_repeated():
    from chat.assistant import assistant_warm_up
    from chat.assistant.embeddings import _model

    _model.cache_clear()

    await assistant_warm_up()
    await assistant_warm_up()

    assert _model.cache_info().currsize == 1


async def test_warm_up_prepares_the_quoted_sentences_of_every_passage(knowledge_base, settings):
    from chat.assistant import assistant_warm_up
    from chat.assistant.local_model import _SENTENCES
    from chat.models import ArticlePassage

    settings.KNOWLEDGE_REFRESH_SECONDS = 0
    _SENTENCES.clear()

    await assistant_warm_up()

    texts = [t async for t in ArticlePassage.objects.values_list("text", flat=True)]
    assert len(texts) > len(knowledge_base)  # articles are split into several passages
    assert all(text in _SENTENCES for text in texts)  # answers will not run the encoder


async def test_the_router_runs_in_prepare_on_the_retrieval_querys_encoder_call(knowledge_base):
    question = "There's smoke coming out of the Hub on my wall, what do I do?"
    batcher = query_batcher()
    batcher.batch_sizes.clear()

    prepared = await assistant_prepare(question=question, history=[])

    assert prepared.intent is not None
    assert (prepared.intent.label, prepared.intent.model_version) == ("safety", "router-1")
    assert sum(prepared.intent.scores.values()) == pytest.approx(1, abs=1e-3)
    assert list(batcher.batch_sizes) == [1]  # one text encoded once, for both


@pytest.mark.parametrize(
    ("text", "route", "status"),
    [
        ("How do I connect my Hub to 5 GHz Wi-Fi?", "answer", "answered"),
        ("thanks a million, all working now", "small_talk", "answered"),
        ("Can you recommend a good pizza place in Cork?", "out_of_scope", "answered"),
        ("the fuse box is sparking and smells like burning plastic", "escalate", "escalated"),
    ],
)
async def test_real_turns_with_the_local_provider_take_the_routers_route(
    knowledge_base, text, route, status
):
    from chat import turns
    from chat.events import db
    from chat.models import Message
    from chat.services import customer_message_receive
    from tests.factories import ConversationFactory

    conversation = await db(ConversationFactory)()
    received = await db(customer_message_receive)(
        conversation=conversation, text=text, client_id="r1", author=None, rate_subject="r"
    )
    turn = await turns.turn_await(turn_id=received.turn.pk, conversation_id=conversation.pk)

    assert (turn.route, turn.status, turn.router_version) == (route, status, "router-1")
    replies = await db(list)(turn.outputs.filter(visibility="public"))
    if route == "answer":
        assert replies[0].sources[0]["slug"] == "connecting-the-hub-to-wifi"
    if route == "small_talk":
        assert replies[0].text.startswith("You're welcome")
    if route == "out_of_scope":
        assert replies[0].text.startswith("I'm sorry, I can't help with that here")
    if route == "escalate":
        assert replies[0].role == Message.Role.SYSTEM
        assert replies[0].text.startswith("For your safety")


def test_a_server_process_loads_the_offline_models_as_it_starts():
    """Daphne importing the ASGI application starts loading MiniLM, VADER and the router
    on the inference thread, so the first customer after a restart does not wait for it
    (without the warm-up setting, as in the tests, nothing is loaded)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    probe = (
        "import config.asgi; "
        "from chat.assistant import embeddings; "
        "embeddings._inference_executor().submit(lambda: None).result(); "
        "print(embeddings._model.cache_info().currsize)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local", "HF_HUB_OFFLINE": "1"}
    root = Path(__file__).resolve().parents[2]
    loaded = [
        subprocess.run(
            [sys.executable, "-c", probe],
            env={**env, "CHAT_WARM_UP_ASSISTANT": flag, "ASSISTANT_PROVIDER": "local"},
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
        for flag in ("true", "false")
    ]
    assert loaded == ["1", "0"]
