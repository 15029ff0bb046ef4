"""Knowledge base: background embeddings, retrieval cache, reindexing, the Article admin."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.management import call_command
from django.urls import reverse

from chat.assistant.embeddings import MODEL_NAME
from chat.assistant.knowledge import knowledge_index, knowledge_search
from chat.assistant.providers import embedder_current
from chat.models import Article
from chat.services import article_embed, article_publish_set, article_save, article_upsert
from chat.tasks import article_embed_task

WIFI_BODY = "The Hub only connects to 2.4 GHz Wi-Fi networks. Choose the 2.4 GHz band."
BILL_BODY = "Your bill shows the standing charge and the unit rate for each day."


@pytest.fixture
def wifi_article(db, django_capture_on_commit_callbacks) -> Article:
    with django_capture_on_commit_callbacks(execute=True):
        article, _ = article_upsert(slug="hub-wifi", title="Hub and Wi-Fi", body=WIFI_BODY)
    article.refresh_from_db()
    return article


def _search(text: str) -> list[str]:
    """The articles of the passages retrieved for ``text``, best first."""
    encoding = embedder_current().encode_documents([text])[0]
    ranking = knowledge_search(
        index=knowledge_index(embedding_model=MODEL_NAME), query=encoding, query_text=text, top_k=3
    )
    return [p.slug for p in ranking.passages]


def test_saving_an_article_embeds_it_in_the_background(wifi_article):
    assert wifi_article.embedding_model == MODEL_NAME
    assert wifi_article.embedded_at is not None
    vector = np.asarray(wifi_article.embedding)
    assert vector.shape == (384,)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-3)


def test_article_is_queued_only_after_commit(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        article, _ = article_upsert(slug="hub-wifi", title="Hub and Wi-Fi", body=WIFI_BODY)

    article.refresh_from_db()
    assert len(callbacks) == 1
    assert article.embedding is None  # nothing ran before the commit


def test_embedding_task_is_idempotent(wifi_article):
    embedded_at = wifi_article.embedded_at

    ran_again = article_embed_task(wifi_article.pk)

    wifi_article.refresh_from_db()
    assert ran_again is False
    assert wifi_article.embedded_at == embedded_at
    assert article_embed_task(wifi_article.pk, force=True) is True
    assert article_embed_task(123456) is False  # deleted articles are skipped


def test_editing_the_text_re_embeds_it(wifi_article, django_capture_on_commit_callbacks):
    before = wifi_article.embedding
    wifi_article.body = BILL_BODY

    with django_capture_on_commit_callbacks(execute=True):
        article_save(article=wifi_article)

    wifi_article.refresh_from_db()
    assert wifi_article.embedding != before
    assert wifi_article.embedded_at >= wifi_article.updated_at


def test_unembedded_articles_do_not_break_retrieval(wifi_article):
    article_upsert(slug="draft", title="Draft", body="Not embedded yet")  # not committed

    found = _search("Does the hub work with 5 GHz wifi?")

    assert found == ["hub-wifi"]


def test_retrieval_cache_notices_unpublishing(wifi_article):
    assert _search("hub wifi band") == ["hub-wifi"]
    first = knowledge_index(embedding_model=MODEL_NAME)

    article_publish_set(article_ids=[wifi_article.pk], published=False)

    assert _search("hub wifi band") == []
    assert knowledge_index(embedding_model=MODEL_NAME) is not first


def test_retrieval_cache_is_reused_while_nothing_changes(wifi_article, django_assert_num_queries):
    knowledge_index(embedding_model=MODEL_NAME)

    with django_assert_num_queries(1):  # only the signature check
        knowledge_index(embedding_model=MODEL_NAME)


def test_reindex_command_embeds_missing_articles(db, capsys):
    article_upsert(slug="manual", title="Manual", body=BILL_BODY)  # its task never ran

    call_command("reindex_articles")
    call_command("reindex_articles")

    article = Article.objects.get(slug="manual")
    assert article.embedding_model == MODEL_NAME
    out = capsys.readouterr().out
    assert "Embedded 1 of 1" in out
    assert "Embedded 0 of 1" in out
    assert article_embed(article_id=article.pk) is False


# --- admin ------------------------------------------------------------------------------


def test_admin_changelist_search_and_filters_load(client, admin_member, wifi_article):
    client.force_login(admin_member)
    url = reverse("admin:chat_article_changelist")

    listing = client.get(url)
    searched = client.get(url, {"q": "Wi-Fi"})
    pending = client.get(url, {"embedding": "pending"})
    current = client.get(url, {"embedding": "current", "is_published__exact": "1"})

    assert listing.status_code == 200
    assert "up to date" in listing.content.decode()
    assert "Hub and Wi-Fi" in searched.content.decode()
    assert "Hub and Wi-Fi" not in pending.content.decode()
    assert "Hub and Wi-Fi" in current.content.decode()


def test_admin_add_article_embeds_it(client, admin_member, django_capture_on_commit_callbacks):
    client.force_login(admin_member)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:chat_article_add"),
            {
                "title": "Away mode",
                "slug": "away-mode",
                "category": "Hub",
                "body": "Away mode keeps your home at 12 degrees while you travel.",
                "is_published": "on",
                "source": "manual",
            },
        )

    assert response.status_code == 302
    article = Article.objects.get(slug="away-mode")
    assert article.embedding_model == MODEL_NAME
    assert list(article.passages.values_list("anchor", "text")) == [
        ("p1", "Away mode keeps your home at 12 degrees while you travel.")
    ]
    edit = client.get(reverse("admin:chat_article_change", args=[article.pk]))
    assert edit.status_code == 200
    assert "up to date" in edit.content.decode()
    assert "Passages (what the assistant retrieves and cites)" in edit.content.decode()


def test_admin_unpublish_action(client, admin_member, wifi_article):
    client.force_login(admin_member)

    client.post(
        reverse("admin:chat_article_changelist"),
        {"action": "unpublish", "_selected_action": [wifi_article.pk]},
    )

    wifi_article.refresh_from_db()
    assert wifi_article.is_published is False


def test_agents_may_edit_articles_and_customers_may_not(client, agent, customer, wifi_article):
    url = reverse("admin:chat_article_change", args=[wifi_article.pk])

    client.force_login(agent)
    agent_page = client.get(url)
    client.force_login(customer)
    customer_page = client.get(url)

    assert agent_page.status_code == 200
    assert 'name="body"' in agent_page.content.decode()
    assert customer_page.status_code == 302  # not staff: sent to the admin login


def test_admin_changelist_queries_do_not_grow_with_articles(
    client, admin_member, wifi_article, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(admin_member)
    url = reverse("admin:chat_article_changelist")
    with CaptureQueriesContext(connection) as one:
        client.get(url)
    for n in range(5):
        article_upsert(slug=f"extra-{n}", title=f"Extra {n}", body=BILL_BODY)

    with django_assert_max_num_queries(len(one.captured_queries)):
        response = client.get(url)

    assert response.content.decode().count("Extra ") >= 5


def test_editing_an_article_in_the_admin_splits_it_again(
    client, admin_member, wifi_article, django_capture_on_commit_callbacks
):
    import re

    client.force_login(admin_member)
    url = reverse("admin:chat_article_change", args=[wifi_article.pk])
    page = client.get(url).content.decode()
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    form.update(
        title="Hub and Wi-Fi",
        slug="hub-wifi",
        category="",
        body=f"{WIFI_BODY} 1. Hold the button. 2. Choose the 2.4 GHz network.",
        is_published="on",
        source="manual",
    )

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, form)

    assert response.status_code == 302
    assert list(wifi_article.passages.values_list("anchor", flat=True)) == [
        "p1",
        "step-1",
        "step-2",
    ]


def test_a_server_quotes_stored_passages_without_encoding_them(wifi_article, monkeypatch):
    """The answer model's sentence vectors are computed when the article is embedded and
    stored with its passages: a fresh process loading the index encodes no passage, so
    neither its start nor a customer's first answer pays for it."""
    from chat.assistant import knowledge, local_model

    passage = wifi_article.passages.get()
    assert len(passage.sentence_vectors) == 2 * 384 * len(local_model.sentences(passage.text))
    expected = embedder_current().sentence_vectors([passage.text])[0]

    monkeypatch.setattr(local_model, "_SENTENCES", {})  # a fresh process
    monkeypatch.setattr(local_model, "embed_texts", _refuse_encoding)
    monkeypatch.setattr(knowledge, "_indexes", {})
    knowledge_index(embedding_model=MODEL_NAME)

    parts, matrix = local_model._sentence_vectors(passage.text)
    assert parts == tuple(local_model.sentences(passage.text))
    assert np.allclose(matrix, expected, atol=2e-3)


def _refuse_encoding(texts):
    raise AssertionError(f"encoded {texts!r} in a turn")
