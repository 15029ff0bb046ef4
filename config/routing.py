"""All WebSocket routes; each app owns its own list."""

from chat.routing import websocket_urlpatterns as chat_routes
from escalation.routing import websocket_urlpatterns as escalation_routes

websocket_urlpatterns = [*chat_routes, *escalation_routes]
