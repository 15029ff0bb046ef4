"""The bedrock provider's wiring, through botocore's Stubber (requests are validated
against the Bedrock service model; nothing leaves the machine)."""

from __future__ import annotations

import io
import json
from unittest.mock import patch

import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from chat.assistant import (
    AssistantError,
    assistant_draft,
    assistant_prepare,
    assistant_stream,
    bedrock,
)
from chat.assistant.chain import ANSWER_SYSTEM
from chat.assistant.contract import Sentiment
from chat.assistant.router import LABELS, ROUTER_SYSTEM
from chat.models import Article
from chat.services import article_upsert

pytestmark = pytest.mark.django_db(transaction=True)

MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
EMBEDDING_MODEL_ID = "amazon.titan-embed-text-v2:0"
WIFI = ("connecting-the-hub-to-wifi", "Connecting the Hub to Wi-Fi", "The Hub uses 2.4 GHz only.")
BILLS = ("reading-your-bill", "Reading your bill", "Your bill shows your usage and charges.")


@pytest.fixture(autouse=True)
def bedrock_provider(settings, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings.ASSISTANT_PROVIDER = "bedrock"
    settings.AWS_REGION = "eu-west-1"
    settings.BEDROCK_MODEL_ID = MODEL_ID
    settings.BEDROCK_EMBEDDING_MODEL_ID = EMBEDDING_MODEL_ID
    settings.BEDROCK_GUARDRAIL_ID = "gr-support"
    settings.BEDROCK_GUARDRAIL_VERSION = "3"
    settings.ASSISTANT_MIN_RETRIEVAL_SCORE = 0.5


@pytest.fixture
def chat_stub():
    with Stubber(bedrock.runtime_client()) as stub:
        yield stub
        stub.assert_no_pending_responses()


@pytest.fixture
def router_stub():
    with Stubber(bedrock.router_client()) as stub:
        yield stub
        stub.assert_no_pending_responses()


@pytest.fixture
def embeddings_stub():
    with Stubber(bedrock.embeddings_client()) as stub:
        yield stub
        stub.assert_no_pending_responses()


def _embedding_response(vector: list[float]) -> dict:
    data = json.dumps({"embedding": vector, "inputTextTokenCount": 5}).encode()
    return {"body": StreamingBody(io.BytesIO(data), len(data)), "contentType": "application/json"}


def _expect_embedding(stub: Stubber, text: str, vector: list[float]) -> None:
    stub.add_response(
        "invoke_model",
        _embedding_response(vector),
        {
            # langchain-aws sends newlines as spaces
            "body": json.dumps({"inputText": text.replace("\n", " ")}),
            "modelId": EMBEDDING_MODEL_ID,
            "accept": "application/json",
            "contentType": "application/json",
        },
    )


def _expect_sentiment(stub: Stubber, question: str, answer: str) -> None:
    stub.add_response(
        "converse",
        {
            "output": {"message": {"role": "assistant", "content": [{"text": answer}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 20, "outputTokens": 1, "totalTokens": 21},
            "metrics": {"latencyMs": 80},
        },
        {
            "modelId": MODEL_ID,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "text": "Find the sentiment of below sentence, respond 0 if "
                            f"positive and respond 1 if negative\n{question}"
                        }
                    ],
                }
            ],
            "system": [],
            "inferenceConfig": {"maxTokens": 5, "temperature": 0.0},
            "guardrailConfig": {"guardrailIdentifier": "gr-support", "guardrailVersion": "3"},
        },
    )


def _expect_route(stub: Stubber, question: str, destination: str, evidence: str = "") -> None:
    """The router's structured-output prompt: Converse with the routing tool forced."""
    tool_input = {"destination": destination, "evidence": evidence}
    stub.add_response(
        "converse",
        {
            "output": {
                "message": {
                    "role": "assistant",
                    "content": [
                        {
                            "toolUse": {
                                "toolUseId": "t1",
                                "name": "RouteMessage",
                                "input": tool_input,
                            }
                        }
                    ],
                }
            },
            "stopReason": "tool_use",
            "usage": {"inputTokens": 400, "outputTokens": 20, "totalTokens": 420},
            "metrics": {"latencyMs": 150},
        },
        {
            "modelId": MODEL_ID,
            "messages": [{"role": "user", "content": [{"text": question}]}],
            "system": [{"text": ROUTER_SYSTEM}],
            "inferenceConfig": {"maxTokens": 200, "temperature": 0.0},
            "toolConfig": {
                "tools": [
                    {
                        "toolSpec": {
                            "name": "RouteMessage",
                            "description": "Route a customer's message to one destination.",
                            "inputSchema": {"json": ANY},
                        }
                    }
                ],
                "toolChoice": {"tool": {"name": "RouteMessage"}},
            },
            "guardrailConfig": {"guardrailIdentifier": "gr-support", "guardrailVersion": "3"},
        },
    )


