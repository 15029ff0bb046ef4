"""The escalation API: tickets (list, filter, claim, resolve), events, webhooks, schema."""

from __future__ import annotations

import pytest
from django.urls import reverse

from escalation.models import DomainEvent, Webhook

pytestmark = pytest.mark.django_db


def test_only_agents_see_tickets(api_client, customer, escalated):
    api_client.force_authenticate(customer)
    assert api_client.get("/api/escalation/tickets/").status_code == 403


def test_list_and_filter_tickets(api_client, agent, escalated):
    api_client.force_authenticate(agent)
    # the queue gave it to the only agent on duty
    data = api_client.get("/api/escalation/tickets/", {"status": "assigned"}).json()
    assert [t["id"] for t in data["results"]] == [escalated.pk]
    assert data["results"][0]["reason"] == "human_request"
    assert data["results"][0]["assigned_agent"] == "Alex Agent"
    assert api_client.get("/api/escalation/tickets/", {"status": "open"}).json()["results"] == []
    assert (
        api_client.get("/api/escalation/tickets/", {"status": "resolved"}).json()["results"] == []
    )


def test_claim_race_over_the_api_gives_a_conflict(api_client, agent, second_agent, escalated):
    api_client.force_authenticate(agent)
    url = f"/api/escalation/tickets/{escalated.pk}/claim/"
    first = api_client.post(url)
    assert first.status_code == 200 and first.json()["status"] == "assigned"
    api_client.force_authenticate(second_agent)
    second = api_client.post(url)
    assert second.status_code == 409
    assert second.json()["message"] == "Alex Agent already took over this conversation."


def test_resolve_validates_the_outcome(api_client, agent, escalated):
    api_client.force_authenticate(agent)
    url = f"/api/escalation/tickets/{escalated.pk}/resolve/"
    assert api_client.post(url, {"outcome": "maybe"}, format="json").status_code == 400
    done = api_client.post(url, {"outcome": "rejected", "note": "wrong plan"}, format="json")
    assert done.status_code == 200
    assert (done.json()["status"], done.json()["outcome"]) == ("resolved", "rejected")
    mine = api_client.get("/api/escalation/tickets/", {"mine": "true"}).json()["results"]
    assert [t["id"] for t in mine] == [escalated.pk]


def test_take_over_and_hand_back_over_the_api(api_client, agent, escalated, conversation):
    api_client.force_authenticate(agent)
    taken = api_client.post(
        reverse("api:escalation-take-over", kwargs={"conversation_id": conversation.pk})
    )
    assert taken.status_code == 200
    back = api_client.post(f"/api/escalation/tickets/{escalated.pk}/hand-back/")
    assert back.status_code == 200
    conversation.refresh_from_db()
    assert conversation.handling == "assistant"


def test_events_list_and_filter(api_client, agent, escalated):
    api_client.force_authenticate(agent)
    names = [e["name"] for e in api_client.get("/api/escalation/events/").json()["results"]]
    assert "ESCALATION_CREATED" in names
    filtered = api_client.get("/api/escalation/events/", {"name": "TAKEOVER_STARTED"}).json()
    assert filtered["results"] == []


def test_webhooks_are_managed_and_secrets_never_returned(api_client, admin_member, reviewer):
    api_client.force_authenticate(reviewer)
    assert api_client.get("/api/escalation/webhooks/").status_code == 403
    api_client.force_authenticate(admin_member)
    created = api_client.post(
        "/api/escalation/webhooks/",
        {
            "name": "ops",
            "url": "https://hooks.example.com/x",
            "secret": "s",
            "events": ["ESCALATION_CREATED"],
        },
        format="json",
    )
    assert created.status_code == 201 and "secret" not in created.json()
    bad = api_client.post(
        "/api/escalation/webhooks/",
        {"name": "bad", "url": "https://x.example.com", "secret": "s", "events": ["NOPE"]},
        format="json",
    )
    assert bad.status_code == 400
    assert Webhook.objects.count() == 1
    deliveries = api_client.get(f"/api/escalation/webhooks/{created.json()['id']}/deliveries/")
    assert deliveries.status_code == 200 and deliveries.json() == []


def test_presence_toggle(api_client, agent):
    api_client.force_authenticate(agent)
    answer = api_client.post("/api/escalation/presence/", {"on_duty": True}, format="json").json()
    assert answer["on_duty"] is True


