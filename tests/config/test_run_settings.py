"""The settings ``scripts/run`` starts the platform with: DEBUG off unless asked for,
branded error pages, static files still served, one quiet log line per 404."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_SCRIPT = (ROOT / "scripts" / "run").read_text()
RUN_SETTINGS = re.search(r"DJANGO_SETTINGS_MODULE:-([\w.]+)", RUN_SCRIPT).group(1)  # type: ignore[union-attr]

# Requests made in a fresh process on the run command's settings (no test settings).
PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.test import Client
from django.test.utils import override_settings

with override_settings(ROOT_URLCONF="tests.config.error_urls"):
    client = Client(raise_request_exception=False, HTTP_HOST="localhost")
    pages = {
        path: client.get(path)
        for path in [
            "/test-errors/broken/", "/test-errors/missing/", "/test-errors/forbidden/",
            "/no-such-page/", "/static/chat/chat.css", "/favicon.ico",
        ]
    }
print(json.dumps({
    "debug": settings.DEBUG,
    "pages": {
        path: {
            "status": r.status_code,
            "body": b"".join(r).decode() if r.streaming else r.content.decode(),
            "location": r.headers.get("Location", ""),
        }
        for path, r in pages.items()
    },
}))
"""
CLEAN = {
    k: v
    for k, v in os.environ.items()
    if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "DJANGO_DEBUG", "LOG_LEVEL"}
}


def probe(tmp_path: Path, **env: str) -> tuple[dict, str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={
            **CLEAN,
            "DJANGO_SETTINGS_MODULE": RUN_SETTINGS,
            "LOOPDESK_VAR_DIR": str(tmp_path),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1]), result.stderr


@pytest.fixture(scope="module")
def run_platform(tmp_path_factory) -> tuple[dict, str]:
    return probe(tmp_path_factory.mktemp("run"))


def test_the_run_command_does_not_run_with_debug(run_platform):
    assert RUN_SETTINGS == "config.settings.local"
    assert not re.search(r"^\s*(export\s+)?DJANGO_DEBUG=", RUN_SCRIPT, re.MULTILINE)
    assert run_platform[0]["debug"] is False


def test_a_server_error_shows_the_plain_branded_page(run_platform):
    page = run_platform[0]["pages"]["/test-errors/broken/"]

    assert page["status"] == 500
    assert "Something went wrong on our side" in page["body"]
    assert "Brightwave support" in page["body"]
    for disclosure in ("Traceback", "DATABASES", "RuntimeError", "SECRET_KEY", str(ROOT)):
        assert disclosure not in page["body"]


def test_not_found_and_forbidden_are_branded_pages(run_platform):
    pages = run_platform[0]["pages"]

    for path in ("/test-errors/missing/", "/no-such-page/"):
        assert pages[path]["status"] == 404
        assert "We could not find that page" in pages[path]["body"]
        assert "No such article" not in pages[path]["body"]
    assert pages["/test-errors/forbidden/"]["status"] == 403
    assert "You do not have access to this page" in pages["/test-errors/forbidden/"]["body"]


def test_static_files_and_the_favicon_are_served_without_debug(run_platform):
    pages = run_platform[0]["pages"]

    assert pages["/static/chat/chat.css"]["status"] == 200
    assert ".widget" in pages["/static/chat/chat.css"]["body"]
    assert pages["/favicon.ico"]["status"] == 301
    assert pages["/favicon.ico"]["location"] == "/static/favicon.svg"


def test_a_404_is_logged_once_without_a_traceback(run_platform):
    log = run_platform[1]

    for path in ("/test-errors/missing/", "/no-such-page/"):
        assert len(re.findall(f"Not Found: {path}$", log, re.MULTILINE)) == 1, log
    # Only the 500 carries a traceback (not the 404s, nor the 403).
    assert log.count("Traceback") == 1
    assert "RuntimeError: a bug with a secret in it" in log


def test_a_404_is_logged_once_with_debug_on_too(tmp_path):
    _, log = probe(tmp_path, DJANGO_DEBUG="true")

    assert len(re.findall("Not Found: /no-such-page/$", log, re.MULTILINE)) == 1, log
