"""Fixtures for every test: a user of each role, API clients, the chromium path."""

from __future__ import annotations

import shutil

import pytest
from rest_framework.test import APIClient

from config import roles
from tests.assistants import ScriptedAssistant
from tests.factories import UserFactory


@pytest.fixture
def role_groups(db):
    """The role groups with their permissions, as ``load_demo`` creates them."""
    return roles.roles_sync()


@pytest.fixture
def make_user(role_groups):
    def make(role: str | None = None, **kwargs):
        return UserFactory(role=role, **kwargs)

    return make


@pytest.fixture
def customer(make_user):
    return make_user(roles.CUSTOMERS, username="casey")


@pytest.fixture
def agent(make_user):
    return make_user(roles.AGENTS, username="alex", first_name="Alex", last_name="Agent")


@pytest.fixture
def second_agent(make_user):
    return make_user(roles.AGENTS, username="sam", first_name="Sam", last_name="Support")


@pytest.fixture
def reviewer(make_user):
    return make_user(roles.REVIEWERS, username="robin")


@pytest.fixture
def ml_engineer(make_user):
    return make_user(roles.ML_ENGINEERS, username="morgan")


@pytest.fixture
def admin_member(make_user):
    return make_user(roles.ADMINS, username="ada")


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def chromium_path() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not shutil.which(path):
        pytest.fail("Debian's chromium is required for browser tests (scripts/test installs it)")
    return path


@pytest.fixture
def live_servers(transactional_db, settings):
    """Start real ASGI servers (HTTP + WebSockets, Daphne) in child processes on demand:
    ``url, process = live_servers.start()``; all are stopped after the test.

    Each child is forked from the test process, so it shares the test database (a file
    or a server: the test settings make SQLite a file) and whatever the test patched
    before starting it (a scripted model provider, settings).
    """
    import os
    from functools import partial
    from types import SimpleNamespace

    from channels.testing.live import make_application, set_database_connection
    from daphne.testing import DaphneProcess
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    settings.ALLOWED_HOSTS = ["*"]
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    started: list = []

    def child_database_setup():
        # The child is forked after the test database exists, so NAME already is the
        # test database; without TEST.NAME channels would prefix it a second time
        # ("test_test_...") on PostgreSQL.
        from django.conf import settings as child_settings

        database = child_settings.DATABASES["default"]
        if not (database.get("TEST") or {}).get("NAME"):
            database.setdefault("TEST", {})["NAME"] = database["NAME"]
        set_database_connection()
        import sys
        from concurrent.futures import ThreadPoolExecutor

        from asgiref.sync import SyncToAsync

        # Forked: the parent's single sync thread (database_sync_to_async) does not exist
        # here, but its executor believes it does and would queue every ORM call forever.
        SyncToAsync.single_thread_executor = ThreadPoolExecutor(max_workers=1)

        if "torch" in sys.modules:
            # GNU OpenMP is not fork-safe: once an earlier test ran a torch op in the
            # parent, the forked server hangs on its first multi-threaded op.
            sys.modules["torch"].set_num_threads(1)

    def start():
        process = DaphneProcess(
            "127.0.0.1",
            partial(make_application, static_wrapper=ASGIStaticFilesHandler),
            setup=child_database_setup,
        )
        process.start()
        started.append(process)
        if not process.ready.wait(timeout=30):
            raise RuntimeError("Daphne did not start")
        return f"http://127.0.0.1:{process.port.value}", process

    try:
        yield SimpleNamespace(start=start)
    finally:
        for process in started:
            if process.is_alive():
                process.terminate()
            process.join(timeout=10)


@pytest.fixture
def asgi_live_server(live_servers):
    """One real ASGI server in a child process (see ``live_servers``); yields its URL."""
    url, _ = live_servers.start()
    return url


@pytest.fixture
def browser(chromium_path):
    """A headless Debian chromium driven by Playwright (sync API)."""
    import os

    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls the test
    # makes between page actions are still plain synchronous calls.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=chromium_path,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-component-update",
            ],
        )
        watched = _CspWatchingBrowser(instance)
        try:
            yield watched
        finally:
            instance.close()
        # Every page must work under the Content-Security-Policy: a blocked script,
        # style or connection is a failure, not a console line nobody reads.
        assert watched.violations == [], watched.violations


REDOC_BADGE = "cdn.redoc.ly/redoc/logo-mini.svg"


