"""The agent console in plain words: the handoff brief (constant queries), the decision
audit grouped by turn, inbox rows, the pages, capacity and reassignment over the API."""

from __future__ import annotations

import pytest
from django.test import Client

from chat.models import Message
from chat.services import conversation_start, human_request
from config import roles
from escalation import selectors, services
from escalation.models import AgentPresence, Ticket
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db


def ask_then_escalate(pipeline, conversation, customer):
    """An answered question with a citation, then an escalated message (the draft is
    withheld), through the real turn pipeline."""
    answered = pipeline.ask(conversation, "How do I reset my password?", author=customer)
    escalated = pipeline.ask(
        conversation, "That did not work. I want to talk to a human please", author=customer
    )
    assert (answered.status, escalated.status) == ("answered", "escalated")
    return Ticket.objects.get(conversation=conversation)


def earlier_conversation(customer, title: str, *, resolve_with: str = "") -> None:
    conversation = conversation_start(
        customer=customer,
        visitor_id="",
        rate_subject="test:" + title.replace(" ", "-"),
        title=title,
    )
    from chat.services import message_append

    message_append(
        conversation=conversation,
        role=Message.Role.CUSTOMER,
        text=f"About {title}",
        author=customer,
    )
    if resolve_with:
        human_request(conversation=conversation, requested_by=customer)
        ticket = Ticket.objects.get(conversation=conversation)
        services.ticket_resolve(ticket=ticket, agent=resolve_with, outcome="approved", note=title)


def test_handoff_brief_says_everything_the_customer_said_before(
    pipeline, customer, agent, django_assert_num_queries
):
    earlier_conversation(customer, "Router keeps dropping", resolve_with=agent)
    conversation = ConversationFactory(customer=customer, visitor_id="")
    ticket = ask_then_escalate(pipeline, conversation, customer)

    with django_assert_num_queries(4):
        brief = selectors.handoff_brief(conversation_id=conversation.pk)

    assert brief["ticket_id"] == ticket.pk
    assert [m["text"] for m in brief["asked"]] == [
        "How do I reset my password?",
        "That did not work. I want to talk to a human please",
    ]
    assert brief["answer"]["text"] == pipeline.bot.answer and not brief["answer"]["withheld"]
    assert [s["title"] for s in brief["answer"]["sources"]] == ["Reset your password"]
    assert brief["draft"]["withheld"] and brief["draft"]["text"] == pipeline.bot.answer
    assert brief["why"]["label"] == "Asked for a person"
    assert brief["why"]["words"] == (
        "The customer asks for a person: "
        "\u201cThat did not work. I want to talk to a human please\u201d."
    )
    assert brief["why"]["numbers"].startswith("Router router-1: asks for a person 0.9")
    (earlier,) = brief["earlier"]
    assert earlier["title"] == "Router keeps dropping"
    assert earlier["first_question"] == "About Router keeps dropping"
    assert (earlier["outcome"], earlier["note"]) == ("Approved", "Router keeps dropping")
    assert brief["customer"]["signed_in"] and brief["customer"]["email"] == customer.email


def test_handoff_brief_queries_do_not_grow_with_the_history(
    pipeline, customer, agent, django_assert_num_queries
):
    for i in range(6):
        earlier_conversation(customer, f"Earlier {i}", resolve_with=agent if i % 2 else "")
    conversation = ConversationFactory(customer=customer, visitor_id="")
    ask_then_escalate(pipeline, conversation, customer)
    with django_assert_num_queries(4):
        brief = selectors.handoff_brief(conversation_id=conversation.pk)
    assert len(brief["earlier"]) == selectors.BRIEF_EARLIER
    assert brief["earlier"][0]["title"] == "Earlier 5"  # newest first


def test_handoff_brief_finds_a_visitors_earlier_conversations_on_the_device(pipeline):
    earlier = ConversationFactory(visitor_id="device-1", title="Yesterday")
    from chat.services import message_append

    message_append(conversation=earlier, role=Message.Role.CUSTOMER, text="Is it down?")
    ConversationFactory(visitor_id="someone-else", title="Not theirs")
    conversation = ConversationFactory(visitor_id="device-1")
    ask_then_escalate(pipeline, conversation, None)
    brief = selectors.handoff_brief(conversation_id=conversation.pk)
    assert [c["title"] for c in brief["earlier"]] == ["Yesterday"]
    assert brief["customer"] == {
        "name": "Visitor (not signed in)",
        "email": "",
        "signed_in": False,
    }