@pytest.fixture
def embedded_articles(embeddings_stub, django_capture_on_commit_callbacks):
    """Two articles, embedded by the background task through Bedrock embeddings: each
    article, then its one passage (embedded as "title\n\ntext", the same text here)."""
    for _ in ("article", "passage"):
        _expect_embedding(embeddings_stub, f"{WIFI[1]}\n\n{WIFI[2]}", [1.0, 0.0, 0.0, 0.0])
    for _ in ("article", "passage"):
        _expect_embedding(embeddings_stub, f"{BILLS[1]}\n\n{BILLS[2]}", [0.0, 1.0, 0.0, 0.0])
    with django_capture_on_commit_callbacks(execute=True):
        for slug, title, body in (WIFI, BILLS):
            article_upsert(slug=slug, title=title, body=body)
    return list(Article.objects.all())


def test_articles_are_embedded_with_the_bedrock_model(embedded_articles):
    wifi = Article.objects.get(slug=WIFI[0])
    passage = wifi.passages.get()

    assert wifi.embedding_model == f"bedrock:{EMBEDDING_MODEL_ID}"
    assert wifi.embedding == [1.0, 0.0, 0.0, 0.0]
    assert wifi.embedded_at is not None
    assert (passage.anchor, passage.embedding, bytes(passage.token_vectors)) == (
        "p1",
        [1.0, 0.0, 0.0, 0.0],
        b"",  # Titan gives no token vectors: no late interaction
    )


async def test_prepare_retrieves_with_bedrock_embeddings_and_asks_the_blogs_sentiment_prompt(
    embedded_articles, embeddings_stub, chat_stub, router_stub
):
    question = "Why does the hub not see my wifi? This is useless!"
    _expect_embedding(embeddings_stub, question, [0.8, 0.6, 0.0, 0.0])
    _expect_sentiment(chat_stub, question, "1")
    _expect_route(router_stub, question, "anger", "This is useless!")

    prepared = await assistant_prepare(question=question, history=[])

    assert [s["slug"] for s in prepared.sources] == [WIFI[0]]  # bills: far behind
    # No calibration was fitted for Titan: the best passage cosine against the minimum.
    assert prepared.retrieval.top_score == pytest.approx(0.8)
    assert prepared.retrieval.min_score == pytest.approx(0.5)  # ASSISTANT_MIN_RETRIEVAL_SCORE
    assert prepared.sentiment == Sentiment(label="negative", score=-1.0, method="bedrock", raw="1")
    # the router's destination comes from the structured-output prompt, beside the
    # blog's 0/1 sentiment signal
    assert prepared.intent is not None
    assert (prepared.intent.label, prepared.intent.evidence) == ("anger", "This is useless!")
    assert prepared.intent.model_version == f"bedrock:{MODEL_ID}:prompt-1"


def test_the_routing_tool_offers_exactly_the_fifteen_destinations():
    from chat.assistant.router import _route_schema

    schema = _route_schema().model_json_schema()
    assert schema["properties"]["destination"]["enum"] == list(LABELS)
    assert schema["required"] == ["destination"]


async def test_positive_sentiment_answer_zero_is_not_negative(
    embedded_articles, embeddings_stub, chat_stub, router_stub
):
    question = "Thanks, the hub works great now"
    _expect_embedding(embeddings_stub, question, [0.0, 0.0, 1.0, 0.0])
    _expect_sentiment(chat_stub, question, "0")
    _expect_route(router_stub, question, "small_talk")

    prepared = await assistant_prepare(question=question, history=[])

    assert not prepared.sentiment.negative
    assert prepared.sentiment.label == "positive"
    assert prepared.no_answer  # nothing in the knowledge base is close


def _stream_events(*texts: str) -> list[dict]:
    return [
        {"messageStart": {"role": "assistant"}},
        *({"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": t}}} for t in texts),
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": "end_turn"}},
        {
            "metadata": {
                "usage": {"inputTokens": 50, "outputTokens": 12, "totalTokens": 62},
                "metrics": {"latencyMs": 300},
            }
        },
    ]


def _add_stream_response(stub: Stubber, events: list[dict], expected_params: dict) -> None:
    """Queue a ConverseStream response. The request is still validated against the
    service model; the response's event stream is given as the list of events botocore
    would decode (the Stubber cannot validate an event stream as a plain dict)."""
    with patch.object(stub, "_validate_operation_response"):
        stub.add_response("converse_stream", {"stream": events}, expected_params)


