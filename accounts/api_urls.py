from django.urls import path

from accounts import api

urlpatterns = [
    path("auth/token/", api.TokenCreateView.as_view(), name="auth-token"),
    path("auth/token/revoke/", api.TokenRevokeView.as_view(), name="auth-token-revoke"),
    path("auth/token/revoke-all/", api.TokenRevokeAllView.as_view(), name="auth-token-revoke-all"),
]
