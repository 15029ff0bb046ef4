"""Settings are chosen from the environment; production refuses unsafe ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, django; from django.conf import settings; django.setup(); "
    "print(json.dumps({'db': settings.DATABASES['default']['ENGINE'], "
    "'layer': settings.CHANNEL_LAYERS['default']['BACKEND'], "
    "'broker': 'redis' if 'redis' in settings.Q_CLUSTER else 'orm', "
    "'cache': settings.CACHES['default']['BACKEND'], 'debug': settings.DEBUG, "
    "'email': settings.EMAIL_BACKEND, 'storage': settings.STORAGES['default']['BACKEND'], "
    "'provider': settings.ASSISTANT_PROVIDER}))"
)
# A key as `secrets.token_urlsafe(50)` makes them (what Django's deploy check asks for).
REAL_KEY = "q3V8oX1mZr7KpL0aT9wYbE2cN6uH4sJdG5fR8vQ1xM7zP0kW3yB9nA2eC6tD4hU"
CLEAN = {
    k: v
    for k, v in os.environ.items()
    if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "DJANGO_DEBUG"}
}


def load(module: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**CLEAN, "DJANGO_SETTINGS_MODULE": module, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_nothing_set_gives_the_embedded_defaults(tmp_path):
    result = load("config.settings.local", LOOPDESK_VAR_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "db": "config.db.sqlite3",
        "layer": "channels.layers.InMemoryChannelLayer",
        "broker": "orm",
        "cache": "django.core.cache.backends.db.DatabaseCache",
        "debug": False,
        "email": "django.core.mail.backends.console.EmailBackend",
        "storage": "django.core.files.storage.FileSystemStorage",
        "provider": "local",
    }


def test_debug_is_an_explicit_developer_choice(tmp_path):
    result = load("config.settings.local", LOOPDESK_VAR_DIR=str(tmp_path), DJANGO_DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["debug"] is True


def test_database_and_redis_urls_switch_to_real_services(tmp_path):
    result = load(
        "config.settings.local",
        LOOPDESK_VAR_DIR=str(tmp_path),
        DATABASE_URL="postgres://u:p@db.internal:5432/loopdesk",
        REDIS_URL="redis://cache.internal:6379/1",
    )
    assert result.returncode == 0, result.stderr
    chosen = json.loads(result.stdout)
    assert chosen["db"] == "django.db.backends.postgresql"
    assert chosen["layer"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    assert chosen["broker"] == "redis"
    assert chosen["cache"] == "django.core.cache.backends.redis.RedisCache"


def test_the_list_based_channel_layer_is_an_explicit_choice(tmp_path):
    core = load(
        "config.settings.local",
        LOOPDESK_VAR_DIR=str(tmp_path),
        REDIS_URL="redis://cache.internal:6379/1",
        CHANNEL_LAYER_BACKEND="core",
    )
    assert core.returncode == 0, core.stderr
    assert json.loads(core.stdout)["layer"] == "channels_redis.core.RedisChannelLayer"
    wrong = load(
        "config.settings.local",
        LOOPDESK_VAR_DIR=str(tmp_path),
        REDIS_URL="redis://cache.internal:6379/1",
        CHANNEL_LAYER_BACKEND="rabbit",
    )
    assert wrong.returncode != 0
    assert "CHANNEL_LAYER_BACKEND must be" in wrong.stderr


def test_sqlite_is_configured_for_concurrent_processes(db):
    from django.db import connection

    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone()[0] >= 10_000


def test_production_refuses_to_start_without_a_real_secret_key(tmp_path):
    result = load("config.settings.production", LOOPDESK_VAR_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_production_refuses_debug(tmp_path):
    result = load(
        "config.settings.production",
        LOOPDESK_VAR_DIR=str(tmp_path),
        DJANGO_SECRET_KEY=REAL_KEY,
        DJANGO_DEBUG="true",
    )
    assert result.returncode != 0
    assert "DEBUG must be off" in result.stderr


def test_production_starts_with_a_real_key(tmp_path):
    result = load(
        "config.settings.production", LOOPDESK_VAR_DIR=str(tmp_path), DJANGO_SECRET_KEY=REAL_KEY
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["debug"] is False


def test_production_refuses_a_short_or_monotonous_key(tmp_path):
    for key in ("k" * 60, REAL_KEY[:40]):
        result = load(
            "config.settings.production", LOOPDESK_VAR_DIR=str(tmp_path), DJANGO_SECRET_KEY=key
        )
        assert result.returncode != 0
        assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_check_deploy_reports_nothing_for_production_settings(tmp_path):
    """Issue 11 item 10: HSTS, the HTTPS redirect, secure cookies and the rest of
    Django's deploy checklist hold in production settings."""
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={
            **CLEAN,
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "LOOPDESK_VAR_DIR": str(tmp_path),
            "DJANGO_SECRET_KEY": REAL_KEY,
            "DJANGO_SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


def test_production_responses_carry_the_security_headers(tmp_path):
    probe = (
        "import django, json; django.setup(); from django.test import Client; "
        "c = Client(HTTP_HOST='localhost'); "
        "plain = c.get('/accounts/login/'); "
        "tls = c.get('/accounts/login/', secure=True, HTTP_X_FORWARDED_PROTO='https'); "
        "print(json.dumps({'redirect': [plain.status_code, plain.get('Location', '')], "
        "'headers': {k: tls.get(k, '') for k in ('Strict-Transport-Security', "
        "'Content-Security-Policy', 'Permissions-Policy', 'X-Frame-Options')}}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={
            **CLEAN,
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "LOOPDESK_VAR_DIR": str(tmp_path),
            "DJANGO_SECRET_KEY": REAL_KEY,
            "DJANGO_SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])

    assert seen["redirect"] == [301, "https://localhost/accounts/login/"]
    headers = seen["headers"]
    assert "max-age=31536000" in headers["Strict-Transport-Security"]
    assert "includeSubDomains" in headers["Strict-Transport-Security"]
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "camera=()" in headers["Permissions-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
