"""Agent console sockets.

``ws/agent/inbox/``: every open ticket, live (``escalation.ticket`` events on
AGENTS_INBOX_GROUP); heartbeats keep the agent "present" for availability.

``ws/agent/conversations/<id>/``: one conversation for an agent: every message (withheld
drafts and notes too), the assistant's stream, the customer's typing, ticket changes;
the agent sends messages, private notes and typing. Thin: authorize, call a service, send.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.conf import settings

from chat.events import db
from chat.models import Conversation
from chat.payloads import text_field
from chat.services import (
    AGENTS_INBOX_GROUP,
    conversation_group,
    conversation_state_event,
    message_frame,
    typing_event,
    typing_frame,
)
from chat.sockets import CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, JsonFrameConsumer
from chat.waiting import queue_frame
from escalation import selectors, services

logger = logging.getLogger(__name__)


class InboxConsumer(JsonFrameConsumer):
    async def connect(self) -> None:
        self.user = self.scope.get("user")
        await self.accept()
        if not await db(selectors.is_agent)(self.user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.join(AGENTS_INBOX_GROUP)
        self.ready = True
        await db(services.agent_presence_touch)(agent=self.user)
        await self._send_snapshot()

    async def _send_snapshot(self) -> None:
        tickets = await db(
            lambda: [selectors.ticket_summary(t) for t in selectors.tickets_for_inbox()]
        )()
        me = await db(selectors.agent_console_state)(agent=self.user)
        await self.send_json({"type": "inbox.snapshot", "tickets": tickets, "me": me})

    async def frame_snapshot(self, content: dict[str, Any]) -> None:
        """The whole inbox again. The page asks every minute and when it becomes
        visible: a ticket event the channel layer never delivered (a stalled or expired
        event) does not stay missing until the next reconnect."""
        await self._send_snapshot()

    async def frame_ping(self, content: dict[str, Any]) -> None:
        await db(services.agent_presence_touch)(agent=self.user)
        await self.send_json({"type": "pong"})

    async def _send_duty(self, message: str) -> None:
        me = await db(selectors.agent_console_state)(agent=self.user)
        await self.send_json({"type": "duty", **me, "message": message})

    async def frame_duty(self, content: dict[str, Any]) -> None:
        presence = await db(services.agent_presence_set)(
            agent=self.user, on_duty=bool(content.get("on_duty"))
        )
        await self._send_duty(
            f"You are on duty: the queue gives you up to {presence.capacity} tickets at once."
            if presence.on_duty
            else "You are off duty: the queue gives you no new tickets."
        )

    async def frame_capacity(self, content: dict[str, Any]) -> None:
        capacity = content.get("capacity")
        if isinstance(capacity, bool) or not isinstance(capacity, int):
            raise services.EscalationError("Capacity is a whole number.", code="invalid")
        presence = await db(services.agent_capacity_set)(agent=self.user, capacity=capacity)
        await self._send_duty(
            f"Capacity saved: up to {presence.capacity} tickets at once."
            + ("" if presence.on_duty else " Go on duty to receive them.")
        )

    async def escalation_ticket(self, event: dict[str, Any]) -> None:
        summary = event.get("ticket") or await db(selectors.ticket_summary_by_id)(
            event["ticket_id"]
        )
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


_STREAM_EVENTS = {
    "chat.thinking": "assistant.thinking",
    "chat.delta": "assistant.delta",
    "chat.cancelled": "assistant.cancelled",
}


class AgentConversationConsumer(JsonFrameConsumer):
    conversation: Conversation

    async def connect(self) -> None:
        self.sent_seqs: set[int] = set()
        self.user = self.scope.get("user")
        await self.accept()
        if not await db(selectors.is_agent)(self.user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        conversation = await db(_conversation)(self.scope["url_route"]["kwargs"]["conversation_id"])
        if conversation is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.conversation = conversation
        await self.join(
            conversation_group(conversation.pk),
            services.agent_conversation_group(conversation.pk),
        )
        self.ready = True
        await db(services.agent_presence_touch)(agent=self.user)
        await self.send_json(
            {
                **conversation_state_event(conversation),
                "type": "conversation.state",
                "conversation_id": str(conversation.pk),
            }
        )
        frames = await db(
            lambda: [
                message_frame(m, audience="agent")
                for m in selectors.conversation_timeline(conversation=conversation)
            ]
        )()
        for frame in frames:
            await self._send_frame(frame)
        # The ticket as it is now (the page may be older than this socket) and, while
        # the customer waits, their place in the queue.
        ticket = await db(selectors.ticket_summary_for_conversation)(
            conversation_id=conversation.pk
        )
        if ticket is not None:
            await self.send_json({"type": "ticket", "change": "snapshot", "ticket": ticket})
        if conversation.handling == Conversation.Handling.WAITING_FOR_HUMAN:
            status = await db(selectors.waiting_status)(conversation_id=conversation.pk)
            if status is not None:
                await self.send_json(queue_frame(status))

    async def _send_frame(self, frame: dict[str, Any]) -> None:
        if frame["seq"] in self.sent_seqs:
            return
        self.sent_seqs.add(frame["seq"])
        await self.send_json({"type": "message", "message": frame})

    # --- frames from the agent ---------------------------------------------------------------

    async def frame_resume(self, content: dict[str, Any]) -> None:
        """The messages after ``after_seq`` this socket has not sent yet. Live events are
        notifications (a Pub/Sub layer drops what a briefly disconnected process missed):
        the page asks every 30 s and when it comes back into view."""
        after = content.get("after_seq", 0)
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise services.EscalationError("after_seq is a whole number >= 0.")
        conversation = self.conversation
        frames = await db(
            lambda: [
                message_frame(m, audience="agent")
                for m in selectors.conversation_timeline(conversation=conversation).filter(
                    seq__gt=after
                )
            ]
        )()
        for frame in frames:
            await self._send_frame(frame)

    async def frame_ping(self, content: dict[str, Any]) -> None:
        await db(services.agent_presence_touch)(agent=self.user)
        await self.send_json({"type": "pong"})

    async def frame_message(self, content: dict[str, Any]) -> None:
        text = text_field(
            content.get("text"), name="text", max_chars=settings.CHAT_MAX_MESSAGE_CHARS
        )
        client_id = content.get("client_id", "")
        if not isinstance(client_id, str) or len(client_id) > 64:
            raise services.EscalationError("client_id is text of at most 64 characters.")
        message = await db(services.agent_message_send)(
            conversation=self.conversation, agent=self.user, text=text, client_id=client_id
        )
        await self.send_json({"type": "ack", "client_id": client_id, "seq": message.seq})

    async def frame_note(self, content: dict[str, Any]) -> None:
        text = text_field(
            content.get("text"), name="text", max_chars=settings.CHAT_MAX_MESSAGE_CHARS
        )
        await db(services.note_add)(conversation=self.conversation, agent=self.user, text=text)

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
        frame = event["frame"]
        if event.get("delta"):  # the stream's only piece rides on the answer's event
            await self.send_json(event["delta"])
        await self._send_frame(frame)
        if event.get("thinking"):
            await self.send_json(
                {"type": "assistant.thinking", "reply_to": frame["seq"], "reply_to_id": frame["id"]}
            )

    async def chat_typing(self, event: dict[str, Any]) -> None:
        if event.get("sender") != self.channel_name:
            await self.send_json(typing_frame(event))

    async def chat_conversation(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {**{k: v for k, v in event.items() if k != "type"}, "type": "conversation.state"}
        )

    async def _forward_stream(self, event: dict[str, Any]) -> None:
        name = _STREAM_EVENTS[event["type"]]
        await self.send_json({**{k: v for k, v in event.items() if k != "type"}, "type": name})

    chat_thinking = _forward_stream
    chat_delta = _forward_stream
    chat_cancelled = _forward_stream

    async def escalation_ticket(self, event: dict[str, Any]) -> None:
        summary = event.get("ticket") or await db(selectors.ticket_summary_by_id)(
            event["ticket_id"]
        )
        if summary is not None:
            await self.send_json(
                {"type": "ticket", "change": event.get("change", ""), "ticket": summary}
            )

    async def chat_queue(self, event: dict[str, Any]) -> None:
        """Where the customer stands in the queue (what their chat page shows)."""
        await self.send_json(queue_frame(event))
