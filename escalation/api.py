"""The escalation API: tickets (list, filter, claim, resolve, hand back, close), domain
events, webhooks with their delivery log, agent presence, and the Step Functions callback."""

from __future__ import annotations

import hmac
import time
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat.clients import AddressAnonThrottle
from chat.errors import ApplicationError, Unavailable
from chat.models import Conversation
from chat.payloads import PayloadError, json_loads_bounded
from chat.serializers import ErrorSerializer
from escalation import selectors, services
from escalation.models import DomainEvent, Ticket, Webhook
from escalation.serializers import (
    AssignSerializer,
    CallbackResponseSerializer,
    CallbackSerializer,
    CloseSerializer,
    DomainEventSerializer,
    FlagResponseSerializer,
    FlagSerializer,
    KnowledgeDraftCreatedSerializer,
    PresenceSerializer,
    PresenceStateSerializer,
    ResolveSerializer,
    TicketDetailSerializer,
    TicketSerializer,
    WebhookDeliverySerializer,
    WebhookSerializer,
)

SIGNATURE_HEADER = "X-Loopdesk-Signature"
TIMESTAMP_HEADER = "X-Loopdesk-Timestamp"
TIMESTAMP_MAX_DIGITS = 12
SIGNATURE_MAX_CHARS = 200
# A callback carries a ticket id and a task token (at most 2,048 characters).
CALLBACK_MAX_BYTES = 16 * 1024


class CallbackUnauthenticated(ApplicationError):
    code = "unsigned"
    status = 401


class IsAgent(permissions.BasePermission):
    message = "Only agents may use the escalation API."

    def has_permission(self, request: Request, view: Any) -> bool:
        return selectors.is_agent(request.user)


class ManagesWebhooks(permissions.BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.has_perm("escalation.change_webhook"))


class NewestFirst(CursorPagination):
    ordering = "-id"


def _agent(request: Request) -> User:
    """The signed-in agent (IsAgent already refused anonymous callers)."""
    assert isinstance(request.user, User)
    return request.user


@extend_schema(
    parameters=[
        OpenApiParameter("status", str, enum=Ticket.Status.values),
        OpenApiParameter("priority", str),
        OpenApiParameter("reason", str),
        OpenApiParameter("mine", bool, description="Only tickets assigned to me"),
    ]
)
class TicketViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = TicketSerializer
    permission_classes = [IsAgent]
    pagination_class = NewestFirst

    def get_queryset(self):  # type: ignore[override]
        tickets = Ticket.objects.select_related("assigned_agent")
        params = self.request.query_params
        for field in ("status", "priority", "reason"):
            if params.get(field):
                tickets = tickets.filter(**{field: params[field]})
        if params.get("mine") in ("1", "true"):
            tickets = tickets.filter(assigned_agent=self.request.user)
        return tickets

    def get_serializer_class(self):  # type: ignore[override]
        return TicketSerializer if self.action == "list" else TicketDetailSerializer

    def _respond(self, ticket: Ticket) -> Response:
        ticket = Ticket.objects.select_related("assigned_agent").get(pk=ticket.pk)
        return Response(TicketDetailSerializer(ticket).data)

    @extend_schema(request=None, responses=TicketDetailSerializer)
    @action(detail=True, methods=["post"])
    def claim(self, request: Request, pk: str | None = None) -> Response:
        """Take over the ticket's conversation; of racing agents exactly one wins (409 else)."""
        ticket = services.ticket_claim(ticket=self.get_object(), agent=_agent(request))
        return self._respond(ticket)

    @extend_schema(request=ResolveSerializer, responses=TicketDetailSerializer)
    @action(detail=True, methods=["post"])
    def resolve(self, request: Request, pk: str | None = None) -> Response:
        body = ResolveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        ticket = services.ticket_resolve(
            ticket=self.get_object(), agent=_agent(request), **body.validated_data
        )
        return self._respond(ticket)

    @extend_schema(request=CloseSerializer, responses=TicketDetailSerializer)
    @action(detail=True, methods=["post"])
    def close(self, request: Request, pk: str | None = None) -> Response:
        body = CloseSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        ticket = services.ticket_close(
            ticket=self.get_object(), agent=_agent(request), **body.validated_data
        )
        return self._respond(ticket)

    @extend_schema(request=None, responses=TicketDetailSerializer)
    @action(detail=True, methods=["post"], url_path="hand-back")
    def hand_back(self, request: Request, pk: str | None = None) -> Response:
        ticket = self.get_object()
        services.conversation_hand_back(conversation=ticket.conversation, agent=_agent(request))
        return self._respond(ticket)

    @extend_schema(request=AssignSerializer, responses=TicketDetailSerializer)
    @action(detail=True, methods=["post"])
    def assign(self, request: Request, pk: str | None = None) -> Response:
        """Supervisors: give the ticket to an agent (whatever their capacity), or with
        ``{"agent": null}`` back to the queue. Others get 403."""
        body = AssignSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        agent = None
        if body.validated_data["agent"] is not None:
            agent = User.objects.filter(pk=body.validated_data["agent"], is_active=True).first()
            if agent is None or not selectors.is_agent(agent):
                raise services.EscalationError("That person is not support staff.")
        ticket = services.ticket_reassign(ticket=self.get_object(), agent=agent, by=_agent(request))
        return self._respond(ticket)

    @extend_schema(request=None, responses={201: KnowledgeDraftCreatedSerializer})
    @action(detail=True, methods=["post"], url_path="knowledge-draft")
    def knowledge_draft(self, request: Request, pk: str | None = None) -> Response:
        """Turn the resolved conversation into an unpublished expert article draft."""
        draft = services.knowledge_draft_create(ticket=self.get_object(), author=_agent(request))
        return Response(
            {"draft_id": draft.pk, "article": draft.article.slug}, status=status.HTTP_201_CREATED
        )


