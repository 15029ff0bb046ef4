"""The intent router: where each customer turn goes (conversational routing).

Fifteen destinations (``chat/assistant/datasets/LABELS.md``): the assistant answers from
the knowledge base, makes small talk or politely declines (out of scope); twelve
categories go to a person (a request for a person, anger, sarcasm, frustration, safety,
medical, security, vulnerable customer, legal, press, billing dispute, churn).

``local`` and ``hf`` providers: a multinomial logistic regression on the shipped MiniLM
embedding of the message (the same micro-batched encoder call as the retrieval query)
beside TF-IDF word and character n-grams. The weights are plain arrays (``weights.npz``)
with JSON metadata and vocabularies: nothing is unpickled. ``bedrock``: the same
destinations from a structured-output prompt on the chat model (``intent_bedrock``).

The router only says what the message is, with every class's probability and the
model's calibrated thresholds; ``intent_route`` turns that into a route under a policy
(the escalation app's per-category thresholds and switches, or the defaults).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from django.conf import settings

from chat.assistant.contract import AssistantError, Intent
from chat.assistant.refreshing import Refreshed
from chat.models import INTENT_LABELS

logger = logging.getLogger(__name__)

# The label guide's order: when several fit, the first wins.
LABELS: tuple[str, ...] = (
    "medical",
    "safety",
    "security",
    "vulnerable",
    "legal",
    "press",
    "billing_dispute",
    "churn",
    "anger",
    "sarcasm",
    "frustration",
    "human_request",
    "out_of_scope",
    "small_talk",
    "answer",
)
SELF_SERVICE: tuple[str, ...] = ("answer", "small_talk", "out_of_scope")
ESCALATING: tuple[str, ...] = tuple(label for label in LABELS if label not in SELF_SERVICE)
# Always escalated when the router sees them at all (and at the highest priority for
# safety and medical): the default policy.
CRITICAL: tuple[str, ...] = ("medical", "safety", "security")

# Plain words for each label (agents, the admin, the eval report).
LABEL_NAMES: dict[str, str] = dict(INTENT_LABELS)

DEFAULT_THRESHOLD = 0.5
DEFAULT_COMBINED_THRESHOLD = 0.5
# Declining is costly when the knowledge base does cover the question (an off-topic
# question the router is unsure of gets the honest "I don't know" anyway when nothing
# matches): with passages found, "out of scope" needs this much probability.
OUT_OF_SCOPE_SURE = 0.8

SHIPPED_DIR = Path(__file__).resolve().parent / "routers"
SHIPPED_VERSION = "router-1"

WEIGHTS = "weights.npz"
META = "meta.json"
VOCABULARY = "vocabulary.json"


# --- the decision under a policy ------------------------------------------------------------------


@dataclass(frozen=True)
class CategoryPolicy:
    """How one escalating category is handled (the admin's ``IntentPolicy`` row).

    ``escalate``: the category goes to a person at all. ``threshold``: the probability
    from which it does (None: the model's calibrated threshold). ``always``: it also
    escalates whenever it is the router's most likely class, whatever its probability.
    """

    escalate: bool = True
    always: bool = False
    threshold: float | None = None


DEFAULT_POLICIES: dict[str, CategoryPolicy] = {
    label: CategoryPolicy(always=label in CRITICAL) for label in ESCALATING
}
NO_ESCALATION: dict[str, CategoryPolicy] = {
    label: CategoryPolicy(escalate=False) for label in ESCALATING
}


@dataclass(frozen=True)
class RouteChoice:
    """Where the router's scores send the turn under a policy.

    ``route`` is "answer", "small_talk", "out_of_scope" or "escalate"; for an
    escalation, ``category`` names it, ``score`` is its probability (or the escalating
    categories' combined probability), ``threshold`` what it was compared with and
    ``because`` which test fired: "threshold", "top class" or "combined" ("answerable"
    when an unsure "out of scope" is answered because the knowledge base covers it).
    """

    route: str
    category: str = ""
    score: float = 0.0
    threshold: float = 0.0
    because: str = ""

    @property
    def escalates(self) -> bool:
        return self.route == "escalate"


def category_threshold(intent: Intent, label: str, policy: CategoryPolicy | None = None) -> float:
    if policy is not None and policy.threshold is not None:
        return float(policy.threshold)
    return float(intent.thresholds.get(label, DEFAULT_THRESHOLD))


def intent_route(
    intent: Intent,
    *,
    policies: Mapping[str, CategoryPolicy] | None = None,
    answerable: bool = False,
) -> RouteChoice:
    """The route for ``intent`` under ``policies`` (the defaults when None).

    An escalating category fires when its probability reaches its threshold, or, for an
    "always" category, when it is the most likely class. Otherwise the escalating
    categories together may reach the model's combined threshold (the probability is
    split between, say, anger and sarcasm): the likeliest of them fires (categories
    with a threshold set by the admin take no part in this). The first fired
    category in the label guide's order names the escalation. Without one, the turn
    goes to the likeliest of answer, small talk and out of scope; "out of scope" only
    with ``OUT_OF_SCOPE_SURE`` when the knowledge base has passages for the message
    (``answerable``): otherwise it is answered. Pure: no I/O.
    """
    policies = DEFAULT_POLICIES if policies is None else policies
    scores = intent.scores or {intent.label: 1.0}
    enabled = [c for c in ESCALATING if policies.get(c, CategoryPolicy()).escalate]
    for label in enabled:
        policy = policies.get(label, CategoryPolicy())
        score = float(scores.get(label, 0.0))
        threshold = category_threshold(intent, label, policy)
        if score >= threshold:
            return RouteChoice("escalate", label, score, threshold, "threshold")
        if policy.always and intent.label == label:
            return RouteChoice("escalate", label, score, threshold, "top class")
    # A threshold the admin set is final for its category: it never escalates through
    # the combined test (nor adds to it).
    pooled = [c for c in enabled if policies.get(c, CategoryPolicy()).threshold is None]
    combined = sum(float(scores.get(c, 0.0)) for c in pooled)
    if pooled and combined >= intent.combined_threshold:
        label = max(pooled, key=lambda c: float(scores.get(c, 0.0)))
        return RouteChoice("escalate", label, combined, intent.combined_threshold, "combined")
    route = max(SELF_SERVICE, key=lambda c: (float(scores.get(c, 0.0)), c == "answer"))
    score = float(scores.get(route, 0.0))
    if route == "out_of_scope" and answerable and score < OUT_OF_SCOPE_SURE:
        return RouteChoice("answer", score=float(scores.get("answer", 0.0)), because="answerable")
    return RouteChoice(route, score=score)


# --- the trained model ----------------------------------------------------------------------------


class RouterModel:
    """One trained router version, loaded from its folder (meta.json, vocabulary.json,
    weights.npz). Thread-safe to call; holds no mutable state."""

    def __init__(self, directory: Path) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.directory = directory
        self.meta: dict[str, Any] = json.loads((directory / META).read_text())
        vocabulary = json.loads((directory / VOCABULARY).read_text())
        with np.load(directory / WEIGHTS, allow_pickle=False) as weights:
            arrays = {name: weights[name] for name in weights.files}
        self.version: str = self.meta["version"]
        self.labels: list[str] = list(self.meta["labels"])
        self.embedding_model: str = self.meta["embedding_model"]
        self.thresholds: dict[str, float] = {
            k: float(v) for k, v in self.meta["thresholds"].items()
        }
        self.combined_threshold = float(self.meta["combined_threshold"])
        self.vectorizers = []
        for block in ("word", "char"):
            params = self.meta["features"][block]
            vectorizer = TfidfVectorizer(
                analyzer=params["analyzer"],
                ngram_range=tuple(params["ngram_range"]),
                lowercase=True,
                sublinear_tf=True,
                vocabulary=vocabulary[block],
                dtype=np.float32,
            )
            vectorizer.idf_ = arrays[f"idf_{block}"]
            self.vectorizers.append(vectorizer)
        # The same features without sklearn's per-call overhead (a few ms for one short
        # message): each block's analyzer, its columns and idf, offset into ``coef``.
        self._blocks: list[tuple[Callable[[str], list[str]], dict[str, int], np.ndarray, int]] = []
        offset = 0
        for vectorizer in self.vectorizers:
            terms = vectorizer.vocabulary
            vocabulary_ = (
                {term: int(i) for term, i in terms.items()}
                if isinstance(terms, Mapping)
                else {term: i for i, term in enumerate(terms)}
            )
            self._blocks.append((vectorizer.build_analyzer(), vocabulary_, vectorizer.idf_, offset))
            offset += len(vocabulary_)
        # (features, classes): word n-grams, then character n-grams, then the embedding.
        self.coef = np.ascontiguousarray(arrays["coef"].T, dtype=np.float32)
        self.intercept = arrays["intercept"].astype(np.float32)
        self.n_text = sum(len(vocabulary[block]) for block in ("word", "char"))

    def _text_logits(self, text: str) -> np.ndarray:
        """``TfidfVectorizer.transform`` (sublinear tf, idf, l2 per block) of one text,
        times the text weights: the columns it has, summed directly."""
        logits = np.zeros(self.coef.shape[1], dtype=np.float32)
        for analyze, vocabulary, idf, offset in self._blocks:
            counts: dict[int, int] = {}
            for term in analyze(text):
                index = vocabulary.get(term)
                if index is not None:
                    counts[index] = counts.get(index, 0) + 1
            if not counts:
                continue
            found = np.fromiter(counts, dtype=np.int64, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
            values = (1.0 + np.log(tf)) * idf[found]
            logits += (values / np.linalg.norm(values)) @ self.coef[found + offset]
        return logits

    def probabilities(self, texts: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (len(texts), len(labels)), in ``self.labels`` order."""
        logits = (
            np.stack([self._text_logits(text) for text in texts])
            if texts
            else np.zeros((0, self.coef.shape[1]), dtype=np.float32)
        )
        logits = logits + np.asarray(vectors, dtype=np.float32) @ self.coef[self.n_text :]
        logits = logits + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return np.asarray(exp / exp.sum(axis=1, keepdims=True))

    def classify(self, text: str, vector: np.ndarray) -> Intent:
        """The intent of one message from its text and its (unit) MiniLM vector."""
        probs = self.probabilities([text], np.asarray(vector).reshape(1, -1))[0]
        best = int(probs.argmax())
        return Intent(
            label=self.labels[best],
            confidence=float(probs[best]),
            scores={label: float(p) for label, p in zip(self.labels, probs, strict=True)},
            model_version=self.version,
            thresholds=dict(self.thresholds),
            combined_threshold=self.combined_threshold,
        )


_models: dict[str, RouterModel] = {}
_models_lock = threading.Lock()


def router_model_load(*, version: str, directory: Path) -> RouterModel:
    """The model of ``version`` (loaded once per process)."""
    model = _models.get(version)
    if model is None:
        with _models_lock:
            model = _models.get(version)
            if model is None:
                model = RouterModel(directory)
                if model.version != version:
                    raise ValueError(f"{directory} holds {model.version}, not {version}")
                _models[version] = model
    return model


def router_shipped() -> RouterModel:
    """The version that ships with the code (a fresh clone routes without training)."""
    return router_model_load(version=SHIPPED_VERSION, directory=SHIPPED_DIR / SHIPPED_VERSION)


# --- the live version -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveRouter:
    version: str
    directory: Path


def _live_router() -> LiveRouter:
    """The version made live in the admin (``RouterVersion``), else the shipped one."""
    from chat.selectors import router_version_live
    from chat.services.intents import router_version_local_dir

    live = router_version_live()
    if live is None or live.name == SHIPPED_VERSION:
        return LiveRouter(SHIPPED_VERSION, SHIPPED_DIR / SHIPPED_VERSION)
    return LiveRouter(live.name, router_version_local_dir(version=live))


def router_live_model() -> RouterModel:
    """The live router, read now (sync code: the admin, commands)."""
    live = _live_router()
    return router_model_load(version=live.version, directory=live.directory)


_live: Refreshed[LiveRouter] = Refreshed(
    _live_router, interval=lambda: float(settings.ROUTER_REFRESH_SECONDS)
)


async def router_current() -> RouterModel:
    """The live router, re-checked against the database at most every
    ``ROUTER_REFRESH_SECONDS`` (a version made live in the admin routes within that
    time, in every process). A live version that cannot be loaded is logged and the
    shipped one routes instead: a broken artifact never stops the chat."""
    live = await _live.current()
    try:
        return router_model_load(version=live.version, directory=live.directory)
    except Exception:
        logger.exception("router %s could not be loaded; the shipped router routes", live.version)
        return router_shipped()


def router_forget_live() -> None:
    """Look the live version up again on the next turn (after making one live)."""
    _live.forget()


async def intent_local(text: str) -> Intent:
    """The local router's intent: the MiniLM vector of ``text`` (micro-batched with the
    retrieval query of the same turn, and shared when they are the same text), then the
    classifier on this thread (well under a millisecond of CPU: no thread hop)."""
    from chat.assistant.embeddings import embed_query

    vector, model = await asyncio.gather(embed_query(text), router_current())
    return model.classify(text, vector)


# --- bedrock: the same destinations from a structured-output prompt -------------------------------

ROUTER_SYSTEM = (
    "You route messages that customers send to Brightwave's support chat. Brightwave "
    "supplies electricity and sells a smart-heating Hub (a thermostat), an energy-monitor "
    "clamp and an app. Pick exactly one destination for the customer's message. When "
    "several fit, the first in this list wins:\n"
    "medical: someone is hurt or ill right now (swallowed a battery, electric shock "
    "injury, collapsed, cannot breathe, dizzy from fumes, a medical device failing).\n"
    "safety: smoke, fire, sparks, a burning or melting smell, something too hot to touch, "
    "gas, water on or near electrics, exposed live wires, a carbon-monoxide alarm.\n"
    "security: account accessed by someone else, password or e-mail changed without the "
    "customer, unknown payments or login alerts, card misuse, phishing, impersonation.\n"
    "vulnerable: a vulnerable customer who needs care now (no heating or power with a baby, "
    "elderly, disabled or ill person at home; locked out of the heating in the cold; "
    "serious financial hardship; bereavement of the account holder).\n"
    "legal: threatens or announces legal or regulatory action.\n"
    "press: a journalist asks for comment, or a threat to go to the media to expose us.\n"
    "billing_dispute: disputes a charge or demands money back (charged twice, "
    "overcharged, refund demanded, chargeback).\n"
    "churn: says they will leave or switch supplier because of a problem or a price.\n"
    "anger: clearly angry, insults, swearing, shouting.\n"
    "sarcasm: sarcastic praise or thanks that means the opposite.\n"
    "frustration: the assistant is not helping, or they have contacted us about the same "
    "problem several times.\n"
    "human_request: asks for a person, agent, manager (even in one or two words), or how "
    "to phone or write to a person about their case.\n"
    "out_of_scope: unrelated to Brightwave (weather, sport, recipes, homework, coding, "
    "other companies, general knowledge).\n"
    "small_talk: greetings, thanks, goodbyes, acknowledgements, 'are you a bot?', with "
    "nothing else asked.\n"
    "answer: any other question or request about Brightwave's products, account, bills, "
    "payments, plans, moving or cancelling, including calm questions full of words like "
    "'failed', 'crash' or 'dead', and negated alarms ('no smoke, it just won't turn on').\n"
    "Also quote the few words of the message that show the destination (empty for answer "
    "and small_talk)."
)

Destination = Literal[
    "medical",
    "safety",
    "security",
    "vulnerable",
    "legal",
    "press",
    "billing_dispute",
    "churn",
    "anger",
    "sarcasm",
    "frustration",
    "human_request",
    "out_of_scope",
    "small_talk",
    "answer",
]
BEDROCK_PROMPT_VERSION = "prompt-1"


@lru_cache(maxsize=1)
def _route_schema() -> Any:
    from pydantic import BaseModel, Field

    class RouteMessage(BaseModel):
        """Route a customer's message to one destination."""

        destination: Destination = Field(description="Where the message goes.")
        evidence: str = Field(
            default="", description="The customer's own words that show the destination."
        )

    return RouteMessage


def bedrock_router_version() -> str:
    return f"bedrock:{settings.BEDROCK_MODEL_ID}:{BEDROCK_PROMPT_VERSION}"[:80]


async def intent_bedrock(text: str) -> Intent:
    """The destination from the Bedrock chat model (Converse tool use through
    langchain-aws ``with_structured_output``); its own client, so it runs beside the
    sentiment prompt. A model's pick has no calibrated probability: it counts as 1."""
    from asgiref.sync import sync_to_async
    from langchain_core.messages import HumanMessage, SystemMessage

    from chat.assistant import bedrock

    model = await sync_to_async(bedrock.router_chat_model)()
    structured = model.with_structured_output(_route_schema())
    result = await structured.ainvoke([SystemMessage(ROUTER_SYSTEM), HumanMessage(text)])
    if result is None:
        raise AssistantError("the bedrock router returned no destination")
    label = str(result.destination)
    return Intent(
        label=label,
        confidence=1.0,
        scores={label: 1.0},
        model_version=bedrock_router_version(),
        evidence=str(result.evidence or "")[:200],
    )
