"""The demo knowledge base, loaded and embedded through the services (sync django-q2)."""

from __future__ import annotations

import pytest

from chat.models import Article
from chat.services import article_upsert
from config.demo import demo_articles


@pytest.fixture
def knowledge_base(db, django_capture_on_commit_callbacks) -> list[Article]:
    with django_capture_on_commit_callbacks(execute=True):
        for article in demo_articles():
            article_upsert(
                slug=article["slug"],
                title=article["title"],
                body=article["body"],
                category=article.get("category", ""),
            )
    return list(Article.objects.all())