class ConversationTakeOverView(APIView):
    permission_classes = [IsAgent]

    @extend_schema(request=None, responses=TicketSerializer)
    def post(self, request: Request, conversation_id: str) -> Response:
        """Take over a conversation (opens a ticket when none is active)."""
        conversation = get_object_or_404(Conversation, pk=conversation_id)
        ticket = services.conversation_take_over(conversation=conversation, agent=_agent(request))
        return Response(TicketSerializer(ticket).data)


class ConversationFlagView(APIView):
    permission_classes = [IsAgent]

    @extend_schema(request=FlagSerializer, responses={201: FlagResponseSerializer})
    def post(self, request: Request, conversation_id: str) -> Response:
        """Flag a message the assistant kept that should have come to a person (with the
        category): it becomes a training row for the intent router."""
        from chat.models import Message
        from escalation.services.intents import conversation_flag

        conversation = get_object_or_404(Conversation, pk=conversation_id)
        body = FlagSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        message = None
        if body.validated_data.get("message_id"):
            message = get_object_or_404(
                Message, pk=body.validated_data["message_id"], conversation=conversation
            )
        example = conversation_flag(
            conversation=conversation,
            agent=_agent(request),
            category=body.validated_data["category"],
            message=message,
            note=body.validated_data["note"],
        )
        return Response(
            {
                "example_id": example.pk,
                "category": example.label,
                "message_id": example.message_id,
            },
            status=status.HTTP_201_CREATED,
        )


class PresenceView(APIView):
    """Your own duty switch and capacity (how many tickets the queue gives you at once)."""

    permission_classes = [IsAgent]

    @extend_schema(responses=PresenceStateSerializer)
    def get(self, request: Request) -> Response:
        return Response(selectors.agent_console_state(agent=_agent(request)))

    @extend_schema(request=PresenceSerializer, responses=PresenceStateSerializer)
    def post(self, request: Request) -> Response:
        body = PresenceSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        agent = _agent(request)
        if "capacity" in body.validated_data:
            services.agent_capacity_set(agent=agent, capacity=body.validated_data["capacity"])
        if "on_duty" in body.validated_data:
            services.agent_presence_set(agent=agent, on_duty=body.validated_data["on_duty"])
        return Response(selectors.agent_console_state(agent=agent))


