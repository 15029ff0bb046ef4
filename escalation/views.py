"""The agent console pages (/agent/). Live parts run over the agent sockets; actions
call the escalation API."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.csrf import ensure_csrf_cookie

from chat.models import INTENT_LABELS, Conversation
from chat.selectors import display_name
from escalation import selectors
from escalation.models import AGENT_CAPACITY_MAX, ESCALATING_INTENTS, Ticket


def _require_agent(request: HttpRequest) -> None:
    if not selectors.is_agent(request.user):
        raise PermissionDenied("The agent console is for agents.")


@login_required
@ensure_csrf_cookie
def inbox(request: HttpRequest) -> HttpResponse:
    _require_agent(request)
    return render(
        request,
        "escalation/inbox.html",
        {
            "me": selectors.agent_console_state(agent=request.user),
            "capacity_max": AGENT_CAPACITY_MAX,
        },
    )


@login_required
@ensure_csrf_cookie
def conversation_detail(request: HttpRequest, conversation_id: str) -> HttpResponse:
    _require_agent(request)
    conversation = get_object_or_404(
        Conversation.objects.select_related("assigned_agent", "customer"), pk=conversation_id
    )
    supervisor = selectors.is_supervisor(request.user)
    ticket = selectors.ticket_summary_for_conversation(conversation_id=conversation.pk)
    return render(
        request,
        "escalation/conversation.html",
        {
            "conversation": conversation,
            "ticket": ticket,
            "console": {
                "conversationId": str(conversation.pk),
                "me": request.user.pk,
                "supervisor": supervisor,
                "handling": conversation.handling,
                "conversationStatus": conversation.status,
                "agentName": display_name(conversation.assigned_agent),
                "ticket": ticket,
            },
            "brief": selectors.handoff_brief(conversation_id=conversation.pk),
            "audit": selectors.decision_audit(conversation=conversation),
            "canned_replies": selectors.canned_replies(),
            "outcomes": [Ticket.Outcome.APPROVED, Ticket.Outcome.REJECTED],
            "intent_labels": INTENT_LABELS,
            "escalating_intents": ESCALATING_INTENTS,
            "agents": selectors.agents_for_reassignment() if supervisor else [],
        },
    )
