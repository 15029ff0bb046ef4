"""Query strings every database can use: a NUL character (``%00``) in any query parameter
is refused with a 400 before a view filters on it. PostgreSQL cannot compare text with a
NUL in it, so a list filter, an admin search or a lookup would otherwise end in a
database error (a 500). Request bodies are bounded where they are parsed
(``chat.payloads``, ``chat.parsers``, Django's forms)."""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import BadRequest
from django.http import HttpRequest, HttpResponse, JsonResponse

from chat.errors import error_body


class UnstorableQueryMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.META.get("QUERY_STRING", "") or any(
            "\x00" in key or any("\x00" in value for value in values)
            for key, values in request.GET.lists()
        ):
            message = "The query string contains a NUL character."
            if request.path.startswith("/api/"):
                return JsonResponse(error_body("invalid_characters", message), status=400)
            raise BadRequest(message)
        return self.get_response(request)
