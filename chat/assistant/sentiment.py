"""The internal sentiment check the blog runs before a draft is shown.

``local``/``hf``: VADER's compound score. ``bedrock``: the blog's prompt ("find the
sentiment ..., respond 0 if positive and respond 1 if negative") on the chat model.
Results are stored on the turn (``Turn.sentiment_*``), never shown to the customer.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from django.conf import settings
from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import PromptTemplate

from chat.assistant.contract import Sentiment

# The blog's prompt, verbatim apart from the variable name.
SENTIMENT_PROMPT = PromptTemplate.from_template(
    "Find the sentiment of below sentence, respond 0 if positive and respond 1 if negative\n{text}"
)


@lru_cache(maxsize=1)
def _vader() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


_SHOUTING = re.compile(r"\b[A-Z]{3,}\b|!")


def _shouting(text: str) -> bool:
    return bool(_SHOUTING.search(text))


def sentiment_vader(text: str) -> Sentiment:
    """VADER compound in [-1, 1]; "negative" only for clearly negative text.

    The cut-off (``ASSISTANT_NEGATIVE_SENTIMENT_BELOW``, default -0.5) is stricter than
    VADER's usual -0.05: support questions are full of words like "failed" and "error",
    and the blog escalates on *clear* negative sentiment only. Half that cut-off is
    enough when the customer is shouting (a word in capitals, an exclamation mark).
    """
    compound = float(_vader().polarity_scores(text)["compound"])
    threshold = float(settings.ASSISTANT_NEGATIVE_SENTIMENT_BELOW)
    if compound <= threshold or (compound <= threshold / 2 and _shouting(text)):
        label = "negative"
    elif compound >= 0.05:
        label = "positive"
    else:
        label = "neutral"
    return Sentiment(label=label, score=round(compound, 4), method="vader")


def sentiment_parse(output: str) -> Sentiment:
    """Read the model's 0/1 answer; anything else counts as not negative (and is kept)."""
    match = re.search(r"[01]", output)
    negative = bool(match and match.group() == "1")
    return Sentiment(
        label="negative" if negative else ("positive" if match else "neutral"),
        # Same sign convention as VADER's compound: -1 negative, +1 positive.
        score=-1.0 if negative else (1.0 if match else 0.0),
        method="bedrock",
        raw=output.strip()[:200],
    )


def sentiment_chain(model: BaseChatModel) -> Any:
    """prompt -> model -> text -> ``Sentiment``."""
    return SENTIMENT_PROMPT | model | StrOutputParser() | sentiment_parse
