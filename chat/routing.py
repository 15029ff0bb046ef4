from django.urls import re_path

from chat.consumers import ChatConsumer

# Any id reaches the consumer, which closes with 4404 for ids that are not conversations.
websocket_urlpatterns = [
    re_path(r"^ws/chat/(?P<conversation_id>[^/]+)/$", ChatConsumer.as_asgi()),
]
