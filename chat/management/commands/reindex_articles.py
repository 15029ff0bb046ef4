"""Embed every knowledge-base article with the current provider's embedding model."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from chat.models import Article
from chat.services import articles_embed, articles_embed_queue


class Command(BaseCommand):
    help = "(Re-)compute article embeddings: missing or stale ones, or all with --force."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--force", action="store_true", help="re-embed up-to-date ones too")
        parser.add_argument(
            "--queue", action="store_true", help="queue django-q2 tasks instead of running here"
        )

    def handle(self, *args: Any, force: bool = False, queue: bool = False, **options: Any) -> None:
        ids = list(Article.objects.order_by("pk").values_list("pk", flat=True))
        if queue:
            with transaction.atomic():
                tasks = articles_embed_queue(article_ids=ids, force=force)
            self.stdout.write(f"Queued {len(ids)} article(s) in {tasks} embedding task(s).")
            return
        embedded = articles_embed(article_ids=ids, force=force)
        self.stdout.write(
            self.style.SUCCESS(
                f"Embedded {embedded} of {len(ids)} article(s); the rest were current."
            )
        )
