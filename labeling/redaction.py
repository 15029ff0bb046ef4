"""Redaction of personal data in exported training text (the patterns are chat's,
``chat.personal_data``)."""

from __future__ import annotations

from typing import Any

from chat.personal_data import redact_text

__all__ = ["redact_row", "redact_text"]


def redact_row(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of a snapshot row with every string value redacted."""
    return {
        key: redact_text(value) if isinstance(value, str) else value for key, value in data.items()
    }