@extend_schema(parameters=[OpenApiParameter("name", str, enum=DomainEvent.Name.values)])
class DomainEventViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = DomainEventSerializer
    permission_classes = [IsAgent]
    pagination_class = NewestFirst

    def get_queryset(self):  # type: ignore[override]
        events = DomainEvent.objects.all()
        if self.request.query_params.get("name"):
            events = events.filter(name=self.request.query_params["name"])
        return events


class WebhookViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = WebhookSerializer
    permission_classes = [ManagesWebhooks]
    pagination_class = NewestFirst
    queryset = Webhook.objects.all()

    @extend_schema(responses=WebhookDeliverySerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def deliveries(self, request: Request, pk: str | None = None) -> Response:
        deliveries = self.get_object().deliveries.select_related("event")[:100]
        return Response(WebhookDeliverySerializer(deliveries, many=True).data)


class CallbackThrottle(AddressAnonThrottle):
    rate = "120/min"


def callback_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, "<timestamp>." + body)."""
    return services.signature_for(secret=secret, body=timestamp.encode() + b"." + body)


class StepFunctionsCallbackView(APIView):
    """The Step Functions Lambda posts the ``.waitForTaskToken`` token of a ticket.

    Authenticated by HMAC: ``X-Loopdesk-Timestamp`` (unix seconds, within
    ESCALATION_CALLBACK_MAX_SKEW_SECONDS) and ``X-Loopdesk-Signature: sha256=<hex>`` of
    HMAC-SHA256(STEP_FUNCTIONS_CALLBACK_SECRET, timestamp + "." + raw body).
    The token is answered (once) when the agent resolves or the ticket is closed.
    """

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    throttle_classes = [CallbackThrottle]

    @extend_schema(
        request=CallbackSerializer,
        responses={
            200: CallbackResponseSerializer,
            201: CallbackResponseSerializer,
            400: ErrorSerializer,
            401: ErrorSerializer,
            404: ErrorSerializer,
            409: ErrorSerializer,
            503: ErrorSerializer,
        },
        parameters=[
            OpenApiParameter(SIGNATURE_HEADER, str, OpenApiParameter.HEADER, required=True),
            OpenApiParameter(TIMESTAMP_HEADER, str, OpenApiParameter.HEADER, required=True),
        ],
    )
    def post(self, request: Request) -> Response:
        secret = settings.STEP_FUNCTIONS_CALLBACK_SECRET
        if not secret:
            raise Unavailable("Callbacks are not configured.", code="not_configured")
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        # ASCII digits only, as long as a unix time: int() must never see "²³" or 5,000
        # digits (both were a 500 before the signature was checked).
        if not (
            timestamp.isascii()
            and timestamp.isdigit()
            and len(timestamp) <= TIMESTAMP_MAX_DIGITS
            and signature.isascii()
            and 0 < len(signature) <= SIGNATURE_MAX_CHARS
        ):
            raise CallbackUnauthenticated(
                f"{TIMESTAMP_HEADER} (unix seconds) and {SIGNATURE_HEADER} are required.",
                code="unsigned",
            )
        if abs(time.time() - int(timestamp)) > settings.ESCALATION_CALLBACK_MAX_SKEW_SECONDS:
            raise CallbackUnauthenticated(
                "The timestamp is too old or in the future.", code="stale"
            )
        raw = request.body
        if len(raw) > CALLBACK_MAX_BYTES:
            raise PayloadError(
                f"That is too large (at most {CALLBACK_MAX_BYTES} bytes).", code="too_large"
            )
        expected = callback_signature(secret=secret, timestamp=timestamp, body=raw)
        if not hmac.compare_digest(expected, signature):
            raise CallbackUnauthenticated("The signature does not match.", code="bad_signature")
        data = json_loads_bounded(raw, max_bytes=CALLBACK_MAX_BYTES, max_depth=4)
        body = CallbackSerializer(data=data if isinstance(data, dict) else {})
        body.is_valid(raise_exception=True)
        callback, created = services.workflow_callback_register(**body.validated_data)
        return Response(
            {"callback_id": callback.pk, "state": callback.state, "created": created},
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )
