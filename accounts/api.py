"""API tokens (django-rest-knox): stored hashed with an expiry, shown once.

``POST /api/auth/token/`` with the account's username and password (HTTP Basic) or a
signed-in session returns a new token and its expiry; only its hash is stored, so it
cannot be shown again. ``POST /api/auth/token/revoke/`` revokes the token used for the
call, ``.../revoke-all/`` every token of the account. Sign-ins through Basic count
towards the django-axes lock-out like every other sign-in.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from knox import views as knox_views
from knox.auth import TokenAuthentication
from rest_framework import serializers
from rest_framework.authentication import BasicAuthentication, SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response

from chat.clients import AddressUserThrottle
from chat.serializers import ErrorSerializer


class TokenCreatedSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send as `Authorization: Token <token>`; shown once.")
    expiry = serializers.DateTimeField(allow_null=True)


class TokenIssueThrottle(AddressUserThrottle):
    scope = "token"


class TokenCreateView(knox_views.LoginView):
    authentication_classes = [BasicAuthentication, SessionAuthentication]
    throttle_classes = [TokenIssueThrottle]

    @extend_schema(
        request=None,
        responses={200: TokenCreatedSerializer, 401: ErrorSerializer, 403: ErrorSerializer},
        description="A new API token for the signed-in account (HTTP Basic or session), "
        "valid until ``expiry`` (API_TOKEN_TTL_DAYS). Only its hash is stored: keep it, "
        "it is not shown again.",
    )
    def post(self, request: Request, format: Any = None) -> Response:
        return super().post(request, format=format)


class TokenRevokeView(knox_views.LogoutView):
    authentication_classes = [TokenAuthentication]

    @extend_schema(request=None, responses={204: None, 401: ErrorSerializer})
    def post(self, request: Request, format: Any = None) -> Response:
        """Revoke the token this request is made with."""
        return super().post(request, format=format)


class TokenRevokeAllView(knox_views.LogoutAllView):
    authentication_classes = [TokenAuthentication]

    @extend_schema(request=None, responses={204: None, 401: ErrorSerializer})
    def post(self, request: Request, format: Any = None) -> Response:
        """Revoke every token of the account this request is made with."""
        return super().post(request, format=format)
