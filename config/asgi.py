"""ASGI entry point served by Daphne: Django for HTTP, Channels for WebSockets."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
django_asgi_app = get_asgi_application()


def _daphne_leaves_request_bodies_to_django() -> None:
    """Twisted, under Daphne, parses every multipart or form POST body itself for its own
    ``request.args`` (which Daphne never reads) and answers a malformed one with a bare
    400 and no body before Django sees it, unlike every other API error. Turn that off
    (Twisted's ``parsePOSTFormSubmission``): Django parses bodies, within its limits."""
    try:
        from daphne.http_protocol import WebRequest
    except ImportError:  # served by another ASGI server
        return
    original = WebRequest.__init__
    if getattr(original, "leaves_bodies_to_django", False):
        return

    def __init__(self: WebRequest, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("parsePOSTFormSubmission", False)
        original(self, *args, **kwargs)

    __init__.leaves_bodies_to_django = True  # type: ignore[attr-defined]
    WebRequest.__init__ = __init__  # type: ignore[method-assign]


_daphne_leaves_request_bodies_to_django()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402

if settings.CHAT_WARM_UP_ASSISTANT:
    from chat.assistant.providers import assistant_preload

    assistant_preload()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
