"""Learning from humans: expert article drafts and takeover preference pairs."""

from __future__ import annotations

import pytest

from chat.models import Article
from chat.services import message_append
from escalation import services
from escalation.models import KnowledgeDraft
from escalation.selectors import takeover_pairs

pytestmark = pytest.mark.django_db


@pytest.fixture
def resolved(conversation, pipeline, agent, on_duty):
    pipeline.bot.answer = "Please restart your router."
    turn = pipeline.ask(
        conversation, "My router keeps dropping Wi-Fi every evening, I'm furious, this is awful"
    )
    assert turn.status == "escalated"
    from escalation.models import Ticket

    ticket = Ticket.objects.get(trigger_message=turn.customer_message)
    services.ticket_claim(ticket=ticket, agent=agent)
    services.agent_message_send(
        conversation=conversation,
        agent=agent,
        text="Switch the router to channel 6; evening congestion on channel 11 drops it.",
    )
    services.agent_message_send(conversation=conversation, agent=agent, text="Anything else?")
    return services.ticket_resolve(ticket=ticket, agent=agent, outcome="approved")


def test_takeover_pairs(resolved, conversation):
    pairs = list(takeover_pairs())
    assert pairs == [
        {
            "prompt": "My router keeps dropping Wi-Fi every evening, I'm furious, this is awful",
            "chosen": "Switch the router to channel 6; evening congestion on channel 11 drops it.",
            "rejected": "Please restart your router.",
            "conversation_id": str(conversation.pk),
        }
    ]


def test_takeover_pairs_skip_conversations_without_an_agent_reply(conversation, say):
    question = say("hello")
    message_append(
        conversation=conversation,
        role="assistant",
        text="draft",
        visibility="withheld",
        reply_to=question,
    )
    assert list(takeover_pairs()) == []


def test_takeover_pairs_query_count(resolved, django_assert_num_queries):
    with django_assert_num_queries(2):
        assert len(list(takeover_pairs())) == 1


def test_article_draft_is_published_only_after_a_reviewer_approves(resolved, agent, reviewer):
    draft = services.knowledge_draft_create(ticket=resolved, author=agent)
    article = draft.article
    assert not article.is_published and article.source == Article.Source.EXPERT
    assert "channel 6" in article.body and "restart" not in article.body
    with pytest.raises(services.EscalationError):
        services.knowledge_draft_review(draft=draft, reviewer=agent, approve=True)  # not a reviewer
    services.knowledge_draft_review(draft=draft, reviewer=reviewer, approve=True)
    article.refresh_from_db()
    draft.refresh_from_db()
    assert article.is_published and draft.status == KnowledgeDraft.Status.APPROVED
    with pytest.raises(services.EscalationError):
        services.knowledge_draft_review(draft=draft, reviewer=reviewer, approve=False)


def test_rejected_draft_stays_unpublished(resolved, agent, reviewer):
    draft = services.knowledge_draft_create(ticket=resolved, author=agent)
    services.knowledge_draft_review(draft=draft, reviewer=reviewer, approve=False)
    draft.article.refresh_from_db()
    assert not draft.article.is_published


def test_unresolved_ticket_cannot_become_an_article(escalated, agent):
    with pytest.raises(services.EscalationError):
        services.knowledge_draft_create(ticket=escalated, author=agent)
