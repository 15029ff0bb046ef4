"""Bounds on what clients send: JSON size and depth, and text every database can store.

One place for the checks the chat and agent sockets, the chat page's HTTP calls and the
API's parser apply, so that hostile input (huge, deeply nested, lone surrogates, NUL
characters, wrong types) is refused with a clear error instead of reaching the database.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django import forms
from django.conf import settings

from chat.errors import ApplicationError

# Lone UTF-16 surrogates (from "\ud800" escapes) and NUL cannot be stored by PostgreSQL
# (and SQLite's driver refuses surrogates): refuse them where text enters.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class PayloadError(ApplicationError):
    code = "invalid_payload"


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """True when ``value`` nests lists/objects deeper than ``limit`` (iterative)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in item)
    return False


def _max_bracket_depth(text: str | bytes, stop_at: int) -> int:
    """Nesting depth of brackets outside strings, stopping early past ``stop_at``.

    Run before ``json.loads``: the decoder recurses per level and a 20 KB frame of
    10,000 brackets must not reach it."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if text.count("[") + text.count("{") <= stop_at:
        return 0  # cannot nest deeper than it has brackets (the usual case: no scan)
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > stop_at:
                    return deepest
        elif char in "]}":
            depth -= 1
    return deepest


def json_loads_bounded(text: str | bytes, *, max_bytes: int, max_depth: int) -> Any:
    """Parse client JSON within bounds; ``PayloadError`` with a specific code otherwise."""
    size = len(text.encode() if isinstance(text, str) else text)
    if size > max_bytes:
        raise PayloadError(f"That is too large (at most {max_bytes} bytes).", code="too_large")
    if _max_bracket_depth(text, max_depth) > max_depth:
        raise PayloadError(
            f"That is nested too deeply (at most {max_depth} levels).", code="too_deep"
        )
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise PayloadError("That is not valid JSON.", code="malformed_json") from exc


def text_unstorable(value: str) -> bool:
    return _UNSTORABLE.search(value) is not None


def strings_storable(value: Any) -> bool:
    """Every string (keys included) in a parsed JSON value can be stored."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if text_unstorable(item):
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def text_field(value: Any, *, name: str, max_chars: int, required: bool = True) -> str:
    """A client-supplied text field: a string, stripped, within ``max_chars``, storable."""
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise PayloadError(f"{name} must be text.", code=f"invalid_{name}")
    if text_unstorable(value):
        raise PayloadError(
            f"{name} contains characters that cannot be stored.", code="invalid_characters"
        )
    value = value.strip()
    if required and not value:
        raise PayloadError(f"{name} is empty.", code=f"empty_{name}")
    if len(value) > max_chars:
        raise PayloadError(
            f"{name} is too long ({len(value)} characters, at most {max_chars}).",
            code=f"{name}_too_long",
        )
    return value


class BoundedJSONFormField(forms.JSONField):
    """Django's ``forms.JSONField`` for text people type in the admin, within the socket
    bounds (``SOCKET_MAX_FRAME_BYTES`` / ``_DEPTH``) and with storable strings only: deep
    nesting was a RecursionError (500) and a NUL escape a PostgreSQL error. Used through
    ``formfield_overrides`` or declared on a form."""

    def bound_data(self, data: Any, initial: Any) -> Any:
        """Show refused input again as typed (parsing it again is what failed)."""
        if self.disabled or not isinstance(data, str) or data in self.empty_values:
            return super().bound_data(data, initial)
        try:
            self._parse(data)
        except forms.ValidationError:
            return forms.fields.InvalidJSONInput(data)
        return super().bound_data(data, initial)

    def to_python(self, value: Any) -> Any:
        if self.disabled or not isinstance(value, str) or value in self.empty_values:
            return super().to_python(value)
        self._parse(value)
        return super().to_python(value)

    def _parse(self, value: str) -> Any:
        try:
            parsed = json_loads_bounded(
                value,
                max_bytes=settings.SOCKET_MAX_FRAME_BYTES,
                max_depth=settings.SOCKET_MAX_FRAME_DEPTH,
            )
        except PayloadError as exc:
            raise forms.ValidationError(exc.message, code=exc.code) from exc
        if not strings_storable(parsed):
            raise forms.ValidationError(
                "This contains characters that cannot be stored (NUL or lone surrogates).",
                code="invalid_characters",
            )
        return parsed
