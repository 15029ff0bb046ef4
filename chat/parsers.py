"""The API's JSON parser: DRF's, within the bounds of ``chat.payloads``."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.parsers import JSONParser

from chat.payloads import PayloadError, json_loads_bounded, strings_storable


class BoundedJSONParser(JSONParser):
    """JSON bodies within ``API_MAX_JSON_BYTES`` and ``API_MAX_JSON_DEPTH``, with storable
    strings only: a hostile body gets a 400 ``{code, message}`` (``too_large``,
    ``too_deep``, ``malformed_json``, ``invalid_characters``), never a RecursionError or
    a database error on PostgreSQL."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.API_MAX_JSON_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        data = json_loads_bounded(raw, max_bytes=limit, max_depth=settings.API_MAX_JSON_DEPTH)
        if not strings_storable(data):
            raise PayloadError(
                "The body contains characters that cannot be stored (NUL or lone surrogates).",
                code="invalid_characters",
            )
        return data
