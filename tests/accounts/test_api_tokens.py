"""API tokens (issue 11, item 11): stored hashed with an expiry, shown once, revocable;
the clear-text tokens of DRF's authtoken carried over hashed."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone
from knox.models import AuthToken

pytestmark = pytest.mark.django_db


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def test_a_token_is_issued_once_stored_hashed_and_expires(api_client, customer, settings):
    response = api_client.post(
        "/api/auth/token/", HTTP_AUTHORIZATION=basic("casey", "pw-for-tests")
    )

    assert response.status_code == 200
    token = response.json()["token"]
    stored = AuthToken.objects.get(user=customer)
    assert token not in (stored.digest, stored.token_key)
    assert token[:15] == stored.token_key and len(stored.digest) == 128
    lifetime = stored.expiry - timezone.now()
    assert dt.timedelta(days=settings.API_TOKEN_TTL_DAYS - 1) < lifetime
    assert lifetime <= dt.timedelta(days=settings.API_TOKEN_TTL_DAYS)

    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api_client.get("/api/conversations/").status_code == 200


def test_an_expired_or_revoked_token_is_refused(api_client, customer):
    _, token = AuthToken.objects.create(user=customer)
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api_client.post("/api/auth/token/revoke/").status_code == 204
    assert api_client.get("/api/conversations/").status_code == 401

    _, old = AuthToken.objects.create(user=customer, expiry=dt.timedelta(seconds=-1))
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {old}")
    assert api_client.get("/api/conversations/").status_code == 401


def test_wrong_passwords_for_tokens_count_towards_the_lockout(api_client, customer, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for i in range(5):
        api_client.post("/api/auth/token/", HTTP_AUTHORIZATION=basic("casey", f"guess-{i}"))

    right = api_client.post("/api/auth/token/", HTTP_AUTHORIZATION=basic("casey", "pw-for-tests"))

    assert right.status_code in (401, 403, 429)
    assert not AuthToken.objects.exists()


def test_the_admin_shows_a_new_token_once_and_never_its_value_again(client, admin_member, agent):
    client.force_login(admin_member)

    added = client.post("/admin/knox/authtoken/add/", {"user": agent.pk, "expiry": ""}, follow=True)

    stored = AuthToken.objects.get(user=agent)
    shown = [str(m) for m in added.context["messages"]]
    [token] = [m.removeprefix("TOKEN ") for m in shown if m.startswith("TOKEN ")]
    assert token[:15] == stored.token_key
    listing = client.get("/admin/knox/authtoken/").content.decode()
    assert token not in listing


@pytest.mark.django_db(transaction=True)
def test_clear_text_authtoken_tokens_are_carried_over_hashed(api_client, customer, settings):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("accounts.migrations.0001_api_tokens_hashed")
    key = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "created timestamp, user_id integer)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token (key, created, user_id) VALUES (%s, %s, %s)",
            [key, timezone.now(), customer.pk],
        )

    with connection.schema_editor() as editor:
        migration.tokens_to_knox(apps, editor)

    assert "authtoken_token" not in connection.introspection.table_names()
    stored = AuthToken.objects.get(user=customer)
    assert key not in (stored.digest, stored.token_key[:40]) and stored.expiry is not None
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api_client.get("/api/conversations/").status_code == 200
    assert User.objects.filter(pk=customer.pk).exists()