def test_openapi_schema_lists_the_escalation_endpoints(api_client, admin_member):
    api_client.force_authenticate(admin_member)
    schema = api_client.get("/api/schema/", {"format": "json"}).json()
    paths = schema["paths"]
    for path in (
        "/api/escalation/tickets/",
        "/api/escalation/tickets/{id}/claim/",
        "/api/escalation/tickets/{id}/resolve/",
        "/api/escalation/events/",
        "/api/escalation/webhooks/",
        "/api/escalation/callbacks/step-functions/",
    ):
        assert path in paths, path
    assert DomainEvent


def test_console_pages_are_for_agents_only(client, customer, agent, escalated, conversation):
    client.force_login(customer)
    assert client.get("/agent/").status_code == 403
    client.force_login(agent)
    page = client.get("/agent/")
    assert page.status_code == 200 and b"/static/escalation/inbox.js" in page.content
    detail = client.get(f"/agent/conversations/{conversation.pk}/")
    assert detail.status_code == 200
    assert "The customer pressed \u201cTalk to a person\u201d." in detail.content.decode()
    assert b"Greeting" in detail.content  # canned reply


def test_anonymous_is_sent_to_login(client):
    response = client.get("/agent/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_ticket_detail_shows_the_withheld_draft(api_client, agent, escalated, conversation):
    from chat.services import message_append

    message_append(
        conversation=conversation,
        role="assistant",
        text="the bot's draft",
        visibility="withheld",
        reply_to=escalated.trigger_message,
    )
    api_client.force_authenticate(agent)
    detail = api_client.get(f"/api/escalation/tickets/{escalated.pk}/").json()
    assert detail["withheld_draft"] == "the bot's draft"
    listed = api_client.get("/api/escalation/tickets/").json()["results"][0]
    assert "withheld_draft" not in listed


def test_ticket_list_query_count(api_client, agent, escalated, django_assert_max_num_queries):
    api_client.force_authenticate(agent)
    with django_assert_max_num_queries(6):
        assert api_client.get("/api/escalation/tickets/").status_code == 200


@pytest.mark.parametrize("move", ["resolve", "close"])
def test_another_agent_cannot_resolve_or_close_a_ticket_someone_handles(
    api_client, agent, second_agent, escalated, conversation, move
):
    """Issue 11 item 2: the conversation went back to the assistant mid-chat."""
    from escalation import services

    services.ticket_claim(ticket=escalated, agent=agent)
    api_client.force_authenticate(second_agent)

    response = api_client.post(
        f"/api/escalation/tickets/{escalated.pk}/{move}/",
        {"outcome": "approved" if move == "resolve" else "abandoned"},
        format="json",
    )

    assert response.status_code == 403
    assert response.json()["code"] == "not_owner"
    escalated.refresh_from_db()
    conversation.refresh_from_db()
    assert escalated.status == "assigned"
    assert (conversation.handling, conversation.assigned_agent) == ("human", agent)


def test_a_supervisor_may_resolve_and_the_events_name_who_acted(
    api_client, agent, admin_member, escalated, conversation, django_capture_on_commit_callbacks
):
    from escalation import services

    services.ticket_claim(ticket=escalated, agent=agent)
    api_client.force_authenticate(admin_member)

    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post(
            f"/api/escalation/tickets/{escalated.pk}/resolve/",
            {"outcome": "approved", "note": "done by the supervisor"},
            format="json",
        )

    assert response.status_code == 200
    event = DomainEvent.objects.get(name="ESCALATION_RESOLVED")
    assert (event.payload["agent"], event.payload["acted_by"]) == ("alex", "ada")
    conversation.refresh_from_db()
    assert conversation.handling == "assistant"
    assert (
        conversation.messages.order_by("-seq")
        .first()
        .text.startswith(admin_member.get_full_name() or "ada")
    )


def test_the_agent_console_abandon_action_refuses_other_agents_tickets(
    client, agent, second_agent, escalated
):
    from escalation import services

    services.ticket_claim(ticket=escalated, agent=agent)
    client.force_login(second_agent)

    client.post(
        reverse("admin:escalation_ticket_changelist"),
        {"action": "abandon", "_selected_action": [escalated.pk]},
    )

    escalated.refresh_from_db()
    assert escalated.status == "assigned"
