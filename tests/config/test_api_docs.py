"""The API docs (Swagger UI and ReDoc) work without internet: everything they load is ours."""

from __future__ import annotations

import re

import pytest

from tests.config.browser_helpers import ARTIFACTS, only_local_requests


@pytest.mark.django_db
def test_schema_generates_without_warnings(tmp_path):
    from django.core.management import call_command

    # --fail-on-warn raises on any warning, e.g. an enum name drf-spectacular had to invent.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yml"))

    assert "TicketStatusEnum:" in (tmp_path / "s.yml").read_text()


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_docs_pages_load_nothing_from_another_host(client, path):
    html = client.get(path).content.decode()

    assert "/static/drf_spectacular_sidecar/" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "a CDN reference is left"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_swagger_ui_renders_the_operations_with_the_network_blocked(asgi_live_server, browser):
    page = browser.new_page()
    blocked = only_local_requests(page, asgi_live_server)

    page.goto(asgi_live_server + "/api/docs/")
    operations = page.locator(".opblock")
    operations.first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "api-docs-offline.png"))

    assert operations.count() > 20
    assert page.locator(".opblock-summary-path", has_text="/api/conversations/").count() > 0
    assert page.locator(".info .title").inner_text().startswith("Loopdesk API")
    assert blocked == [], f"the docs tried to reach {blocked}"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_redoc_renders_with_the_network_blocked(asgi_live_server, browser):
    page = browser.new_page()
    blocked = only_local_requests(page, asgi_live_server)

    page.goto(asgi_live_server + "/api/redoc/")
    page.locator("h1", has_text="Loopdesk API").wait_for(timeout=30_000)

    assert page.locator("[data-section-id^='tag/']").count() > 0
    # The bundle's "API docs by Redocly" badge is the one remote image; it hides itself
    # when it cannot load. Everything the docs need came from this server.
    assert [url for url in blocked if not url.endswith("/redoc/logo-mini.svg")] == []
