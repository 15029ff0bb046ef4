"""Personal data in text: e-mail addresses, card- and IBAN-like numbers and phone
numbers, replaced with placeholders. Pattern-based: it catches the common shapes, not
every possible one. Used wherever text leaves the conversation it was written in (training
exports, answers from the team reused for other customers).
"""

from __future__ import annotations

import re
from functools import partial

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")
# 13-19 digits, optionally grouped by spaces or dashes (payment cards).
CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
# +49 30 1234567, (555) 123-4567, 030/1234567: 7+ digits with separators.
PHONE = re.compile(r"(?<![\w(])(?:\+|00)?\(?\d[\d ()/.-]{6,}\d(?![\w])")
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

PLACEHOLDERS = (
    (EMAIL, "[EMAIL]"),
    (IBAN, "[IBAN]"),
    (CARD, "[CARD]"),
    (PHONE, "[PHONE]"),
)


def redact_text(text: str) -> str:
    for pattern, placeholder in PLACEHOLDERS:
        text = pattern.sub(partial(_keep_short, placeholder=placeholder), text)
    return text


def _keep_short(match: re.Match[str], placeholder: str) -> str:
    # Version numbers, prices and dates ("2.4", "€89", "2024-05-01") have few digits.
    digits = sum(ch.isdigit() for ch in match.group(0))
    if placeholder == "[PHONE]" and (digits < 7 or ISO_DATE.fullmatch(match.group(0))):
        return match.group(0)
    return placeholder
