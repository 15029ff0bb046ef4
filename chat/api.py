"""The chat API for integrations: conversations, messages (the same assistant turn as
the web chat), feedback and transcripts. Token or session auth."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from chat import serializers, services, turns
from chat.access import is_support_staff
from chat.clients import client_address
from chat.models import Conversation, Message
from chat.selectors import conversation_messages_after, conversations_for_customer
from chat.transcripts import transcript_export, transcript_path
from chat.visitors import rate_subject


class ConversationCursor(CursorPagination):
    ordering = "-created_at"
    page_size = 25
    page_size_query_param = "page_size"
    max_page_size = 100


class MessageCursor(CursorPagination):
    ordering = "seq"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


def _created_filter(value: str, *, lookup: str) -> dict[str, Any]:
    """``created_after`` / ``created_before`` take an ISO datetime or a whole day."""
    try:
        day = parse_date(value)
        moment = None if day else parse_datetime(value)
    except ValueError:
        day = moment = None
    if day is not None:
        return {f"created_at__date__{lookup}": day}
    if moment is None:
        raise ValidationError({"created": f"{value!r} is not an ISO date or datetime."})
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return {f"created_at__{lookup}": moment}


CONVERSATION_FILTERS = [
    OpenApiParameter("status", OpenApiTypes.STR, enum=Conversation.Status.values),
    OpenApiParameter("handling", OpenApiTypes.STR, enum=Conversation.Handling.values),
    OpenApiParameter("created_after", OpenApiTypes.STR, description="ISO date or datetime"),
    OpenApiParameter("created_before", OpenApiTypes.STR, description="ISO date or datetime"),
    OpenApiParameter("needs_attention", OpenApiTypes.BOOL),
]


class ConversationViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Customers see their own conversations; agents see every conversation."""

    serializer_class = serializers.ConversationSerializer
    pagination_class = ConversationCursor

    def get_queryset(self) -> QuerySet[Conversation]:
        user = self.request.user
        if is_support_staff(user):
            conversations = Conversation.objects.all()
        else:
            conversations = conversations_for_customer(user=user, visitor_id="")
        conversations = conversations.select_related("assigned_agent")
        if self.action != "list":
            return conversations
        params = self.request.query_params
        for field in ("status", "handling"):
            if params.get(field):
                conversations = conversations.filter(**{field: params[field]})
        if params.get("needs_attention") in ("true", "1", "false", "0"):
            conversations = conversations.filter(
                needs_attention=params["needs_attention"] in ("true", "1")
            )
        for param, lookup in (("created_after", "gte"), ("created_before", "lt")):
            if params.get(param):
                conversations = conversations.filter(
                    **_created_filter(params[param], lookup=lookup)
                )
        return conversations

    def _owned(self) -> Conversation:
        """The conversation if it is the caller's own (agents read, customers write)."""
        conversation = self.get_object()
        if conversation.customer_id != self.request.user.pk:
            raise PermissionDenied("Only the customer of this conversation can do that.")
        return conversation

    @extend_schema(parameters=CONVERSATION_FILTERS)
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        request=serializers.ConversationCreateSerializer,
        responses={201: serializers.ConversationSerializer},
    )
    def create(self, request: Request) -> Response:
        body = serializers.ConversationCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        conversation = services.conversation_start(
            customer=request.user,  # type: ignore[arg-type]
            visitor_id="",
            rate_subject=rate_subject(
                user=request.user, visitor_id="", address=client_address(request.META)
            ),
            channel=Conversation.Channel.API,
            title=body.validated_data["title"],
        )
        return Response(
            serializers.ConversationSerializer(conversation).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(
        methods=["GET"],
        parameters=[
            OpenApiParameter("after_seq", OpenApiTypes.INT, description="Only messages after it")
        ],
        responses=serializers.ConversationMessageSerializer(many=True),
        description="Messages in sequence order (cursor pagination on seq). Customers get "
        "the public ones; agents also get withheld drafts and internal notes.",
    )
    @extend_schema(
        methods=["POST"],
        request=serializers.MessageCreateSerializer,
        responses={201: serializers.TurnResultSerializer, 200: serializers.TurnResultSerializer},
        description="Send a customer message; it gets the same assistant turn as the web "
        "chat. Returns the stored message and the assistant's reply or the notice that "
        "replaced it. A retried client_id returns the stored message (200), never a copy.",
    )
    @action(detail=True, methods=["get", "post"], pagination_class=MessageCursor)
    def messages(self, request: Request, pk: str | None = None) -> Response:
        if request.method == "POST":
            return self._message_post(request)
        conversation = self.get_object()
        agent = is_support_staff(request.user)
        try:
            after = int(request.query_params.get("after_seq", 0))
        except ValueError as exc:
            raise ValidationError({"after_seq": "A whole number."}) from exc
        messages = conversation_messages_after(
            conversation=conversation, seq=after, audience="agent" if agent else "customer"
        )
        page = self.paginate_queryset(messages)
        serializer_class = (
            serializers.AgentMessageSerializer if agent else serializers.MessageSerializer
        )
        return self.get_paginated_response(serializer_class(page, many=True).data)

    def _message_post(self, request: Request) -> Response:
        conversation = self._owned()
        body = serializers.MessageCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        received = services.customer_message_receive(
            conversation=conversation,
            text=body.validated_data["text"],
            client_id=body.validated_data["client_id"],
            author=request.user,  # type: ignore[arg-type]
            rate_subject=rate_subject(
                user=request.user, visitor_id="", address=client_address(request.META)
            ),
            claim_owner=turns.process_owner(),
        )
        message = received.message
        if not received.created:
            kind = "duplicate"
        elif received.turn is None:
            kind = "silent"  # a person handles the conversation
        else:
            turn = async_to_sync(turns.turn_await)(
                turn_id=received.turn.pk,
                conversation_id=conversation.pk,
                claimed=received.claimed,
            )
            kind = turn.status
        replies = message.replies.filter(visibility=Message.Visibility.PUBLIC).order_by("seq")
        reply = replies.filter(role=Message.Role.ASSISTANT).first()
        notice = replies.filter(role=Message.Role.SYSTEM).first()
        data = {
            "outcome": kind,
            "message": serializers.MessageSerializer(message).data,
            "reply": serializers.MessageSerializer(reply).data if reply else None,
            "notice": serializers.MessageSerializer(notice).data if notice else None,
        }
        return Response(
            data, status=status.HTTP_201_CREATED if received.created else status.HTTP_200_OK
        )

    @extend_schema(
        request=serializers.FeedbackSerializer, responses={201: serializers.FeedbackSerializer}
    )
    @action(detail=True, methods=["post"])
    def feedback(self, request: Request, pk: str | None = None) -> Response:
        """The customer's 1-5 rating (strongly disagree ... strongly agree); replaces an
        earlier one."""
        conversation = self._owned()
        body = serializers.FeedbackSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        message = None
        if body.validated_data.get("message_id"):
            message = get_object_or_404(
                Message,
                pk=body.validated_data["message_id"],
                conversation=conversation,
                visibility=Message.Visibility.PUBLIC,
            )
        feedback = services.feedback_submit(
            conversation=conversation,
            score=body.validated_data["score"],
            better_answer=body.validated_data.get("better_answer", ""),
            comment=body.validated_data.get("comment", ""),
            message=message,
        )
        return Response(serializers.FeedbackSerializer(feedback).data, status=201)

    @extend_schema(request=None, responses=serializers.ConversationSerializer)
    @action(detail=True, methods=["post"])
    def end(self, request: Request, pk: str | None = None) -> Response:
        conversation = services.conversation_end(conversation=self._owned())
        return Response(serializers.ConversationSerializer(conversation).data)

    @extend_schema(
        methods=["GET"],
        responses={(200, "application/json"): OpenApiTypes.OBJECT},
        description="The conversation's last exported transcript (support staff only). "
        "Transcripts are never served from a public URL.",
    )
    @extend_schema(
        methods=["POST"],
        request=None,
        responses={201: serializers.TranscriptSerializer},
        description="Export the conversation as one JSON transcript to the configured "
        "storage (support staff only: it holds withheld drafts and internal checks). "
        "``url`` is this endpoint, which serves it to support staff.",
    )
    @action(detail=True, methods=["get", "post"])
    def transcript(self, request: Request, pk: str | None = None) -> Any:
        if not is_support_staff(request.user):
            raise PermissionDenied("Only support staff read or export transcripts.")
        conversation = self.get_object()
        url = request.build_absolute_uri(
            reverse("api:conversation-transcript", kwargs={"pk": conversation.pk})
        )
        if request.method == "POST":
            path = transcript_export(conversation=conversation)
            return Response({"path": path, "url": url}, status=201)
        path = transcript_path(conversation)
        if not default_storage.exists(path):
            raise NotFound("No transcript has been exported for this conversation yet.")
        return FileResponse(
            default_storage.open(path, "rb"),
            content_type="application/json",
            filename=f"transcript-{conversation.pk}.json",
        )
