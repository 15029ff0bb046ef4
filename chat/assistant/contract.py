"""The shapes the assistant hands to its callers (the chat consumer, the API, tests)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# A base-model folder holding this file is a mechanics-only toy (the offline starter model
# ``manage.py build_starter_model`` writes): the ``hf`` provider refuses to serve its answers
# to customers unless ``settings.HF_ALLOW_TOY_MODEL`` is set.
TOY_MODEL_MARKER = "TOY_MODEL.txt"


class AssistantError(Exception):
    """A provider failed (network, throttling, guardrail error, model crash, ...)."""


@dataclass
class Passage:
    """A knowledge-base article retrieved for a question, with its cosine score."""

    slug: str
    title: str
    text: str
    score: float


@dataclass
class Prepared:
    """What the assistant knows before drafting: passages, citations and internal signals.

    ``signals`` is stored on the message for audit and never shown to the customer::

        {"sentiment": {"label": "negative"|"positive"|"neutral", "negative": 0|1,
                       "score": float, "method": "vader"|"bedrock"},
         "retrieval": {"top_score": float, "no_answer": bool, "min_score": float}}
    """

    passages: list[Passage]
    sources: list[dict[str, Any]]
    signals: dict[str, Any]
    no_answer: bool


@dataclass
class DraftInfo:
    """Which provider, model and adapter produced a draft.

    ``adapter`` is resolved when the stream starts (the live adapter is looked up in the
    database), so read it after the first chunk or after the stream ends.
    """

    provider: str
    model_name: str
    adapter: str = ""