class _CspWatchingBrowser:
    """The Playwright browser, recording every Content-Security-Policy violation of the
    pages it opens."""

    def __init__(self, browser):
        self._browser = browser
        self.violations: list[str] = []

    def __getattr__(self, name):
        return getattr(self._browser, name)

    def _watch(self, page):
        def console(message):
            # ReDoc's bundle shows a remote "API docs by Redocly" badge; the policy
            # blocking it is the policy working (the badge hides itself).
            if "Content Security Policy" in message.text and REDOC_BADGE not in message.text:
                self.violations.append(f"{page.url}: {message.text}")

        page.on("console", console)
        return page

    def new_page(self, *args, **kwargs):
        return self._watch(self._browser.new_page(*args, **kwargs))

    def new_context(self, *args, **kwargs):
        context = self._browser.new_context(*args, **kwargs)
        context.on("page", self._watch)
        return context


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Rate limits and worker heartbeats live in the cache: no test sees another's."""
    _cache_clear()
    yield
    _cache_clear()


def _cache_clear() -> None:
    """Clear this run's cache keys only.

    On Redis ``cache.clear()`` is FLUSHDB, which would also wipe the channel-layer groups
    and any other run sharing the server; the test settings give each run a key prefix.
    """
    from django.conf import settings
    from django.core.cache import cache

    config = settings.CACHES["default"]
    if not config["BACKEND"].endswith("RedisCache"):
        cache.clear()
        return
    client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
    keys = list(client.scan_iter(match=f"{config['KEY_PREFIX']}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(scope="session", autouse=True)
def _close_stray_database_sessions(django_db_setup, django_db_blocker):
    """Let the test database be dropped at the end of the run.

    Consumers run ORM calls in asgiref's worker threads, and browser tests in a Daphne
    child; their connections can outlive the tests and block DROP DATABASE on PostgreSQL.
    """
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


SEEDS = (
    "escalation.migrations.0002_default_rules",
    "escalation.migrations.0009_intent_router_rules",
)


@pytest.fixture(autouse=True)
def _default_rules(request):
    """Transactional tests flush the database after each test, seeded rules included:
    put the data migrations' defaults (the escalation rules and intent policies every
    install has, the shipped router version) back before such a test."""
    marker = request.node.get_closest_marker("django_db")
    if marker and marker.kwargs.get("transaction"):
        import importlib

        from django.apps import apps

        request.getfixturevalue("transactional_db")
        for module in SEEDS:
            importlib.import_module(module).seed(apps, None)
        importlib.import_module("chat.migrations.0007_router_shipped_version").register(apps, None)


@pytest.fixture(autouse=True)
def _router_live_fresh():
    """Each test looks the live router version up in its own database."""
    from chat.assistant.router import router_forget_live

    router_forget_live()
    yield
    router_forget_live()


@pytest.fixture(scope="session")
def local_models() -> None:
    """MiniLM and the shipped intent router loaded once per test run (as the server's
    warm-up does), so a turn's deadline never pays for loading them."""
    from chat.assistant.providers import _load_local_models

    _load_local_models()


@pytest.fixture
def scripted(monkeypatch, local_models) -> ScriptedAssistant:
    """The model provider replaced by a script; everything else of the turn is real
    (the intent router included: the shipped local one)."""
    from chat import assistant as assistant_api

    bot = ScriptedAssistant()
    monkeypatch.setattr(assistant_api, "assistant_prepare", bot.prepare, raising=False)
    monkeypatch.setattr(assistant_api, "assistant_stream", bot.stream, raising=False)
    monkeypatch.setattr(assistant_api, "assistant_draft", bot.draft, raising=False)
    return bot


@pytest.fixture
def pipeline(scripted, settings):
    """Run customer turns through the real turn pipeline from a plain (sync) test:
    ``pipeline.ask(conversation, "text")`` stores the message as the chat socket does,
    runs its turn to the end and returns it. ORM work stays on the test's own thread
    (``DATABASE_THREADS = 0``), so it works inside a test transaction too."""
    import asyncio
    import uuid
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from asgiref.sync import async_to_sync

    from chat import services, turns

    settings.DATABASE_THREADS = 0

    def ask(conversation, text: str, *, author=None, client_id: str = ""):
        received = services.customer_message_receive(
            conversation=conversation,
            text=text,
            client_id=client_id or uuid.uuid4().hex,
            author=author,
            rate_subject=f"test:{conversation.pk}",
            claim_owner=turns.process_owner(),
        )
        if received.turn is None:
            return None
        run = async_to_sync(turns.turn_await)
        kwargs = {
            "turn_id": received.turn.pk,
            "conversation_id": conversation.pk,
            "claimed": received.claimed,
        }
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return run(**kwargs)
        # A browser test's thread runs Playwright's loop: run the turn from another thread
        # (such tests are transactional, so that thread sees the rows).
        with ThreadPoolExecutor(max_workers=1) as executor:
            return executor.submit(run, **kwargs).result()

    return SimpleNamespace(bot=scripted, ask=ask)
