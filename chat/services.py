from __future__ import annotations

from django.db import transaction

from chat.models import Article


@transaction.atomic
def article_upsert(
    *, slug: str, title: str, body: str, category: str = "", overwrite: bool = False
) -> tuple[Article, bool]:
    """Create the article, or update it when ``overwrite``; returns (article, changed)."""
    article = Article.objects.select_for_update().filter(slug=slug).first()
    if article is None:
        article = Article(slug=slug, title=title, body=body, category=category)
        article.full_clean()
        article.save()
        return article, True
    if not overwrite or (article.title, article.body, article.category) == (title, body, category):
        return article, False
    article.title, article.body, article.category = title, body, category
    article.full_clean()
    article.save(update_fields=["title", "body", "category", "updated_at"])
    return article, True
