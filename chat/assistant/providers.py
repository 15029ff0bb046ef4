"""The providers behind the one assistant chain, chosen by ``settings.ASSISTANT_PROVIDER``.

Each provider supplies an embedder (retrieval), a sentiment check, the intent router
and a chat model; the chain in ``chat.assistant.chain`` is the same for all of them.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Protocol

import numpy as np
from asgiref.sync import sync_to_async
from django.conf import settings
from langchain_core.language_models import BaseChatModel

from chat.assistant import bedrock
from chat.assistant.contract import DraftInfo, Intent, Sentiment
from chat.assistant.embeddings import (
    MODEL_NAME,
    Encoding,
    embed_query,
    embed_texts,
    encode_query,
    encode_texts,
    inference_run,
    inference_submit,
)
from chat.assistant.sentiment import sentiment_chain, sentiment_vader


class Embedder(Protocol):
    @property
    def name(self) -> str: ...

    def embed_documents(self, texts: list[str]) -> np.ndarray: ...

    def encode_documents(self, texts: list[str]) -> list[Encoding]: ...

    async def embed_query(self, text: str) -> np.ndarray: ...

    async def encode_query(self, text: str) -> Encoding: ...

    def sentence_vectors(self, texts: list[str]) -> list[np.ndarray] | None:
        """The answer model's vectors of each passage's sentences, stored with the
        passage; None when the provider's answer model does not use them."""
        ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the offline package; queries are micro-batched."""

    name = MODEL_NAME

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return embed_texts(texts)

    def encode_documents(self, texts: list[str]) -> list[Encoding]:
        return encode_texts(texts)

    async def embed_query(self, text: str) -> np.ndarray:
        return await embed_query(text)

    async def encode_query(self, text: str, adapter_path: str = "") -> Encoding:
        """``adapter_path``: a retriever adapter's folder (questions only)."""
        return await encode_query(text, adapter_path=adapter_path)

    def sentence_vectors(self, texts: list[str]) -> list[np.ndarray] | None:
        from chat.assistant.local_model import sentence_vectors_compute

        return sentence_vectors_compute(texts)


class BedrockEmbedder:
    """Bedrock embeddings (Titan by default) through langchain-aws, unit length."""

    @property
    def name(self) -> str:
        return f"bedrock:{settings.BEDROCK_EMBEDDING_MODEL_ID}"

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return np.asarray(bedrock.embeddings_model().embed_documents(texts), dtype=np.float32)

    def encode_documents(self, texts: list[str]) -> list[Encoding]:
        return [Encoding(vector=vector) for vector in self.embed_documents(texts)]

    async def embed_query(self, text: str) -> np.ndarray:
        vector = await bedrock.embeddings_model().aembed_query(text)
        return np.asarray(vector, dtype=np.float32)

    async def encode_query(self, text: str) -> Encoding:
        return Encoding(vector=await self.embed_query(text))

    def sentence_vectors(self, texts: list[str]) -> list[np.ndarray] | None:
        return None  # Bedrock's answer model reads the passages, it does not quote


class Provider(Protocol):
    name: str
    embedder: Embedder

    @property
    def model_name(self) -> str: ...

    async def sentiment(self, text: str) -> Sentiment: ...

    async def intent(self, text: str) -> Intent: ...

    async def chat_model(self, *, adapter_name: str, info: DraftInfo) -> BaseChatModel: ...

    async def warm_up(self) -> None: ...


def _load_local_models() -> None:
    from chat.assistant.offers import offer_model
    from chat.assistant.router import router_shipped

    embed_texts(["warm up"])
    sentiment_vader("warm up")
    router_shipped()
    offer_model()  # the reading of a reply to the offer of a person


def assistant_preload() -> None:
    """Start loading the offline models on the inference thread now, in the background:
    a server process calls it when it starts, so that the first customer does not wait
    for the model to load (customers' inference queues behind it, never beside it)."""
    if settings.ASSISTANT_PROVIDER == "local":
        inference_submit(_load_local_models)


