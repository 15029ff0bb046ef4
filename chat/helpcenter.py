"""The public help center: an index of the published articles with a search box, and a
page per article with an anchor per passage (what the chat's sources link to).

The search is the assistant's own retrieval (``knowledge_search`` and the calibrated
``answer_confidence``) on the same cached index; the article page renders the article's
current text through the same passage splitter, so its anchors are the ones the
assistant cites.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from chat.assistant import AssistantError
from chat.assistant.chain import retrieval_adapter, retrieval_encode
from chat.assistant.contract import BAND_DONT_KNOW, Passage
from chat.assistant.knowledge import (
    answer_band,
    answer_confidence,
    knowledge_index_current,
    knowledge_search,
)
from chat.assistant.passages import PassageSpec, article_passages
from chat.assistant.providers import provider_current
from chat.selectors import article_published, articles_published

SEARCH_MAX_CHARS = 300
SEARCH_RESULTS = 6


@dataclass(frozen=True)
class Block:
    """Consecutive passages rendered together: a run of numbered steps is one list."""

    kind: str
    heading: str
    passages: list[PassageSpec]


def passage_blocks(passages: list[PassageSpec]) -> list[Block]:
    blocks: list[Block] = []
    for (kind, heading), run in groupby(
        passages, key=lambda p: ("step" if p.kind == "step" else "text", p.heading)
    ):
        blocks.append(Block(kind=kind, heading=heading, passages=list(run)))
    return blocks


async def _search(query: str) -> tuple[list[Passage], bool]:
    """(passages, answers): the closest passages, and whether the assistant would cite
    them (its calibrated decision: a confident or a hedged answer, not "I don't know")."""
    provider = provider_current()
    encoding = await retrieval_encode(provider, query, await retrieval_adapter(provider))
    index = await knowledge_index_current(embedding_model=provider.embedder.name)
    ranking = knowledge_search(index=index, query=encoding, query_text=query, top_k=SEARCH_RESULTS)
    confidence, threshold, hedge_threshold = answer_confidence(
        signals=ranking.signals, embedding_model=provider.embedder.name
    )
    band = answer_band(
        ranking=ranking,
        confidence=confidence,
        threshold=threshold,
        hedge_threshold=hedge_threshold,
    )
    return ranking.passages, band != BAND_DONT_KNOW


@require_GET
async def help_index(request: HttpRequest) -> HttpResponse:
    """Public. ``?q=`` searches the knowledge base like the assistant does."""
    query = " ".join(request.GET.get("q", "").split())
    if len(query) > SEARCH_MAX_CHARS:
        return await sync_to_async(render)(
            request,
            "chat/help_index.html",
            {"query": query[:SEARCH_MAX_CHARS], "too_long": True, "max_chars": SEARCH_MAX_CHARS},
            status=400,
        )
    results: list[Passage] = []
    answers = False
    failed = False
    if query:
        try:
            results, answers = await _search(query)
        except AssistantError:
            failed = True
    articles = [a async for a in articles_published()]
    categories = [
        (category or "General", list(items))
        for category, items in groupby(articles, key=lambda a: a.category)
    ]
    return await sync_to_async(render)(
        request,
        "chat/help_index.html",
        {
            "query": query,
            "results": results,
            "answers": answers,
            "failed": failed,
            "categories": categories,
            "max_chars": SEARCH_MAX_CHARS,
        },
    )


@require_GET
def help_article(request: HttpRequest, slug: str) -> HttpResponse:
    """Public. A published article, one anchored section per passage; unknown and
    unpublished slugs get the help center's 404."""
    article = article_published(slug=slug)
    if article is None:
        return render(request, "chat/help_missing.html", {"slug": slug}, status=404)
    return render(
        request,
        "chat/help_article.html",
        {"article": article, "blocks": passage_blocks(article_passages(body=article.body))},
    )
