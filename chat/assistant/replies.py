"""Short replies that need no knowledge base: small talk and polite refusals.

The same for every provider (deterministic, so a greeting never gets a hallucinated
answer and a refusal always offers a person).
"""

from __future__ import annotations

import re

OUT_OF_SCOPE = (
    "I'm sorry, I can't help with that here: I can only answer questions about "
    "Brightwave's plans, bills, the app and the Hub. If you need something else from "
    "our team, press \u201cTalk to a person\u201d."
)

_THANKS = re.compile(r"\b(thanks?|thank\s*(you|u)|thx|ty|cheers|ta|appreciate|grateful)\b", re.I)
_BYE = re.compile(
    r"\b(bye|goodbye|good night|see (you|ya)|later|that'?s all|cya|take care)\b", re.I
)
_HELLO = re.compile(r"\b(hi|hello|hey|hiya|howdy|good (morning|afternoon|evening)|yo)\b", re.I)
_BOT = re.compile(r"\b(bot|robot|ai|human|real person|machine)\b", re.I)
_HOW_ARE_YOU = re.compile(r"\bhow (are|r) (you|u)\b|\bhow'?s it going\b", re.I)

SMALL_TALK = {
    "thanks": "You're welcome! Is there anything else I can help you with?",
    "bye": "Thanks for chatting with Brightwave. Goodbye, and have a good day!",
    "hello": "Hello! I'm Brightwave's assistant. How can I help you today?",
    "bot": (
        "I'm Brightwave's virtual assistant. I answer from our help articles, and I can "
        "bring in a person from our team whenever you like."
    ),
    "how_are_you": "I'm doing well, thank you for asking! How can I help you today?",
    "other": "Happy to help! What would you like to know?",
}


def small_talk_kind(text: str) -> str:
    """Which small-talk reply fits the message (thanks, bye, hello, bot, ...)."""
    if _THANKS.search(text):
        return "bye" if _BYE.search(text) else "thanks"
    if _BYE.search(text):
        return "bye"
    if _HOW_ARE_YOU.search(text):
        return "how_are_you"
    if _BOT.search(text) and "?" in text:
        return "bot"
    if _HELLO.search(text):
        return "hello"
    return "other"


def small_talk_reply(text: str) -> str:
    return SMALL_TALK[small_talk_kind(text)]