@lru_cache(maxsize=1)
def _extractive_model() -> BaseChatModel:
    """One instance: the model holds no per-request state (and building one per turn
    cost a millisecond)."""
    from chat.assistant.local_model import ExtractiveAnswerModel

    return ExtractiveAnswerModel()


PRIME_PASSAGES_PER_JOB = 8


class LocalProvider:
    name = "local"
    embedder: Embedder = MiniLMEmbedder()

    @property
    def model_name(self) -> str:
        from chat.assistant.local_model import ExtractiveAnswerModel

        return ExtractiveAnswerModel().model_name

    async def sentiment(self, text: str) -> Sentiment:
        # VADER is a fraction of a millisecond of pure Python: no thread hop.
        return sentiment_vader(text)

    async def intent(self, text: str) -> Intent:
        from chat.assistant.router import intent_local

        return await intent_local(text)

    async def chat_model(self, *, adapter_name: str, info: DraftInfo) -> BaseChatModel:
        return _extractive_model()

    async def warm_up(self) -> None:
        from chat.assistant.knowledge import knowledge_index_current
        from chat.assistant.local_model import sentence_vectors_prime

        await inference_run(_load_local_models)
        # The extractive answer's sentence vectors of every passage, once per process, a
        # few passages per job: customers' questions get the inference thread in between
        # (one job for all of them held it for tens of seconds on a busy machine).
        index = await knowledge_index_current(embedding_model=self.embedder.name)
        texts = list(index.texts)
        for start in range(0, len(texts), PRIME_PASSAGES_PER_JOB):
            await inference_run(
                sentence_vectors_prime, texts[start : start + PRIME_PASSAGES_PER_JOB]
            )


class BedrockProvider:
    name = "bedrock"
    embedder: Embedder = BedrockEmbedder()

    @property
    def model_name(self) -> str:
        return str(settings.BEDROCK_MODEL_ID)

    async def sentiment(self, text: str) -> Sentiment:
        # The blog's internal prompt on the same model; a short, deterministic answer.
        model = await sync_to_async(bedrock.chat_model)(max_tokens=5, temperature=0.0)
        result: Sentiment = await sentiment_chain(model).ainvoke({"text": text})
        return result

    async def intent(self, text: str) -> Intent:
        # The same destinations from a structured-output prompt on the chat model.
        from chat.assistant.router import intent_bedrock

        return await intent_bedrock(text)

    async def chat_model(self, *, adapter_name: str, info: DraftInfo) -> BaseChatModel:
        model: BaseChatModel = await sync_to_async(bedrock.chat_model)()
        return model

    async def warm_up(self) -> None:
        await sync_to_async(bedrock.chat_model)()  # builds the boto3 clients


class HFProvider:
    name = "hf"
    embedder: Embedder = MiniLMEmbedder()

    @property
    def model_name(self) -> str:
        return str(settings.HF_BASE_MODEL_PATH)

    async def sentiment(self, text: str) -> Sentiment:
        return sentiment_vader(text)

    async def intent(self, text: str) -> Intent:
        from chat.assistant.router import intent_local

        return await intent_local(text)

    async def chat_model(self, *, adapter_name: str, info: DraftInfo) -> BaseChatModel:
        from chat.assistant.hf import hf_chat_model

        return await hf_chat_model(adapter_name=adapter_name, info=info)

    async def warm_up(self) -> None:
        from chat.assistant.hf import hf_runtime

        await inference_run(_load_local_models)
        await asyncio.to_thread(hf_runtime)


_PROVIDERS: dict[str, Provider] = {
    "local": LocalProvider(),
    "bedrock": BedrockProvider(),
    "hf": HFProvider(),
}


def provider_current() -> Provider:
    name = settings.ASSISTANT_PROVIDER
    try:
        return _PROVIDERS[name]
    except KeyError:
        raise ValueError(f"Unknown ASSISTANT_PROVIDER {name!r}") from None


def embedder_current() -> Embedder:
    """The embedder whose vectors retrieval compares against (the provider's)."""
    return provider_current().embedder
