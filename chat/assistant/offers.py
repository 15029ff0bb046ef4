"""The customer's reply to the assistant's offer of a person.

The hedged reply and the honest "I don't know" both end by asking whether the customer
would like a member of the team (``PERSON_OFFER``). The intent router reads each message
on its own, and a bare "yes" or "sure" is small talk there; after the offer it means
"bring in a person". So when the assistant's last message made the offer, the reply is
read in that context: a small logistic model on the MiniLM vector of the reply (fitted
once per process on ``datasets/offer_replies.jsonl``, written replies that accept or
decline an offer) gives the probability that it accepts, and that probability moves the
router's mass to ``human_request`` (the reviewer then escalates it like any request for
a person). Declines ("no thanks, that helped") leave the router's reading as it was.
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from chat.assistant.contract import Intent
from chat.assistant.embeddings import embed_query, embed_texts, inference_run

PERSON_OFFER = "Would you like me to bring in a member of our team?"
EXAMPLES = Path(__file__).with_name("datasets") / "offer_replies.jsonl"
HUMAN_REQUEST = "human_request"


def person_offered(history: list[dict[str, Any]], question: str = "") -> bool:
    """The support side's last message in ``history`` (before the customer's current
    one) was the assistant's offer of a person."""
    for item in reversed(history):
        role, text = item.get("role"), str(item.get("text") or "")
        if role == "customer":
            if text.strip() == question.strip():
                continue  # the current message, already stored
            return False
        if role in {"assistant", "agent"}:
            return role == "assistant" and PERSON_OFFER in text
    return False


@lru_cache(maxsize=1)
def offer_model() -> tuple[np.ndarray, float]:
    """(weights, bias) of "the reply accepts the offer" over the reply's MiniLM vector.
    Runs the encoder: call it on the inference thread."""
    from sklearn.linear_model import LogisticRegression

    rows = [json.loads(line) for line in EXAMPLES.read_text().splitlines() if line.strip()]
    vectors = embed_texts([row["text"] for row in rows])
    labels = np.asarray([bool(row["accepts"]) for row in rows])
    model = LogisticRegression(C=10.0, max_iter=2000).fit(vectors, labels)
    return np.asarray(model.coef_[0], dtype=np.float32), float(model.intercept_[0])


def offer_acceptance(vector: np.ndarray) -> float:
    """The probability that a reply (its MiniLM vector) accepts the offer."""
    weights, bias = offer_model()
    z = float(np.asarray(vector, dtype=np.float32) @ weights) + bias
    return 1.0 / (1.0 + float(np.exp(-max(min(z, 50.0), -50.0))))


def intent_after_offer(intent: Intent, accepts: float, reply: str) -> Intent:
    """The router's reading of a reply to the offer: with probability ``accepts`` the
    reply asks for a person, otherwise it means what the router read."""
    scores = {label: (1.0 - accepts) * p for label, p in (intent.scores or {}).items()}
    scores[HUMAN_REQUEST] = scores.get(HUMAN_REQUEST, 0.0) + accepts
    label = max(scores, key=lambda k: scores[k])
    return replace(
        intent,
        label=label,
        confidence=scores[label],
        scores=scores,
        evidence=reply if label == HUMAN_REQUEST else intent.evidence,
    )


async def offer_reply_intent(intent: Intent, reply: str) -> Intent:
    """``intent_after_offer`` with the reply's acceptance from the local model."""
    if not offer_model.cache_info().currsize:
        await inference_run(offer_model)
    vector = await embed_query(reply)
    return intent_after_offer(intent, offer_acceptance(vector), reply)
