"""Streamed JSON Lines exports (snapshots, manifests): constant memory at any size."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from django.http import StreamingHttpResponse

from labeling.models import DatasetSnapshot
from labeling.redaction import redact_row
from labeling.selectors import snapshot_rows

JSONL_CONTENT_TYPE = "application/jsonl; charset=utf-8"


def jsonl_response(lines: Iterable[str], filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(lines, content_type=JSONL_CONTENT_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def snapshot_export_lines(
    *, snapshot: DatasetSnapshot, kind: str, split: str | None = None, redact: bool = False
) -> Iterator[str]:
    """One JSON object per line; ``redact`` applies redaction on the way out as well
    (useful for a snapshot frozen without it)."""
    for data in snapshot_rows(snapshot=snapshot, kind=kind, split=split):
        yield json.dumps(redact_row(data) if redact else data, ensure_ascii=False) + "\n"