def test_decision_audit_is_grouped_by_turn_in_plain_words(pipeline, customer):
    conversation = ConversationFactory(customer=customer)
    ask_then_escalate(pipeline, conversation, customer)
    audit = selectors.decision_audit(conversation=conversation)

    latest, first = audit  # newest turn first
    assert latest["message"] == "That did not work. I want to talk to a human please"
    assert first["message"] == "How do I reset my password?"
    assert latest["escalated"] and not first["escalated"]
    checks = {c["check"]: c for c in first["checks"]}
    assert set(checks) == {"What the message is about", "Watched words", "Unanswered questions"}
    routing = checks["What the message is about"]
    assert routing["words"] == "Routed to: answer from the knowledge base."
    assert routing["outcome_words"] == "No person needed"
    assert routing["numbers"].startswith("Router router-1: answer 0.9")
    # no developer terms in the words themselves
    for group in audit:
        for check in group["checks"]:
            assert "_" not in check["words"] and "VADER" not in check["words"]
    fired = [c for c in latest["checks"] if c["fired"]]
    assert [c["check"] for c in fired] == ["What the message is about"]
    assert fired[0]["words"].startswith("The customer asks for a person: ")


def test_inbox_row_speaks_plain_words(pipeline, customer, on_duty):
    conversation = ConversationFactory(customer=customer)
    pipeline.bot.sentiment = None
    pipeline.ask(conversation, "This is absolutely terrible, I am furious and disgusted!")
    (row,) = [selectors.ticket_summary(t) for t in selectors.tickets_for_inbox()]
    assert row["reason_label"] == "Anger or insult"
    assert row["reason_words"] == (
        "Anger: the customer wrote "
        "\u201cThis is absolutely terrible, I am furious and disgusted!\u201d."
    )
    assert row["reason_numbers"].startswith("Router router-1: anger 1.00")
    assert "_" not in row["reason_words"]
    assert (row["status"], row["assigned_agent_id"], row["taken"]) == (
        "assigned",
        on_duty.pk,
        False,
    )


def test_conversation_page_pins_the_brief_and_the_audit(pipeline, customer, agent):
    conversation = ConversationFactory(customer=customer)
    ask_then_escalate(pipeline, conversation, customer)
    client = Client()
    client.force_login(agent)
    page = client.get(f"/agent/conversations/{conversation.pk}/").content.decode()
    assert "Handoff brief" in page
    assert "The customer asks for a person: \u201cThat did not work." in page
    assert "Reset your password" in page  # what the assistant cited
    assert "Its draft, kept from the customer" in page
    assert 'class="audit-turn escalated"' in page
    assert "negative_sentiment" not in page and "human_request" not in page.split("<script")[0]


def test_capacity_over_the_api(api_client, agent):
    api_client.force_authenticate(agent)
    for bad in ({"capacity": 0}, {"capacity": 99}, {"capacity": "many"}, {}, []):
        response = api_client.post("/api/escalation/presence/", bad, format="json")
        assert response.status_code == 400, bad
    response = api_client.post(
        "/api/escalation/presence/", {"capacity": 4, "on_duty": True}, format="json"
    )
    assert response.json() == {"on_duty": True, "capacity": 4, "load": 0, "supervisor": False}
    assert AgentPresence.objects.get(agent=agent).capacity == 4
    assert api_client.get("/api/escalation/presence/").json()["capacity"] == 4


def test_reassign_over_the_api_is_for_supervisors(
    api_client, escalated, agent, second_agent, admin_member, customer
):
    url = f"/api/escalation/tickets/{escalated.pk}/assign/"
    api_client.force_authenticate(agent)
    response = api_client.post(url, {"agent": second_agent.pk}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "not_supervisor"

    api_client.force_authenticate(admin_member)
    for bad in ({"agent": "sam"}, {"agent": customer.pk}, {"agent": 10**20}, {}):
        assert api_client.post(url, bad, format="json").status_code == 400, bad
    response = api_client.post(url, {"agent": second_agent.pk}, format="json")
    assert response.status_code == 200
    assert response.json()["assigned_agent"] == "Sam Support"
    escalated.refresh_from_db()
    assert escalated.assigned_agent == second_agent


def test_supervisor_sees_the_reassign_form(pipeline, customer, make_user, agent):
    conversation = ConversationFactory(customer=customer)
    ask_then_escalate(pipeline, conversation, customer)
    client = Client()
    client.force_login(agent)
    assert (
        'data-role="reassign"'
        not in client.get(f"/agent/conversations/{conversation.pk}/").content.decode()
    )
    client.force_login(make_user(roles.ADMINS, username="boss"))
    page = client.get(f"/agent/conversations/{conversation.pk}/").content.decode()
    assert 'data-role="reassign"' in page and "Alex Agent" in page
