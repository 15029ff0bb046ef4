"""The shapes the assistant hands to its callers (the turn pipeline, the API, tests).

Everything here is typed: the turn stores these values in real columns of ``Turn``
(``chat.services.turns``), so nothing downstream reads a free-form dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A base-model folder holding this file is a mechanics-only toy (the offline starter model
# ``manage.py build_starter_model`` writes): the ``hf`` provider refuses to serve its answers
# to customers unless ``settings.HF_ALLOW_TOY_MODEL`` is set.
TOY_MODEL_MARKER = "TOY_MODEL.txt"


class AssistantError(Exception):
    """A provider failed (network, throttling, guardrail error, model crash, ...)."""


@dataclass
class Passage:
    """A knowledge-base passage retrieved for a question, with its relevance score (the
    fused ranking score; see ``chat.assistant.knowledge``).

    ``anchor`` locates the passage in its article's help page (``/help/<slug>/#anchor``);
    ``kind`` is "article" for help articles and "answer" for answers from the team."""

    slug: str
    title: str
    text: str
    score: float
    anchor: str = ""
    kind: str = "article"

    def source(self) -> dict[str, Any]:
        """The citation stored with the answer and shown under it."""
        cited: dict[str, Any] = {"slug": self.slug, "title": self.title, "score": self.score}
        if self.anchor:
            cited["anchor"] = self.anchor
        if self.kind != "article":
            cited["kind"] = self.kind
        return cited


SUPPORT_TEAM_TITLE = "From our support team"
SUPPORT_ANSWER_KIND = "answer"


@dataclass(frozen=True)
class SupportAnswerMatch:
    """An answer the support team approved (``chat.models.SupportAnswer``) that matched
    the customer's question (``chat.assistant.memory``), and how close the questions are."""

    support_answer_id: int
    answer: str
    similarity: float
    article_slug: str = ""
    article_title: str = ""

    def passages(self, retrieved: list[Passage] | None = None) -> list[Passage]:
        """The reply's citations: the team's answer first (carrying its article's slug,
        so a check of the article cited first still sees the article), then the article
        (its passage among ``retrieved``, if there, so the link opens at it)."""
        cited = [
            Passage(
                slug=self.article_slug,
                title=SUPPORT_TEAM_TITLE,
                text=self.answer,
                score=round(self.similarity, 4),
                kind=SUPPORT_ANSWER_KIND,
            )
        ]
        if self.article_slug:
            found = next((p for p in retrieved or [] if p.slug == self.article_slug), None)
            cited.append(
                found
                or Passage(
                    slug=self.article_slug,
                    title=self.article_title,
                    text="",
                    score=round(self.similarity, 4),
                )
            )
        return cited


@dataclass(frozen=True)
class Sentiment:
    """The blog's internal sentiment check. ``score`` follows VADER's compound sign
    (-1 negative .. +1 positive); the bedrock 0/1 answer maps to -1 / +1."""

    label: str  # "negative" | "neutral" | "positive"
    score: float
    method: str  # "vader" | "bedrock"
    raw: str = ""

    @property
    def negative(self) -> bool:
        return self.label == "negative"


@dataclass(frozen=True)
class Intent:
    """The router's class for a customer message, with every class's probability.

    ``thresholds`` are the model's calibrated per-category thresholds and
    ``combined_threshold`` the one for the escalating categories together (see
    ``chat.assistant.router.intent_route``); ``evidence`` is the customer's words that
    show the class, when the router names them (the bedrock prompt does).
    """

    label: str
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)
    model_version: str = ""
    thresholds: dict[str, float] = field(default_factory=dict)
    combined_threshold: float = 0.5
    evidence: str = ""


# How sure the assistant is that the knowledge base answers (``Retrieval.band``).
BAND_CONFIDENT = "confident"  # answers from the passages
BAND_HEDGED = "hedged"  # cites the closest article, says it is not sure, offers a person
BAND_DONT_KNOW = "dont_know"  # the honest "I don't know" and the offer of a person
BANDS = (BAND_CONFIDENT, BAND_HEDGED, BAND_DONT_KNOW)


@dataclass(frozen=True)
class Retrieval:
    """The answer-or-not decision: ``top_score`` is the confidence that the knowledge base
    answers (the calibrated probability, or the best cosine for an embedder without a
    calibration), ``min_score`` the threshold it was held to; ``no_answer`` when below.

    ``hedge_score`` is the lower threshold of the hedged band (0 when there is none):
    between it and ``min_score`` the reply cites the closest article but says plainly that
    it may not answer and offers a person. ``band`` names the outcome (``BANDS``)."""

    top_score: float
    min_score: float
    no_answer: bool
    hedge_score: float = 0.0
    band: str = ""

    @property
    def answer_band(self) -> str:
        if self.band:
            return self.band
        return BAND_DONT_KNOW if self.no_answer else BAND_CONFIDENT

    @property
    def hedged(self) -> bool:
        return self.answer_band == BAND_HEDGED


@dataclass
class Prepared:
    """What the assistant knows before drafting: passages, citations and the internal
    signals (sentiment, intent, retrieval). Never shown to the customer."""

    passages: list[Passage]
    sentiment: Sentiment
    retrieval: Retrieval
    intent: Intent | None = None
    retriever_adapter: str = ""
    # An answer from the support team matched the question: the reply is that answer.
    support_answer: SupportAnswerMatch | None = None

    @property
    def no_answer(self) -> bool:
        return self.retrieval.no_answer

    @property
    def hedged(self) -> bool:
        return self.retrieval.hedged

    @property
    def sources(self) -> list[dict[str, Any]]:
        return [p.source() for p in self.passages]


@dataclass
class DraftInfo:
    """Which provider, model and adapter produced a draft.

    ``adapter`` is resolved when the stream starts (the live adapter is looked up in the
    database), so read it after the first chunk or after the stream ends.
    """

    provider: str
    model_name: str
    adapter: str = ""
