"""Baseline for bench/chat_ws.py: a bare echo consumer on the same stack as the chat
(Daphne + AuthMiddlewareStack + the Redis channel layer), with no database and no
assistant. Each message frame is acked, published to the group through Redis, and on
receipt echoed back as one "delta" and one "message" frame, the same frames the chat
sends. Lives in bench/ so the product's routes never contain it."""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
django.setup()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.generic.websocket import AsyncJsonWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402


class EchoConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.group = "bench-echo." + self.scope["url_route"]["kwargs"]["room"]
        self.seq = 0
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        if content.get("type") == "resume":
            await self.send_json({"type": "replay.done", "last_seq": 0})
            return
        if content.get("type") != "message":
            return
        self.seq += 1
        message_id = self.seq
        await self.send_json(
            {
                "type": "ack",
                "client_id": content["client_id"],
                "seq": message_id,
                "message_id": message_id,
                "duplicate": False,
            }
        )
        await self.channel_layer.group_send(
            self.group, {"type": "echo.reply", "reply_to_id": message_id, "text": content["text"]}
        )

    async def echo_reply(self, event):
        await self.send_json(
            {
                "type": "assistant.delta",
                "reply_to_id": event["reply_to_id"],
                "index": 0,
                "delta": event["text"],
            }
        )
        self.seq += 1
        await self.send_json(
            {
                "type": "message",
                "message": {
                    "seq": self.seq,
                    "role": "assistant",
                    "reply_to_id": event["reply_to_id"],
                    "text": event["text"],
                    "client_id": "",
                },
            }
        )


application = ProtocolTypeRouter(
    {
        "websocket": AuthMiddlewareStack(
            URLRouter([re_path(r"^ws/echo/(?P<room>[^/]+)/$", EchoConsumer.as_asgi())])
        )
    }
)
