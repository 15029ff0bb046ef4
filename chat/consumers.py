"""The chat WebSocket: /ws/chat/<conversation id>/ (protocol in docs/chat-protocol.md).

Thin on purpose: parse the frame, authorize, call a service, publish. The turn pipeline
lives in chat.turns, every write in chat.services.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from chat import services, turns
from chat.models import Conversation, Message
from chat.selectors import conversation_messages_after
from chat.visitors import VISITOR_COOKIE, conversation_audience, rate_subject, visitor_id_from_token

logger = logging.getLogger(__name__)

CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
# Long enough for the channel layer to deliver the deltas and the answer in order first.
CATCH_UP_DELAY_SECONDS = 2.0

# Group events forwarded to every socket as they are, renamed for the client.
_STREAM_EVENTS = {
    "chat.thinking": "assistant.thinking",
    "chat.delta": "assistant.delta",
    "chat.cancelled": "assistant.cancelled",
}


def _conversation_for(
    raw_id: str, user: Any, visitor_id: str
) -> tuple[Conversation | None, str | None]:
    try:
        conversation_id = uuid.UUID(raw_id)
    except ValueError:
        return None, None
    conversation = (
        Conversation.objects.select_related("assigned_agent").filter(pk=conversation_id).first()
    )
    if conversation is None:
        return None, None
    return conversation, conversation_audience(
        conversation=conversation, user=user, visitor_id=visitor_id
    )


def _message_for_socket(message_id: int) -> Message | None:
    return Message.objects.select_related("author").filter(pk=message_id).first()


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """One socket of a customer (own conversation) or an agent (any conversation)."""

    conversation: Conversation | None = None
    audience: str = "customer"
    group: str = ""

    async def connect(self) -> None:
        self.sent_seqs: set[int] = set()
        self.user = self.scope.get("user")
        self.visitor_id = visitor_id_from_token(self.scope.get("cookies", {}).get(VISITOR_COOKIE))
        # Accept first so the close code (4403/4404) reaches the client.
        await self.accept()
        conversation, audience = await database_sync_to_async(_conversation_for)(
            self.scope["url_route"]["kwargs"]["conversation_id"], self.user, self.visitor_id
        )
        if conversation is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        if audience is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.conversation, self.audience = conversation, audience
        if settings.CHAT_WARM_UP_ASSISTANT:
            turns.assistant_warm_up_once()
        self.group = services.conversation_group(conversation.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.send_json(
            {
                **services.conversation_state_event(conversation),
                "type": "conversation.state",
                "conversation_id": str(conversation.pk),
                "audience": audience,
                "assistant_provider": settings.ASSISTANT_PROVIDER,
                "max_message_chars": settings.CHAT_MAX_MESSAGE_CHARS,
            }
        )

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Other apps may publish event types this socket does not know: ignore, never crash.
        if message.get("type", "").startswith("chat.") and not hasattr(
            self, message["type"].replace(".", "_")
        ):
            logger.debug("ignoring unknown event %s", message["type"])
            return
        await super().dispatch(message)

    # --- frames from the client ------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.conversation is None:
            return
        if text_data is None:
            await self.error("invalid_frame", "Frames are JSON text.")
            return
        if len(text_data) > settings.CHAT_MAX_MESSAGE_CHARS * 6 + 4096:
            await self.error("frame_too_large", "That frame is too large.")
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            await self.error("malformed_json", "That frame is not valid JSON.")
            return
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            await self.error("invalid_frame", 'A frame is a JSON object with a "type".')
            return
        handler = getattr(self, "frame_" + content["type"].replace(".", "_"), None)
        if handler is None:
            await self.error("unknown_type", f"Unknown frame type {content['type'][:40]!r}.")
            return
        try:
            await handler(content)
        except services.ChatError as exc:
            await self.error(exc.code, exc.message, client_id=content.get("client_id"))

    async def error(self, code: str, message: str, **extra: Any) -> None:
        frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
        frame.update({k: v for k, v in extra.items() if isinstance(v, str | int)})
        await self.send_json(frame)

    def _customer_only(self) -> None:
        if self.audience != "customer":
            raise services.ChatError("Agents reply from the agent console.", code="forbidden")

    async def frame_ping(self, content: dict[str, Any]) -> None:
        await self.send_json({"type": "pong"})

    async def frame_resume(self, content: dict[str, Any]) -> None:
        after = content.get("after_seq", 0)
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise services.ChatError("after_seq is a whole number >= 0.", code="invalid_after_seq")
        assert self.conversation is not None
        messages = await database_sync_to_async(
            lambda: list(
                conversation_messages_after(
                    conversation=self.conversation, seq=after, audience=self.audience
                )
            )
        )()
        for message in messages:
            await self._send_message(message)
        await self.send_json(
            {"type": "replay.done", "after_seq": after, "last_seq": max([after, *self.sent_seqs])}
        )

    async def frame_message(self, content: dict[str, Any]) -> None:
        self._customer_only()
        assert self.conversation is not None
        message, created = await database_sync_to_async(services.customer_message_receive)(
            conversation=self.conversation,
            text=content.get("text"),
            client_id=content.get("client_id"),
            author=self.user,
            rate_subject=rate_subject(user=self.user, visitor_id=self.visitor_id),
        )
        await self.send_json(
            {
                "type": "ack",
                "client_id": message.client_id,
                "seq": message.seq,
                "message_id": message.pk,
                "duplicate": not created,
            }
        )
        if created:
            task = turns.turn_start(
                conversation_id=self.conversation.pk, customer_message_id=message.pk
            )
            after = message.seq
            task.add_done_callback(lambda _: turns.task_track(self._catch_up(after)))

    async def _catch_up(self, after: int) -> None:
        """Shortly after a turn this socket started has finished, send whatever this
        socket has not seen yet straight from the database. The channel layer normally
        delivered it already, in order (then nothing is sent twice); this covers a
        broadcast that never arrived, so the customer's answer is never stuck."""
        await asyncio.sleep(CATCH_UP_DELAY_SECONDS)
        if self.conversation is None or not self.group:
            return
        try:
            messages = await database_sync_to_async(
                lambda: list(
                    conversation_messages_after(
                        conversation=self.conversation, seq=after, audience=self.audience
                    )
                )
            )()
            for message in messages:
                await self._send_message(message)
        except Exception:  # the socket may have gone meanwhile
            logger.debug("catch-up skipped", exc_info=True)

    async def frame_typing(self, content: dict[str, Any]) -> None:
        await self.channel_layer.group_send(
            self.group,
            services.typing_event(
                role="agent" if self.audience == "agent" else "customer",
                author=self.user,
                is_typing=bool(content.get("is_typing", True)),
                sender=self.channel_name,
            ),
        )

    async def frame_request_human(self, content: dict[str, Any]) -> None:
        self._customer_only()
        await database_sync_to_async(services.human_request)(
            conversation=self.conversation, requested_by=self.user
        )
        await self.send_json({"type": "request_human.ok"})

    async def frame_end(self, content: dict[str, Any]) -> None:
        self._customer_only()
        self.conversation = await database_sync_to_async(services.conversation_end)(
            conversation=self.conversation
        )

    async def frame_feedback(self, content: dict[str, Any]) -> None:
        self._customer_only()
        score = content.get("score")
        if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 5:
            raise services.ChatError(
                "A rating is a whole number from 1 to 5.", code="invalid_feedback"
            )
        better, comment = content.get("better_answer", ""), content.get("comment", "")
        if not isinstance(better, str) or not isinstance(comment, str):
            raise services.ChatError("better_answer and comment are text.", code="invalid_feedback")
        limit = settings.CHAT_MAX_MESSAGE_CHARS
        if len(better) > limit or len(comment) > limit:
            raise services.ChatError("That feedback is too long.", code="invalid_feedback")
        feedback = await database_sync_to_async(services.feedback_submit)(
            conversation=self.conversation, score=score, better_answer=better, comment=comment
        )
        await self.send_json({"type": "feedback.saved", "score": feedback.score})

    # --- events from the channel layer -----------------------------------------------------

    async def _send_message(self, message: Message) -> None:
        if self.audience != "agent" and message.visibility != Message.Visibility.PUBLIC:
            return
        if message.seq in self.sent_seqs:
            return  # already replayed: a socket never shows a message twice
        self.sent_seqs.add(message.seq)
        await self.send_json(
            {"type": "message", "message": services.message_frame(message, audience=self.audience)}
        )

    async def chat_message(self, event: dict[str, Any]) -> None:
        if self.audience != "agent" and event.get("visibility") != Message.Visibility.PUBLIC:
            return
        message = await database_sync_to_async(_message_for_socket)(event["message_id"])
        if message is not None:
            await self._send_message(message)

    async def _forward_stream(self, event: dict[str, Any]) -> None:
        frame = {k: v for k, v in event.items() if k != "type"}
        await self.send_json({"type": _STREAM_EVENTS[event["type"]], **frame})

    chat_thinking = _forward_stream
    chat_delta = _forward_stream
    chat_cancelled = _forward_stream

    async def chat_typing(self, event: dict[str, Any]) -> None:
        if event.get("sender") != self.channel_name:
            await self.send_json(services.typing_frame(event))

    async def chat_conversation(self, event: dict[str, Any]) -> None:
        if self.conversation is not None:
            self.conversation.status = event.get("status", self.conversation.status)
            self.conversation.handling = event.get("handling", self.conversation.handling)
        frame = {k: v for k, v in event.items() if k != "type"}
        await self.send_json({"type": "conversation.state", **frame})
