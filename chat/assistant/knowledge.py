"""Cosine retrieval over the knowledge base's stored article embeddings.

The matrix of published, embedded articles is cached per process and rebuilt only
when the cheap signature query (count, max updated_at, max embedded_at) changes; in a
server the signature is checked at most every ``KNOWLEDGE_REFRESH_SECONDS``, not per
question. Articles not embedded yet are not retrievable until the worker embeds them.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings

from chat.assistant.contract import Passage
from chat.events import db
from chat.models import Article
from chat.selectors import articles_retrievable, articles_retrievable_signature


def article_document(article: Article) -> str:
    """The text an article is embedded as."""
    return f"{article.title}\n\n{article.body}"


@dataclass(frozen=True)
class _Index:
    signature: tuple[Any, ...]
    slugs: list[str]
    titles: list[str]
    texts: list[str]
    matrix: np.ndarray  # (n, dim), unit rows


_indexes: dict[str, _Index] = {}
_lock = threading.Lock()


def knowledge_index(*, embedding_model: str) -> _Index:
    signature = articles_retrievable_signature(embedding_model=embedding_model)
    index = _indexes.get(embedding_model)
    if index is not None and index.signature == signature:
        return index
    with _lock:
        rows = list(
            articles_retrievable(embedding_model=embedding_model)
            .order_by("pk")
            .values_list("slug", "title", "body", "embedding")
        )
        dims = {len(row[3]) for row in rows if isinstance(row[3], list)}
        dim = max(dims) if dims else 0
        rows = [row for row in rows if isinstance(row[3], list) and len(row[3]) == dim]
        matrix = (
            np.asarray([row[3] for row in rows], dtype=np.float32)
            if rows
            else np.zeros((0, dim), dtype=np.float32)
        )
        index = _Index(
            signature=signature,
            slugs=[row[0] for row in rows],
            titles=[row[1] for row in rows],
            texts=[row[2] for row in rows],
            matrix=matrix,
        )
        _indexes[embedding_model] = index
        return index


_checked: dict[str, float] = {}


async def knowledge_index_current(*, embedding_model: str) -> _Index:
    """The index for ``embedding_model``, re-checked against the database at most every
    ``KNOWLEDGE_REFRESH_SECONDS`` (an edit or a publication shows within that time)."""
    index = _indexes.get(embedding_model)
    now = time.monotonic()
    if (
        index is not None
        and now - _checked.get(embedding_model, 0.0) < settings.KNOWLEDGE_REFRESH_SECONDS
    ):
        return index
    index = await db(knowledge_index)(embedding_model=embedding_model)
    _checked[embedding_model] = now
    return index


# Codes like "E21" or "E52": sentence embeddings barely tell them apart, titles name them.
_CODE = re.compile(r"\b(?=\w*\d)(?=\w*[a-z])\w{2,8}\b")
CODE_BOOST = 0.2


def _codes(text: str) -> set[str]:
    return set(_CODE.findall(text.lower()))


def article_scores(
    *, matrix: np.ndarray, titles: list[str], query_vector: np.ndarray, query_text: str
) -> np.ndarray:
    """Cosine similarity of each article to the query, plus the code boost."""
    scores = matrix @ query_vector.astype(np.float32)
    codes = _codes(query_text)
    if codes:
        boost = [CODE_BOOST if codes & _codes(title) else 0.0 for title in titles]
        scores = np.minimum(scores + np.asarray(boost, dtype=np.float32), 1.0)
    return scores


def passages_search(
    *,
    index: _Index,
    query_vector: np.ndarray,
    top_k: int,
    min_score: float,
    query_text: str = "",
) -> tuple[list[Passage], float]:
    """The best ``top_k`` articles of ``index`` scoring at least ``min_score``, and the
    top score. No database access.

    The score is the cosine similarity, plus ``CODE_BOOST`` when the question names a
    code (an error code such as E21) that the article's title names too.
    """
    if not index.slugs or index.matrix.shape[1] != query_vector.shape[-1]:
        return [], 0.0
    scores = article_scores(
        matrix=index.matrix, titles=index.titles, query_vector=query_vector, query_text=query_text
    )
    order = np.argsort(-scores)[:top_k]
    top_score = float(scores[order[0]])
    passages = [
        Passage(
            slug=index.slugs[i],
            title=index.titles[i],
            text=index.texts[i],
            score=round(float(scores[i]), 4),
        )
        for i in order
        if scores[i] >= min_score
    ]
    return passages, round(top_score, 4)
