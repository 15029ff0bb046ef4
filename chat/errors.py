"""One error family for every app, and its one shape on the wire: ``{code, message}``.

Services raise an ``ApplicationError`` (or a subclass) when they refuse a request. The
DRF exception handler below turns it, and DRF's own errors, into an HTTP response with
that body; the JSON-frame socket base (``chat.sockets``) turns it into an ``error`` frame
with the same code. ``chat`` is the lowest layer, so every app can subclass these.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    """A request the platform refuses. ``code`` is stable (clients switch on it),
    ``message`` is for people, ``status`` is the HTTP status the API answers with."""

    code = "invalid"
    status = 400

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        fields: dict[str, list[str]] | None = None,
    ):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status
        # Per-field problems ({"manifest": ["line 3: ..."]}), sent as ``fields``.
        self.fields = fields

    def body(self) -> dict[str, Any]:
        extra = {"fields": self.fields} if self.fields else {}
        return error_body(self.code, self.message, **extra)


class NotFound(ApplicationError):
    code = "not_found"
    status = 404


class Forbidden(ApplicationError):
    code = "forbidden"
    status = 403


class Conflict(ApplicationError):
    code = "conflict"
    status = 409


class RateLimited(ApplicationError):
    code = "rate_limited"
    status = 429


class Unavailable(ApplicationError):
    code = "unavailable"
    status = 503


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The body of every API error and the payload of every socket error frame."""
    return {"code": code, "message": message, **extra}


# DRF's exception classes map to these codes; anything else keeps DRF's own code.
_DRF_MESSAGES = {
    "parse_error": "The request body could not be read.",
    "invalid": "Some fields are invalid.",
}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Any:
    """DRF ``EXCEPTION_HANDLER``: ``ApplicationError`` and DRF's errors as {code, message}.

    Validation errors (DRF's and Django's, from a service's ``full_clean``) keep their
    per-field details under ``fields``; Django's ``PermissionDenied`` keeps its message.
    Anything else is left to DRF (and becomes a 500, which the tests treat as a bug).
    """
    from rest_framework import exceptions
    from rest_framework.response import Response
    from rest_framework.views import set_rollback

    if isinstance(exc, ApplicationError):
        set_rollback()
        headers = {"Retry-After": "60"} if exc.status == 429 else {}
        return Response(exc.body(), status=exc.status, headers=headers)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        )
    if not isinstance(exc, exceptions.APIException):
        return None
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]
    set_rollback()
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        body = error_body("invalid", _DRF_MESSAGES["invalid"])
        if isinstance(detail, dict):
            body["fields"] = detail
            first = next(iter(detail.values()), None)
            if isinstance(first, list) and first:
                body["message"] = f"{next(iter(detail))}: {first[0]}"
        elif isinstance(detail, list) and detail:
            body["message"] = str(detail[0])
        return Response(body, status=exc.status_code, headers=headers)
    code = exc.default_code if isinstance(exc.default_code, str) else "error"
    message = str(exc.detail) if not isinstance(exc.detail, dict | list) else str(exc)
    return Response(
        error_body(code, _DRF_MESSAGES.get(code, message)),
        status=exc.status_code,
        headers=headers,
    )
