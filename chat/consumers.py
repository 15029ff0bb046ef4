"""The chat WebSocket: /ws/chat/<conversation id>/ (protocol in docs/chat-protocol.md).

Thin on purpose: parse the frame (``chat.sockets.JsonFrameConsumer``), authorize, call a
service, publish. The turn lives in ``chat.turns``, every write in ``chat.services``.
Group events carry whole message frames, so no socket reads the database per broadcast.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from django.conf import settings

from chat import services, turns, waiting
from chat.clients import client_address_of_scope
from chat.events import db
from chat.models import Conversation, Message
from chat.selectors import conversation_messages_after
from chat.sockets import CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, JsonFrameConsumer
from chat.visitors import VISITOR_COOKIE, conversation_audience, rate_subject, visitor_id_from_token

logger = logging.getLogger(__name__)

# If the answer to a message this socket sent has not arrived this long after its turn
# finished here, read it from the database (a broadcast the channel layer lost).
CATCH_UP_DELAY_SECONDS = 2.0

# Acks a socket keeps to answer resends without the database (the page resends only
# what it sent recently).
ACKS_REMEMBERED = 64

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


class ChatConsumer(JsonFrameConsumer):
    """One socket of a customer (own conversation) or support staff (any conversation)."""

    conversation: Conversation | None = None
    audience: str = "customer"
    group: str = ""

    async def connect(self) -> None:
        self.sent_seqs: set[int] = set()
        self.acked: dict[str, dict[str, Any]] = {}  # client_id -> its ack, the latest last
        self.answered: set[int] = set()  # customer message ids whose reply was sent
        self.user = self.scope.get("user")
        self.visitor_id = visitor_id_from_token(self.scope.get("cookies", {}).get(VISITOR_COOKIE))
        # Accept first so the close code (4403/4404) reaches the client.
        await self.accept()
        conversation, audience = await db(_conversation_for)(
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
        await self.join(self.group)
        self.ready = True
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
        if conversation.handling == Conversation.Handling.WAITING_FOR_HUMAN:
            status = await db(waiting.waiting_status)(conversation_id=conversation.pk)
            if status is not None:
                await self.send_json(waiting.queue_frame(status))

    # --- frames from the client ------------------------------------------------------------

    def _customer_only(self) -> Conversation:
        """The conversation, for frames only its customer may send."""
        if self.audience != "customer":
            raise services.ChatError("Agents reply from the agent console.", code="forbidden")
        assert self.conversation is not None  # set before ``ready``
        return self.conversation

    async def frame_ping(self, content: dict[str, Any]) -> None:
        await self.send_json({"type": "pong"})

    async def frame_resume(self, content: dict[str, Any]) -> None:
        after = content.get("after_seq", 0)
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise services.ChatError("after_seq is a whole number >= 0.", code="invalid_after_seq")
        await self._send_from_database(after)
        await self.send_json(
            {"type": "replay.done", "after_seq": after, "last_seq": max([after, *self.sent_seqs])}
        )

    async def _send_from_database(self, after: int) -> None:
        """Replay the messages after ``after`` from the database. When any is new to this
        socket and the conversation's state changed since the socket last said it (a
        replay that runs ahead of the channel layer, e.g. an escalation notice), the
        state goes first, so the page never shows a hand-over notice under an assistant
        that still seems to answer."""
        assert self.conversation is not None
        conversation, audience, sent = self.conversation, self.audience, set(self.sent_seqs)

        def read() -> tuple[list[Message], Conversation | None]:
            messages = list(
                conversation_messages_after(
                    conversation=conversation, seq=after, audience=audience
                ).select_related("turn")
            )
            if all(m.seq in sent for m in messages):
                return messages, None
            fresh = (
                Conversation.objects.select_related("assigned_agent")
                .filter(pk=conversation.pk)
                .first()
            )
            return messages, fresh

        messages, fresh = await db(read)()
        if fresh is not None and (fresh.status, fresh.handling) != (
            self.conversation.status,
            self.conversation.handling,
        ):
            await self.chat_conversation(services.conversation_state_event(fresh))
        for message in messages:
            await self._send_frame(services.message_frame(message, audience="agent"))

    async def frame_message(self, content: dict[str, Any]) -> None:
        conversation = self._customer_only()
        client_id = content.get("client_id")
        acked = self.acked.get(client_id) if isinstance(client_id, str) else None
        if acked is not None:
            # A resend of a message this socket already acknowledged (the page resends
            # what it has no ack for yet): the same answer, from memory, counted nowhere.
            await self.send_json({**acked, "duplicate": True})
            return
        received = await db(services.customer_message_receive)(
            conversation=conversation,
            text=content.get("text"),
            client_id=content.get("client_id"),
            author=self.user,
            rate_subject=rate_subject(
                user=self.user,
                visitor_id=self.visitor_id,
                address=client_address_of_scope(self.scope),
            ),
            claim_owner=turns.process_owner(),
        )
        message = received.message
        ack = {
            "type": "ack",
            "client_id": message.client_id,
            "seq": message.seq,
            "message_id": message.pk,
            "duplicate": not received.created,
        }
        self.acked[message.client_id] = ack
        if len(self.acked) > ACKS_REMEMBERED:
            del self.acked[next(iter(self.acked))]
        await self.send_json(ack)
        if received.turn is not None:
            runner = turns.turns_kick(conversation_id=conversation.pk, claimed=received.claimed)
            message_id, after = message.pk, message.seq
            runner.add_done_callback(lambda _: turns.task_track(self._catch_up(message_id, after)))

    async def _catch_up(self, message_id: int, after: int) -> None:
        """Shortly after the turns this socket started have finished, make sure the reply
        arrived; the channel layer normally delivered it (then nothing is read). Covers a
        broadcast that never arrived, so the customer's answer is never stuck."""
        await asyncio.sleep(CATCH_UP_DELAY_SECONDS)
        if self.conversation is None or not self.group or message_id in self.answered:
            return
        try:
            # From the customer's own message on: if its broadcast is late too, the
            # socket still shows the conversation in order, and the late one is dropped.
            await self._send_from_database(after - 1)
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
        conversation = self._customer_only()
        await db(services.human_request)(conversation=conversation, requested_by=self.user)
        await self.send_json({"type": "request_human.ok"})

    async def frame_end(self, content: dict[str, Any]) -> None:
        conversation = self._customer_only()
        self.conversation = await db(services.conversation_end)(conversation=conversation)

    async def frame_feedback(self, content: dict[str, Any]) -> None:
        conversation = self._customer_only()
        score = content.get("score")
        if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 5:
            raise services.ChatError(
                "A rating is a whole number from 1 to 5.", code="invalid_feedback"
            )
        better, comment = content.get("better_answer", ""), content.get("comment", "")
        if not isinstance(better, str) or not isinstance(comment, str):
            raise services.ChatError("better_answer and comment are text.", code="invalid_feedback")
        feedback = await db(services.feedback_submit)(
            conversation=conversation, score=score, better_answer=better, comment=comment
        )
        await self.send_json({"type": "feedback.saved", "score": feedback.score})

    # --- events from the channel layer -----------------------------------------------------

    async def _send_frame(self, frame: dict[str, Any]) -> None:
        """Send an agent-level message frame to this socket's audience, once per seq."""
        if self.audience != "agent" and frame.get("visibility") != Message.Visibility.PUBLIC:
            return
        if frame["seq"] in self.sent_seqs:
            return  # already replayed: a socket never shows a message twice
        self.sent_seqs.add(frame["seq"])
        if frame.get("reply_to_id") and frame.get("role") != Message.Role.CUSTOMER:
            self.answered.add(frame["reply_to_id"])
        await self.send_json(
            {"type": "message", "message": services.frame_for_audience(frame, self.audience)}
        )

    async def chat_message(self, event: dict[str, Any]) -> None:
        frame = event["frame"]
        if event.get("delta"):  # the stream's only piece rides on the answer's event
            await self.send_json(event["delta"])
        await self._send_frame(frame)
        # The assistant's turn for this message started or queued; unless its answer is
        # here already (the catch-up read can deliver it before this broadcast arrives),
        # which would leave "thinking" on screen after the answer.
        if event.get("thinking") and frame["id"] not in self.answered:
            await self.send_json(
                {"type": "assistant.thinking", "reply_to": frame["seq"], "reply_to_id": frame["id"]}
            )

    async def _forward_stream(self, event: dict[str, Any]) -> None:
        frame = {k: v for k, v in event.items() if k != "type"}
        await self.send_json({"type": _STREAM_EVENTS[event["type"]], **frame})

    chat_thinking = _forward_stream
    chat_delta = _forward_stream
    chat_cancelled = _forward_stream

    async def chat_typing(self, event: dict[str, Any]) -> None:
        if event.get("sender") != self.channel_name:
            await self.send_json(services.typing_frame(event))

    async def chat_queue(self, event: dict[str, Any]) -> None:
        """The queue moved: this conversation's place in it (``chat.waiting``)."""
        await self.send_json(waiting.queue_frame(event))

    async def chat_conversation(self, event: dict[str, Any]) -> None:
        if self.conversation is not None:
            self.conversation.status = event.get("status", self.conversation.status)
            self.conversation.handling = event.get("handling", self.conversation.handling)
        frame = {k: v for k, v in event.items() if k != "type"}
        await self.send_json({"type": "conversation.state", **frame})