async def test_answer_streams_from_converse_stream_with_passages_and_guardrail(
    embedded_articles, embeddings_stub, chat_stub, router_stub
):
    question = "Does the hub work on 5 GHz?"
    _expect_embedding(embeddings_stub, question, [1.0, 0.0, 0.0, 0.0])
    _expect_sentiment(chat_stub, question, "0")
    _expect_route(router_stub, question, "answer")
    prepared = await assistant_prepare(question=question, history=[])
    _add_stream_response(
        chat_stub,
        _stream_events("No, the Hub ", "uses 2.4 GHz ", "only [1]."),
        {
            "modelId": MODEL_ID,
            "messages": [{"role": "user", "content": [{"text": question}]}],
            "system": [
                {"text": ANSWER_SYSTEM.format(context=f"[1] {WIFI[1]} ({WIFI[0]})\n{WIFI[2]}")}
            ],
            "inferenceConfig": {"maxTokens": 512, "temperature": 0.2},
            "guardrailConfig": {"guardrailIdentifier": "gr-support", "guardrailVersion": "3"},
        },
    )

    stream, info = assistant_stream(question=question, history=[], prepared=prepared)
    chunks = [chunk async for chunk in stream]

    assert chunks == ["No, the Hub ", "uses 2.4 GHz ", "only [1]."]
    assert info.provider == "bedrock"
    assert info.model_name == MODEL_ID


async def test_a_bedrock_error_surfaces_as_assistant_error(
    embedded_articles, embeddings_stub, chat_stub, router_stub
):
    question = "Does the hub work on 5 GHz?"
    _expect_embedding(embeddings_stub, question, [1.0, 0.0, 0.0, 0.0])
    _expect_sentiment(chat_stub, question, "0")
    _expect_route(router_stub, question, "answer")
    prepared = await assistant_prepare(question=question, history=[])
    chat_stub.add_client_error(
        "converse_stream",
        service_error_code="ThrottlingException",
        service_message="Too many requests",
        http_status_code=429,
    )

    with pytest.raises(AssistantError, match="Too many requests"):
        await assistant_draft(question=question, history=[], prepared=prepared)


async def test_an_embeddings_error_fails_prepare_with_assistant_error(
    embedded_articles, embeddings_stub, chat_stub, router_stub
):
    embeddings_stub.add_client_error(
        "invoke_model", service_error_code="AccessDeniedException", http_status_code=403
    )
    chat_stub.add_response(
        "converse",
        {
            "output": {"message": {"role": "assistant", "content": [{"text": "0"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 20, "outputTokens": 1, "totalTokens": 21},
            "metrics": {"latencyMs": 80},
        },
    )
    _expect_route(router_stub, "Hello?", "small_talk")

    with pytest.raises(AssistantError):
        await assistant_prepare(question="Hello?", history=[])


async def test_history_reaches_converse_as_alternating_turns(
    embedded_articles, embeddings_stub, chat_stub, router_stub
):
    question = "And on 5 GHz?"
    history = [
        {"role": "assistant", "text": "Hi! How can I help?"},
        {"role": "customer", "text": "My hub will not join the wifi"},
        {"role": "customer", "text": "I tried twice"},
        {"role": "system", "text": "Alex joined the conversation"},
        {"role": "agent", "text": "Which band is your router on?"},
        {"role": "customer", "text": question},
    ]
    _expect_embedding(
        embeddings_stub, f"I tried twice\n{question}", [1.0, 0.0, 0.0, 0.0]
    )  # a short follow-up is searched with the previous question
    _expect_sentiment(chat_stub, question, "0")
    _expect_route(router_stub, question, "answer")
    prepared = await assistant_prepare(question=question, history=history)
    _add_stream_response(
        chat_stub,
        _stream_events("Only 2.4 GHz [1]."),
        {
            "modelId": MODEL_ID,
            "messages": [
                {
                    "role": "user",
                    "content": [{"text": "My hub will not join the wifi\n\nI tried twice"}],
                },
                {"role": "assistant", "content": [{"text": "Which band is your router on?"}]},
                {"role": "user", "content": [{"text": question}]},
            ],
            "system": [
                {"text": ANSWER_SYSTEM.format(context=f"[1] {WIFI[1]} ({WIFI[0]})\n{WIFI[2]}")}
            ],
            "inferenceConfig": {"maxTokens": 512, "temperature": 0.2},
            "guardrailConfig": {"guardrailIdentifier": "gr-support", "guardrailVersion": "3"},
        },
    )

    text, _ = await assistant_draft(question=question, history=history, prepared=prepared)

    assert text == "Only 2.4 GHz [1]."
