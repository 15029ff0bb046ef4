"""The one base class of every JSON-frame WebSocket (the chat socket, the agent console).

It owns what every socket must do the same way: frames are JSON objects with a
``type`` within a size and depth bound, with storable text; a frame ``{"type": "x.y"}``
is handled by ``frame_x_y``; an ``ApplicationError`` (or a bad frame) answers an
``error`` frame ``{type, code, message[, client_id]}`` with the same codes as the API,
and the socket stays open; an unexpected exception is logged and answered with
``server_error``, never a dropped socket. Channel-layer events this socket has no
handler for (another app's) are ignored.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from chat.errors import ApplicationError, error_body
from chat.payloads import json_loads_bounded, strings_storable

logger = logging.getLogger(__name__)

CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
_FRAME_TYPE_MAX = 40


class JsonFrameConsumer(AsyncWebsocketConsumer):
    """Subclasses set ``self.ready = True`` once connected and authorized."""

    ready = False
    groups_joined: list[str]

    async def join(self, *groups: str) -> None:
        if not hasattr(self, "groups_joined"):
            self.groups_joined = []
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined = []

    async def dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type", "")
        if not isinstance(kind, str) or not (
            kind.startswith("websocket.") or hasattr(self, kind.replace(".", "_"))
        ):
            logger.debug("ignoring event %r", kind)
            return
        # Channels' own dispatch first hops to its thread-sensitive executor to close old
        # database connections, once per frame and per channel-layer event. These sockets
        # never use that thread's connection: their ORM work runs through ``chat.events.db``,
        # whose threads recycle their connections around every call. Skipping the hop saves
        # a thread round trip per event (about 3% of a saturated server's time).
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {kind}")
        await handler(message)

    async def send_json(self, content: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(content, separators=(",", ":")))

    async def error(self, code: str, message: str, **extra: Any) -> None:
        await self.send_json(
            {
                "type": "error",
                **error_body(
                    code, message, **{k: v for k, v in extra.items() if isinstance(v, str | int)}
                ),
            }
        )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.ready:
            return
        if text_data is None:
            await self.error("invalid_frame", "Frames are JSON text.")
            return
        try:
            content = json_loads_bounded(
                text_data,
                max_bytes=settings.SOCKET_MAX_FRAME_BYTES,
                max_depth=settings.SOCKET_MAX_FRAME_DEPTH,
            )
        except ApplicationError as exc:
            await self.error(exc.code, exc.message)
            return
        if (
            not isinstance(content, dict)
            or not isinstance(content.get("type"), str)
            or not 0 < len(content["type"]) <= _FRAME_TYPE_MAX
        ):
            await self.error("invalid_frame", 'A frame is a JSON object with a "type".')
            return
        client_id = content.get("client_id")
        client_id = (
            client_id if isinstance(client_id, str) and strings_storable(client_id) else None
        )
        if not strings_storable(content):
            await self.error(
                "invalid_characters",
                "That frame contains characters that cannot be stored.",
                client_id=client_id,
            )
            return
        handler = getattr(self, "frame_" + content["type"].replace(".", "_"), None)
        if handler is None:
            await self.error("unknown_type", f"Unknown frame type {content['type']!r}.")
            return
        try:
            await handler(content)
        except ApplicationError as exc:
            await self.error(exc.code, exc.message, client_id=client_id)
        except Exception:
            logger.exception("socket frame %r failed", content["type"])
            await self.error("server_error", "Something went wrong on our side. Please try again.")
