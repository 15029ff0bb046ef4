"""The customer chat page and the one call it makes over HTTP (starting a conversation).

Everything else the page does goes over the WebSocket (docs/chat-protocol.md).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST

from chat import services
from chat.clients import client_address
from chat.errors import ApplicationError, error_body
from chat.payloads import json_loads_bounded
from chat.selectors import conversations_for_customer, display_name
from chat.visitors import (
    VISITOR_COOKIE,
    VISITOR_MAX_AGE,
    rate_subject,
    visitor_id_from_token,
    visitor_token_issue,
)

VISITOR_SESSION_KEY = "chat_visitor_id"
# The start call carries at most a title.
START_MAX_BYTES = 16 * 1024
START_MAX_DEPTH = 4


def _visitor(request: HttpRequest) -> tuple[str, str | None]:
    """(visitor id, new token to set or None) from the signed cookie."""
    visitor_id = visitor_id_from_token(request.COOKIES.get(VISITOR_COOKIE))
    if visitor_id:
        return visitor_id, None
    return visitor_token_issue()


def _remember_visitor(
    request: HttpRequest, response: HttpResponse, visitor_id: str, token: str | None
) -> None:
    request.session[VISITOR_SESSION_KEY] = visitor_id
    if token:
        response.set_cookie(
            VISITOR_COOKIE,
            token,
            max_age=VISITOR_MAX_AGE,
            httponly=True,
            samesite="Lax",
            secure=request.is_secure(),
        )


@require_GET
@ensure_csrf_cookie
def chat_page(request: HttpRequest) -> HttpResponse:
    visitor_id, token = _visitor(request)
    owned = conversations_for_customer(user=request.user, visitor_id=visitor_id)
    current = ""
    try:
        wanted = uuid.UUID(request.GET.get("c", ""))
    except ValueError:
        wanted = None
    if wanted is not None and owned.filter(pk=wanted).exists():
        current = str(wanted)
    recent = [
        {
            "id": str(c.pk),
            "title": c.title or "Conversation",
            "status": c.status,
            "created_at": c.created_at.isoformat(),
        }
        for c in owned.order_by("-created_at")[:30]
    ]
    user = request.user
    config = {
        "conversationId": current,
        "conversations": recent,
        "startUrl": reverse("chat:start"),
        "wsPath": "/ws/chat/",
        "provider": settings.ASSISTANT_PROVIDER,
        "maxChars": settings.CHAT_MAX_MESSAGE_CHARS,
        "userName": display_name(user),
        # The page stops showing "thinking" this long after a turn started (the server
        # normally says sooner that the turn failed).
        "turnTimeoutMs": int((settings.ASSISTANT_TIMEOUT_SECONDS + 5) * 1000),
    }
    response = render(request, "chat/index.html", {"config": config, "recent": recent})
    _remember_visitor(request, response, visitor_id, token)
    return response


@require_POST
def conversation_start_view(request: HttpRequest) -> JsonResponse:
    """POST {"title"?} -> {"id"}: a new conversation owned by this visitor / customer."""
    visitor_id, token = _visitor(request)
    user = request.user if request.user.is_authenticated else None
    try:
        body = json_loads_bounded(
            request.body or b"{}", max_bytes=START_MAX_BYTES, max_depth=START_MAX_DEPTH
        )
        title = body.get("title", "") if isinstance(body, dict) else ""
        conversation = services.conversation_start(
            customer=user,
            visitor_id=visitor_id,
            rate_subject=rate_subject(
                user=request.user, visitor_id=visitor_id, address=client_address(request.META)
            ),
            title=title if isinstance(title, str) else "",
        )
    except ApplicationError as exc:
        return JsonResponse(error_body(exc.code, exc.message), status=exc.status)
    response = JsonResponse({"id": str(conversation.pk)}, status=201)
    _remember_visitor(request, response, visitor_id, token)
    return response
