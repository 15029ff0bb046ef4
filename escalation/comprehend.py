"""Amazon Comprehend toxicity detection (DetectToxicContent), the one place that calls it."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import boto3
from django.conf import settings


@lru_cache(maxsize=1)
def client() -> Any:
    """The boto3 Comprehend client (cached; tests wrap it in a botocore Stubber)."""
    return boto3.client("comprehend", region_name=settings.AWS_REGION)


def toxicity_detect(*, text: str, language_code: str = "en") -> dict[str, Any]:
    """Overall toxicity of ``text`` between 0 and 1 and the per-label scores.

    Comprehend limits a segment to 1 KB of UTF-8, so long messages are split into
    segments and the worst segment counts.
    """
    segments = _segments(text) or [" "]
    response = client().detect_toxic_content(
        TextSegments=[{"Text": segment} for segment in segments], LanguageCode=language_code
    )
    results = response.get("ResultList", [])
    worst: dict[str, Any] = max(results, key=lambda r: r.get("Toxicity", 0.0), default={})
    return {
        "toxicity": float(worst.get("Toxicity", 0.0)),
        "labels": {label["Name"]: label["Score"] for label in worst.get("Labels", [])},
    }


def _segments(text: str, limit: int = 1000) -> list[str]:
    segments, current = [], ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if len(candidate.encode()) > limit and current:
            segments.append(current)
            current = word[:limit]
        else:
            current = candidate[: limit * 4]
    if current:
        segments.append(current)
    return segments[:10]  # the API takes at most 10 segments per call
