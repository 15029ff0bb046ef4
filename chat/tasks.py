"""django-q2 entry points of the chat app."""

from __future__ import annotations

from chat.services import article_embed


def article_embed_task(article_id: int, force: bool = False) -> bool:
    """Embed one knowledge-base article; safe to run twice (returns False if unchanged)."""
    return article_embed(article_id=article_id, force=force)


def turns_sweep_task() -> int:
    """Scheduled every minute: finish turns whose server process died (the customer is
    told and can reach a person)."""
    from chat.services.turns import turns_sweep

    return turns_sweep()
