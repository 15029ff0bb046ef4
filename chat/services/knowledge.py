"""Writes to the knowledge base: articles, their passages and their embeddings."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from django.db import transaction
from django.utils import timezone

from chat.models import Article, ArticlePassage


@transaction.atomic
def article_upsert(
    *,
    slug: str,
    title: str,
    body: str,
    category: str = "",
    search_labels: str = "",
    overwrite: bool = False,
    queue_embedding: bool = True,
) -> tuple[Article, bool]:
    """Create the article, or update it when ``overwrite``; returns (article, changed).

    A changed article is embedded in the background after commit; a caller importing
    many articles passes ``queue_embedding=False`` and queues them together with
    ``articles_embed_queue`` (one task per batch instead of one per article).
    """
    article = Article.objects.select_for_update().filter(slug=slug).first()
    if article is None:
        article = Article(
            slug=slug, title=title, body=body, category=category, search_labels=search_labels
        )
        article.full_clean()
        article.save()
        if queue_embedding:
            article_embed_queue(article=article)
        return article, True
    fields = (title, body, category, search_labels)
    if (
        not overwrite
        or (
            article.title,
            article.body,
            article.category,
            article.search_labels,
        )
        == fields
    ):
        return article, False
    article.title, article.body, article.category, article.search_labels = fields
    article.full_clean()
    article.save(update_fields=["title", "body", "category", "search_labels", "updated_at"])
    if queue_embedding:
        article_embed_queue(article=article)
    return article, True


# --- knowledge-base embeddings (owned by the assistant) --------------------------------------


def article_embed_queue(*, article: Article, force: bool = False) -> None:
    """After commit, queue the background task that (re-)embeds the article."""
    articles_embed_queue(article_ids=[article.pk], force=force)


def articles_embed_queue(*, article_ids: Iterable[int], force: bool = False) -> int:
    """After commit, queue the background embedding of these articles: one task per
    ``EMBED_BATCH_SIZE`` articles (each logs one line). Returns how many tasks."""
    from django_q.tasks import async_task

    ids = sorted(set(article_ids))
    batches = [
        ids[start : start + EMBED_BATCH_SIZE] for start in range(0, len(ids), EMBED_BATCH_SIZE)
    ]

    def queue() -> None:
        for batch in batches:
            async_task("chat.tasks.articles_embed_task", batch, force=force)

    if batches:
        transaction.on_commit(queue)
    return len(batches)


@transaction.atomic
def article_save(*, article: Article) -> Article:
    """Validate and save an article edited in the admin; re-embed it after commit when
    its text or search labels changed (publishing alone does not need a new embedding)."""
    article.full_clean()
    text = ("title", "body", "search_labels")
    previous = Article.objects.filter(pk=article.pk).values_list(*text).first()
    article.save()
    if previous is None or tuple(previous) != tuple(getattr(article, f) for f in text):
        article_embed_queue(article=article)
    return article


@transaction.atomic
def article_publish_set(*, article_ids: list[int], published: bool) -> int:
    """Publish or unpublish articles; returns how many changed."""
    changed = 0
    for article in Article.objects.select_for_update().filter(pk__in=article_ids):
        if article.is_published != published:
            article.is_published = published
            article.full_clean()
            article.save(update_fields=["is_published", "updated_at"])
            changed += 1
    return changed


def article_embed(*, article_id: int, force: bool = False) -> bool:
    """Store the unit embedding of one article's title + body; True if stored.

    Idempotent: see ``articles_embed``.
    """
    return articles_embed(article_ids=[article_id], force=force) == 1


EMBED_BATCH_SIZE = 32


def _token_bytes(tokens: np.ndarray | None) -> bytes:
    return b"" if tokens is None else np.asarray(tokens, dtype=np.float16).tobytes()


def articles_embed(*, article_ids: list[int], force: bool = False) -> int:
    """Embed the given articles and their passages in batches; returns how many articles
    were stored.

    Each article is split into passages (``chat.assistant.passages``); the article's
    vector, and each passage's vector and token vectors, are computed outside any
    transaction. Then the row is locked and, only if the article was not edited
    meanwhile (that edit queued its own embedding), its vector is stored and its
    passages replaced, in one transaction.

    Idempotent: an article already embedded by the current embedding model after its
    last edit is left alone (unless ``force``); deleted ids are skipped.
    """
    from chat.assistant.knowledge import article_document, passage_tokens
    from chat.assistant.passages import article_passages, passage_document
    from chat.assistant.providers import embedder_current

    embedder = embedder_current()
    articles = [
        article
        for article in Article.objects.filter(pk__in=article_ids).order_by("pk")
        if force
        or not (
            article.embedding is not None
            and article.embedding_model == embedder.name
            and article.embedded_at is not None
            and article.embedded_at >= article.updated_at
        )
    ]
    stored = 0
    for start in range(0, len(articles), EMBED_BATCH_SIZE):
        batch = articles[start : start + EMBED_BATCH_SIZE]
        vectors = embedder.embed_documents([article_document(a) for a in batch])
        specs = [article_passages(body=a.body) for a in batch]
        encodings = iter(
            embedder.encode_documents(
                [
                    passage_document(title=a.title, heading=spec.heading, text=spec.text)
                    for a, article_specs in zip(batch, specs, strict=True)
                    for spec in article_specs
                ]
            )
        )
        texts = [spec.text for article_specs in specs for spec in article_specs]
        sentence_blobs = iter(
            [_token_bytes(m) for m in embedder.sentence_vectors(texts) or []] or [b""] * len(texts)
        )
        passages = [
            [
                ArticlePassage(
                    article=article,
                    position=spec.position,
                    anchor=spec.anchor,
                    kind=spec.kind,
                    heading=spec.heading[:200],
                    text=spec.text,
                    embedding=[round(float(x), 6) for x in encoding.vector],
                    token_vectors=_token_bytes(passage_tokens(encoding)),
                    sentence_vectors=next(sentence_blobs),
                    embedding_model=embedder.name,
                )
                for spec, encoding in zip(article_specs, encodings, strict=False)
            ]
            for article, article_specs in zip(batch, specs, strict=True)
        ]
        for article, vector, article_passages_rows in zip(batch, vectors, passages, strict=True):
            with transaction.atomic():
                locked = Article.objects.select_for_update().filter(pk=article.pk).first()
                if locked is None or locked.updated_at != article.updated_at:
                    continue
                locked.embedding = [round(float(x), 6) for x in vector]
                locked.embedding_model = embedder.name
                locked.embedded_at = timezone.now()
                locked.save(update_fields=["embedding", "embedding_model", "embedded_at"])
                ArticlePassage.objects.filter(article=locked).delete()
                for row in article_passages_rows:
                    row.full_clean(exclude=["article"])
                ArticlePassage.objects.bulk_create(article_passages_rows)
                stored += 1
    return stored
