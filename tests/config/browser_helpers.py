"""Shared by the browser tests of the customer-facing pages."""

from __future__ import annotations

from pathlib import Path

# Screenshots kept after a run (var/ is not committed).
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts"
ARTIFACTS.mkdir(parents=True, exist_ok=True)


def only_local_requests(page, base_url: str) -> list[str]:
    """Fail every request that does not go to ``base_url``; returns the list of the
    URLs that were refused (filled in as the page runs)."""
    refused: list[str] = []

    def route(route) -> None:
        url = route.request.url
        if url.startswith(base_url) or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            refused.append(url)
            route.abort("internetdisconnected")

    page.route("**/*", route)
    return refused
