"""The demo knowledge base, loaded and embedded through the services (sync django-q2)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.management import call_command

from chat.assistant import providers
from chat.assistant.embeddings import MODEL_NAME, Encoding, embed_texts, encode_texts
from chat.assistant.knowledge import article_text
from chat.models import Article
from chat.services import article_upsert
from config.demo import demo_articles

_DOCUMENT_VECTORS: dict[str, np.ndarray] = {}
_PASSAGE_ENCODINGS: dict[str, Encoding] = {}


def _memo_embed_texts(texts: list[str]) -> np.ndarray:
    """The real MiniLM encoder, remembering each article's vector for the whole session
    (every test rebuilds the same 36 articles; encoding them again only costs time)."""
    if not _DOCUMENT_VECTORS:  # the demo articles in one batch, not one call each
        demo = [
            article_text(title=a["title"], body=a["body"], labels=a.get("search_labels", []))
            for a in demo_articles()
        ]
        _DOCUMENT_VECTORS.update(zip(demo, embed_texts(demo), strict=True))
    missing = [t for t in dict.fromkeys(texts) if t not in _DOCUMENT_VECTORS]
    if missing:
        _DOCUMENT_VECTORS.update(zip(missing, embed_texts(missing), strict=True))
    return np.stack([_DOCUMENT_VECTORS[t] for t in texts])


def _memo_encode_texts(texts: list[str]) -> list[Encoding]:
    """The real MiniLM passage encodings, remembered for the session the same way."""
    missing = [t for t in dict.fromkeys(texts) if t not in _PASSAGE_ENCODINGS]
    if missing:
        _PASSAGE_ENCODINGS.update(zip(missing, encode_texts(missing), strict=True))
    return [_PASSAGE_ENCODINGS[t] for t in texts]


class MemoEmbedder:
    """The real MiniLM embedder with the session's memo (for indexes built in memory)."""

    name = MODEL_NAME

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return _memo_embed_texts(texts)

    def encode_documents(self, texts: list[str]) -> list[Encoding]:
        return _memo_encode_texts(texts)

    async def embed_query(self, text: str) -> np.ndarray:
        return _memo_embed_texts([text])[0]

    async def encode_query(self, text: str) -> Encoding:
        return _memo_encode_texts([text])[0]


@pytest.fixture
def knowledge_base(db, monkeypatch) -> list[Article]:
    """The demo articles, saved through the service (the sync django-q2 task embeds each
    and its passages on commit) and then reindexed, which finds nothing left to do."""
    monkeypatch.setattr(providers, "embed_texts", _memo_embed_texts)
    monkeypatch.setattr(providers, "encode_texts", _memo_encode_texts)
    for article in demo_articles():
        article_upsert(
            slug=article["slug"],
            title=article["title"],
            body=article["body"],
            category=article.get("category", ""),
            search_labels="\n".join(article.get("search_labels", [])),
        )
    call_command("reindex_articles", stdout=io.StringIO())
    return list(Article.objects.all())
