"""Knowledge-base imports are embedded in batches: one background task and one log line
per batch, not one per article."""

from __future__ import annotations

import logging

import pytest
from django.db import transaction

from chat import services
from chat.assistant.embeddings import MODEL_NAME
from chat.models import Article
from chat.services import knowledge as knowledge_services
from config.demo import demo_articles, demo_load

pytestmark = pytest.mark.django_db


def test_an_import_queues_one_task_per_batch_and_logs_one_line_each(
    monkeypatch, caplog, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(knowledge_services, "EMBED_BATCH_SIZE", 2)
    caplog.set_level(logging.INFO, logger="chat.tasks")

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        ids = [
            services.article_upsert(
                slug=f"a-{n}", title=f"Article {n}", body="Restart the Hub.", queue_embedding=False
            )[0].pk
            for n in range(3)
        ]
        tasks = services.articles_embed_queue(article_ids=ids)

    lines = [r.getMessage() for r in caplog.records if r.name == "chat.tasks"]
    assert tasks == 2
    assert len(lines) == 2
    assert lines[0].startswith("knowledge base: embedded 2 of 2 article(s)")
    assert lines[1].startswith("knowledge base: embedded 1 of 1 article(s)")
    assert set(Article.objects.values_list("embedding_model", flat=True)) == {MODEL_NAME}


def test_the_demo_knowledge_base_is_queued_in_batches_not_per_article(
    monkeypatch, django_capture_on_commit_callbacks
):
    queued: list[list[int]] = []
    monkeypatch.setattr(
        "django_q.tasks.async_task", lambda name, ids, force=False: queued.append(ids)
    )

    with django_capture_on_commit_callbacks(execute=True):
        demo_load()

    articles = len(demo_articles())
    assert sorted(pk for batch in queued for pk in batch) == sorted(
        Article.objects.values_list("pk", flat=True)
    )
    assert len(queued) == -(-articles // knowledge_services.EMBED_BATCH_SIZE) < articles
