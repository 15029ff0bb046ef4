from django.urls import re_path

from escalation.consumers import AgentConversationConsumer, InboxConsumer

websocket_urlpatterns = [
    re_path(r"^ws/agent/inbox/$", InboxConsumer.as_asgi()),
    re_path(
        r"^ws/agent/conversations/(?P<conversation_id>[^/]+)/$",
        AgentConversationConsumer.as_asgi(),
    ),
]
