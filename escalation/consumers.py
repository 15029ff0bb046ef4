"""Agent console sockets.

``ws/agent/inbox/``: every open ticket, live (``escalation.ticket`` events on
AGENTS_INBOX_GROUP); heartbeats keep the agent "present" for availability.

``ws/agent/conversations/<id>/``: one conversation for an agent: every message (withheld
drafts and notes too), the assistant's stream, the customer's typing, ticket changes;
the agent sends messages, private notes and typing. Thin: authorize, call a service, send.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from chat.models import Conversation, Message
from chat.services import (
    AGENTS_INBOX_GROUP,
    conversation_group,
    conversation_state_event,
    message_frame,
    typing_event,
    typing_frame,
)
from escalation import selectors, services

logger = logging.getLogger(__name__)

CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


class AgentSocket(AsyncJsonWebsocketConsumer):
    groups_joined: list[str]

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Other apps publish event types these sockets do not handle: ignore them.
        if not hasattr(self, message.get("type", "").replace(".", "_")):
            return
        await super().dispatch(message)

    async def join(self, *groups: str) -> None:
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not getattr(self, "ready", False):
            return
        try:
            content = json.loads(text_data or "")
        except ValueError:
            await self.error("malformed_json", "That frame is not valid JSON.")
            return
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            await self.error("invalid_frame", 'A frame is a JSON object with a "type".')
            return
        handler = getattr(self, "frame_" + content["type"].replace(".", "_"), None)
        if handler is None:
            await self.error("unknown_type", "Unknown frame type.")
            return
        try:
            await handler(content)
        except services.EscalationError as exc:
            await self.error(exc.code, exc.message, client_id=content.get("client_id"))

    async def error(self, code: str, message: str, **extra: Any) -> None:
        frame = {"type": "error", "code": code, "message": message}
        frame.update({k: v for k, v in extra.items() if isinstance(v, str)})
        await self.send_json(frame)


class InboxConsumer(AgentSocket):
    async def connect(self) -> None:
        self.groups_joined = []
        self.user = self.scope.get("user")
        await self.accept()
        if not await database_sync_to_async(selectors.is_agent)(self.user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.join(AGENTS_INBOX_GROUP)
        self.ready = True
        await database_sync_to_async(services.agent_presence_touch)(agent=self.user)
        tickets = await database_sync_to_async(
            lambda: [selectors.ticket_summary(t) for t in selectors.tickets_for_inbox()]
        )()
        await self.send_json({"type": "inbox.snapshot", "tickets": tickets})

    async def frame_ping(self, content: dict[str, Any]) -> None:
        await database_sync_to_async(services.agent_presence_touch)(agent=self.user)
        await self.send_json({"type": "pong"})

    async def frame_duty(self, content: dict[str, Any]) -> None:
        presence = await database_sync_to_async(services.agent_presence_set)(
            agent=self.user, on_duty=bool(content.get("on_duty"))
        )
        await self.send_json({"type": "duty", "on_duty": presence.on_duty})

    async def escalation_ticket(self, event: dict[str, Any]) -> None:
        summary = event.get("ticket") or await database_sync_to_async(
            selectors.ticket_summary_by_id
        )(event["ticket_id"])
        if summary is not None:
            await self.send_json(
                {"type": "ticket", "change": event.get("change", ""), "ticket": summary}
            )


def _conversation(raw_id: str) -> Conversation | None:
    try:
        pk = uuid.UUID(raw_id)
    except ValueError:
        return None
    return Conversation.objects.select_related("assigned_agent").filter(pk=pk).first()


def _message(message_id: int) -> Message | None:
    return Message.objects.select_related("author").filter(pk=message_id).first()


class AgentConversationConsumer(AgentSocket):
    conversation: Conversation

    async def connect(self) -> None:
        self.groups_joined = []
        self.sent_seqs: set[int] = set()
        self.user = self.scope.get("user")
        await self.accept()
        if not await database_sync_to_async(selectors.is_agent)(self.user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        conversation = await database_sync_to_async(_conversation)(
            self.scope["url_route"]["kwargs"]["conversation_id"]
        )
        if conversation is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.conversation = conversation
        await self.join(
            conversation_group(conversation.pk),
            services.agent_conversation_group(conversation.pk),
        )
        self.ready = True
        await database_sync_to_async(services.agent_presence_touch)(agent=self.user)
        await self.send_json(
            {
                **conversation_state_event(conversation),
                "type": "conversation.state",
                "conversation_id": str(conversation.pk),
            }
        )
        messages = await database_sync_to_async(
            lambda: list(selectors.conversation_timeline(conversation=conversation))
        )()
        for message in messages:
            await self._send_message(message)

    async def _send_message(self, message: Message) -> None:
        if message.seq in self.sent_seqs:
            return
        self.sent_seqs.add(message.seq)
        await self.send_json(
            {"type": "message", "message": message_frame(message, audience="agent")}
        )

    # --- frames from the agent ---------------------------------------------------------------

    async def frame_ping(self, content: dict[str, Any]) -> None:
        await database_sync_to_async(services.agent_presence_touch)(agent=self.user)
        await self.send_json({"type": "pong"})

    async def frame_message(self, content: dict[str, Any]) -> None:
        text, client_id = content.get("text"), content.get("client_id", "")
        if not isinstance(text, str) or not isinstance(client_id, str) or len(client_id) > 64:
            raise services.EscalationError("A message needs a text.", code="invalid")
        if len(text) > settings.CHAT_MAX_MESSAGE_CHARS:
            raise services.EscalationError("The message is too long.", code="too_long")
        message = await database_sync_to_async(services.agent_message_send)(
            conversation=self.conversation, agent=self.user, text=text, client_id=client_id
        )
        await self.send_json({"type": "ack", "client_id": client_id, "seq": message.seq})

    async def frame_note(self, content: dict[str, Any]) -> None:
        text = content.get("text")
        if not isinstance(text, str) or len(text) > settings.CHAT_MAX_MESSAGE_CHARS:
            raise services.EscalationError("A note needs a text.", code="invalid")
        await database_sync_to_async(services.note_add)(
            conversation=self.conversation, agent=self.user, text=text
        )

    async def frame_typing(self, content: dict[str, Any]) -> None:
        # The same event the customer's socket publishes (chat.consumers.ChatConsumer).
        await self.channel_layer.group_send(
            conversation_group(self.conversation.pk),
            typing_event(
                role="agent",
                author=self.user,
                is_typing=bool(content.get("is_typing", True)),
                sender=self.channel_name,
            ),
        )

    # --- events from the channel layer -----------------------------------------------------

    async def chat_message(self, event: dict[str, Any]) -> None:
        message = await database_sync_to_async(_message)(event["message_id"])
        if message is not None:
            await self._send_message(message)

    async def chat_typing(self, event: dict[str, Any]) -> None:
        if event.get("sender") != self.channel_name:
            await self.send_json(typing_frame(event))

    async def chat_conversation(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {**{k: v for k, v in event.items() if k != "type"}, "type": "conversation.state"}
        )

    async def _forward_stream(self, event: dict[str, Any]) -> None:
        name = {
            "chat.thinking": "assistant.thinking",
            "chat.delta": "assistant.delta",
            "chat.cancelled": "assistant.cancelled",
        }[event["type"]]
        await self.send_json({**{k: v for k, v in event.items() if k != "type"}, "type": name})

    chat_thinking = _forward_stream
    chat_delta = _forward_stream
    chat_cancelled = _forward_stream

    async def escalation_ticket(self, event: dict[str, Any]) -> None:
        summary = event.get("ticket") or await database_sync_to_async(
            selectors.ticket_summary_by_id
        )(event["ticket_id"])
        if summary is not None:
            await self.send_json(
                {"type": "ticket", "change": event.get("change", ""), "ticket": summary}
            )
