"""The agent console pages (/agent/). Live parts run over the agent sockets; actions
call the escalation API."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.csrf import ensure_csrf_cookie

from chat.models import INTENT_LABELS, Conversation
from escalation import selectors
from escalation.models import ESCALATING_INTENTS, AgentPresence, Ticket


def _require_agent(request: HttpRequest) -> None:
    if not selectors.is_agent(request.user):
        raise PermissionDenied("The agent console is for agents.")


@login_required
@ensure_csrf_cookie
def inbox(request: HttpRequest) -> HttpResponse:
    _require_agent(request)
    presence = AgentPresence.objects.filter(agent_id=request.user.pk).first()
    return render(
        request,
        "escalation/inbox.html",
        {"on_duty": bool(presence and presence.on_duty)},
    )


@login_required
@ensure_csrf_cookie
def conversation_detail(request: HttpRequest, conversation_id: str) -> HttpResponse:
    _require_agent(request)
    conversation = get_object_or_404(
        Conversation.objects.select_related("assigned_agent", "customer"), pk=conversation_id
    )
    ticket = (
        Ticket.objects.filter(conversation=conversation).select_related("assigned_agent").first()
    )
    return render(
        request,
        "escalation/conversation.html",
        {
            "conversation": conversation,
            "ticket": ticket,
            "decisions": selectors.conversation_decisions(conversation=conversation)[:100],
            "canned_replies": selectors.canned_replies(),
            "outcomes": [Ticket.Outcome.APPROVED, Ticket.Outcome.REJECTED],
            "intent_labels": INTENT_LABELS,
            "escalating_intents": ESCALATING_INTENTS,
        },
    )
