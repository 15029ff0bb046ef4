"""django-q2 entry points of the chat app."""

from __future__ import annotations

import logging
import time

from chat.services import articles_embed

logger = logging.getLogger(__name__)


def articles_embed_task(article_ids: list[int], force: bool = False) -> int:
    """Embed a batch of knowledge-base articles and log one line for the batch.

    Safe to run twice: articles already embedded after their last edit are skipped.
    Returns how many vectors were stored.
    """
    started = time.monotonic()
    stored = articles_embed(article_ids=article_ids, force=force)
    current = len(article_ids) - stored
    logger.info(
        "knowledge base: embedded %d of %d article(s) in %.1fs%s",
        stored,
        len(article_ids),
        time.monotonic() - started,
        f" ({current} already current or deleted)" if current else "",
    )
    return stored


def article_embed_task(article_id: int, force: bool = False) -> bool:
    """Embed one article (tasks queued before batches existed still resolve here)."""
    return articles_embed_task([article_id], force=force) == 1


def turns_sweep_task() -> int:
    """Scheduled every minute: finish turns whose server process died (the customer is
    told and can reach a person)."""
    from chat.services.turns import turns_sweep

    return turns_sweep()
