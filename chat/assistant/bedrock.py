"""Amazon Bedrock: the boto3 clients and the LangChain models built on them.

The only module that talks to Bedrock. Tests attach ``botocore.stub.Stubber`` to
``runtime_client()``; the models below use exactly that client.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config
from django.conf import settings


@lru_cache(maxsize=8)
def _client(service: str, region: str, purpose: str) -> Any:
    # Retries stay short: the consumer's timeout bounds the whole turn anyway.
    config = Config(retries={"max_attempts": 2, "mode": "standard"}, read_timeout=60)
    return boto3.client(service, region_name=region, config=config)


def runtime_client() -> Any:
    """The ``bedrock-runtime`` client of the chat model (Converse, ConverseStream)."""
    return _client("bedrock-runtime", settings.AWS_REGION, "chat")


def embeddings_client() -> Any:
    """The ``bedrock-runtime`` client of the embeddings (InvokeModel).

    A client of its own: retrieval and the sentiment check run concurrently, and each
    client's calls stay in order (tests stub each with its own ``Stubber``).
    """
    return _client("bedrock-runtime", settings.AWS_REGION, "embeddings")


def router_client() -> Any:
    """The ``bedrock-runtime`` client of the intent router's prompt (Converse tool use).

    Its own client: the router runs beside the sentiment prompt on every turn.
    """
    return _client("bedrock-runtime", settings.AWS_REGION, "router")


def control_client() -> Any:
    """The ``bedrock`` control-plane client (only used for inference-profile lookups)."""
    return _client("bedrock", settings.AWS_REGION, "control")


def guardrail_config() -> dict[str, str] | None:
    if not settings.BEDROCK_GUARDRAIL_ID:
        return None
    return {
        "guardrailIdentifier": settings.BEDROCK_GUARDRAIL_ID,
        "guardrailVersion": settings.BEDROCK_GUARDRAIL_VERSION,
    }


def chat_model(*, max_tokens: int = 512, temperature: float = 0.2) -> Any:
    """``ChatBedrockConverse`` on the configured model id, region and optional guardrail."""
    from langchain_aws import ChatBedrockConverse

    return ChatBedrockConverse(
        model=settings.BEDROCK_MODEL_ID,
        region_name=settings.AWS_REGION,
        client=runtime_client(),
        bedrock_client=control_client(),
        guardrails=guardrail_config(),
        max_tokens=max_tokens,
        temperature=temperature,
    )


def router_chat_model() -> Any:
    """The chat model on the router's client, deterministic and short (a tool call)."""
    from langchain_aws import ChatBedrockConverse

    return ChatBedrockConverse(
        model=settings.BEDROCK_MODEL_ID,
        region_name=settings.AWS_REGION,
        client=router_client(),
        bedrock_client=control_client(),
        guardrails=guardrail_config(),
        max_tokens=200,
        temperature=0.0,
    )


def embeddings_model() -> Any:
    """``BedrockEmbeddings`` on the configured embedding model; unit-length vectors."""
    from langchain_aws import BedrockEmbeddings

    return BedrockEmbeddings(
        model_id=settings.BEDROCK_EMBEDDING_MODEL_ID,
        region_name=settings.AWS_REGION,
        client=embeddings_client(),
        normalize=True,
    )
