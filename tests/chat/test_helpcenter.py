"""The public help center: the article index, search with the assistant's retrieval, a
page per published article with an anchor per passage, and its 404."""

from __future__ import annotations

import re

import pytest

from chat.assistant.passages import article_passages
from chat.models import Article
from chat.services import article_publish_set, article_upsert
from tests.chat.knowledge_fixtures import knowledge_base

__all__ = ["knowledge_base"]

pytestmark = pytest.mark.django_db

BODY = (
    "Away mode lowers your heating while nobody is home. "
    "1. Go to Heating > Away mode. 2. Choose a start and an end date. 3. Tap Save. "
    "While Away mode is on, the Hub holds your home at 15 degrees by default; you can change "
    "this to anything between 5 and 18 degrees under Heating > Away mode > Away temperature."
)


@pytest.fixture
def away(db) -> Article:
    article, _ = article_upsert(
        slug="using-away-mode", title="Using Away mode", body=BODY, category="Heating"
    )
    return article


def test_article_page_is_public_with_one_anchor_per_passage(client, away):
    response = client.get("/help/using-away-mode/")

    html = response.content.decode()
    assert response.status_code == 200
    assert "<h1>Using Away mode</h1>" in html
    anchors = re.findall(r'class="passage" id="([\w-]+)"', html)
    assert anchors == [p.anchor for p in article_passages(body=BODY)]
    assert anchors == ["p1", "step-1", "step-2", "step-3", "p2"]
    assert '<li class="passage" id="step-2" value="2">Choose a start and an end date.</li>' in html


def test_unknown_and_unpublished_articles_get_the_help_centers_404(client, away):
    article_publish_set(article_ids=[away.pk], published=False)

    unpublished = client.get("/help/using-away-mode/")
    unknown = client.get("/help/no-such-article/")

    for response in (unpublished, unknown):
        assert response.status_code == 404
        assert "We could not find that article" in response.content.decode()
        assert "Away mode lowers" not in response.content.decode()


def test_index_lists_published_articles_by_category_only(client, away):
    article_upsert(slug="draft", title="A draft nobody should see", body="Not ready.")
    Article.objects.filter(slug="draft").update(is_published=False)

    html = client.get("/help/").content.decode()

    assert 'href="/help/using-away-mode/"' in html
    assert "Heating" in html
    assert "A draft nobody should see" not in html


# The search reads the index from a worker thread: committed rows only.
@pytest.mark.django_db(transaction=True)
def test_search_uses_the_assistants_retrieval_and_links_to_the_passage(client, knowledge_base):
    response = client.get("/help/", {"q": "how long is the pairing supposed to take"})

    html = response.content.decode()
    assert response.status_code == 200
    first = re.search(r'<ol class="help-results">\s*<li><a href="([^"]+)"', html)
    assert first is not None
    assert first.group(1) == "/help/connecting-the-hub-to-wifi/#step-4"
    assert 'data-role="no-answer"' not in html


# The search reads the index from a worker thread: committed rows only.
@pytest.mark.django_db(transaction=True)
def test_search_says_honestly_when_no_article_answers(client, knowledge_base):
    html = client.get("/help/", {"q": "Do you sponsor any local football clubs?"}).content.decode()

    assert 'data-role="no-answer"' in html
    assert "We could not find an article that answers this" in html


# The search reads the index from a worker thread: committed rows only.
@pytest.mark.django_db(transaction=True)
def test_search_of_unpublished_articles_finds_nothing_of_them(client, knowledge_base, settings):
    settings.KNOWLEDGE_REFRESH_SECONDS = 0  # the index re-checks the database at once
    article = Article.objects.get(slug="two-factor-authentication")
    article_publish_set(article_ids=[article.pk], published=False)

    html = client.get("/help/", {"q": "turn on two-factor authentication"}).content.decode()

    assert "/help/two-factor-authentication/" not in html


def test_hostile_input_gets_a_4xx_not_a_500(client, away):
    too_long = client.get("/help/", {"q": "x" * 5000})
    posted = client.post("/help/", {"q": "hub"})
    odd_slug = client.get("/help/%00%3Cscript%3E/")
    nul_query = client.get("/help/", {"q": "\x00<script>alert(1)</script>"})

    assert too_long.status_code == 400
    assert "too long" in too_long.content.decode()
    assert posted.status_code == 405
    assert odd_slug.status_code == 404
    assert nul_query.status_code in {200, 400}
    assert "<script>alert(1)</script>" not in nul_query.content.decode()
