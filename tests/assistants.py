"""A scripted model provider for tests (patched in by fixtures, never in product code).

It stands in for the model only: the turn pipeline, the reviewer and every write are the
real ones, and what it hands the turn is the real typed ``Prepared`` with the real
sentiment check and the real intent router (the shipped local one) on the question.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from chat.assistant.contract import DraftInfo, Intent, Passage, Prepared, Retrieval, Sentiment
from chat.assistant.sentiment import sentiment_vader

__all__ = ["Intent", "ScriptedAssistant", "Sentiment"]


class ScriptedAssistant:
    """Stands in for the model provider (never in product code): answers with ``answer``
    split into words and can fail, hang, or block mid-stream. What it hands the turn is
    the real typed ``Prepared``, with the real sentiment check on the question."""

    def __init__(self) -> None:
        self.answer = "Open Settings and choose Reset password."
        self.passages = [
            Passage(
                slug="reset-password",
                title="Reset your password",
                text="Open Settings and choose Reset password.",
                score=0.82,
            )
        ]
        self.fail_on_prepare: Exception | None = None
        self.fail_mid_stream: Exception | None = None
        self.hang = False
        self.delay = 0.0  # seconds the provider takes to prepare
        self.word_delay = 0.0  # seconds between streamed words (a model writing tokens)
        self.gate: asyncio.Event | None = None  # stream waits for it after the first delta
        self.questions: list[str] = []
        # What the provider's sentiment check reports (the real VADER check when None).
        self.sentiment: Sentiment | None = None
        # What the router reports (like the bedrock prompt's answer); when None, the real
        # local router classifies the question, unless ``use_router`` is False.
        self.intent: Intent | None = None
        self.use_router = True
        self.histories: list[list[dict[str, str]]] = []

    async def prepare(
        self, *, question: str, history: list[dict[str, str]], adapter_name: str = ""
    ) -> Prepared:
        self.questions.append(question)
        self.histories.append(history)
        if self.fail_on_prepare:
            raise self.fail_on_prepare
        if self.hang:
            await asyncio.sleep(3600)
        if self.delay:
            await asyncio.sleep(self.delay)
        intent = self.intent
        if intent is None and self.use_router:
            from chat.assistant.router import intent_local

            intent = await intent_local(question)
        return Prepared(
            passages=list(self.passages),
            sentiment=self.sentiment or sentiment_vader(question),
            retrieval=Retrieval(top_score=0.82, min_score=0.3, no_answer=not self.passages),
            intent=intent,
        )

    def stream(self, *, question, history, prepared, adapter_name="", route="answer"):
        async def deltas() -> AsyncIterator[str]:
            words = self.answer.split(" ")
            for i, word in enumerate(words):
                if i == 1 and self.gate is not None:
                    await self.gate.wait()
                if i == 2 and self.fail_mid_stream:
                    raise self.fail_mid_stream
                yield word if i == 0 else " " + word
                await asyncio.sleep(self.word_delay)

        return deltas(), DraftInfo(provider="fake", model_name="scripted", adapter=adapter_name)

    async def draft(self, *, question, history, prepared, adapter_name=""):
        return self.answer, DraftInfo(provider="fake", model_name="scripted", adapter=adapter_name)
