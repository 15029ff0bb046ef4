"""The issue's done-when in a real browser: an angry customer message puts a ticket in an
agent's open inbox without reload; the agent takes over, the assistant stays silent, the
two talk live (typing both ways), the agent resolves, and the configured Step Functions
task gets SendTaskSuccess exactly once with the outcome."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from botocore.stub import ANY, Stubber
from django.test import Client

from chat.models import Conversation, Message
from escalation import services, stepfunctions
from escalation.models import Ticket, WorkflowCallback

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:loopdesk-human-review"
TOKEN = "browser-test-task-token"


@pytest.fixture
def step_functions(settings):
    """Configured before Daphne forks, so the server process inherits the stubbed client."""
    settings.STEP_FUNCTIONS_STATE_MACHINE_ARN = ARN
    settings.STEP_FUNCTIONS_CALLBACK_SECRET = "browser-secret"
    # The first turn loads the embedding model on 2 shared cores: no provider "failure".
    settings.ASSISTANT_TIMEOUT_SECONDS = 120
    stepfunctions.client.cache_clear()
    stub = Stubber(stepfunctions.client())
    stub.add_response(
        "start_execution",
        {"executionArn": ARN.replace("stateMachine", "execution") + ":1", "startDate": 0},
        {"stateMachineArn": ARN, "name": ANY, "input": ANY},
    )
    stub.add_response("send_task_success", {}, {"taskToken": TOKEN, "output": ANY})
    stub.activate()
    yield stub
    stub.deactivate()
    stepfunctions.client.cache_clear()


def logged_in_context(browser, base_url: str, user):
    client = Client()
    client.force_login(user)
    context = browser.new_context()
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base_url}]
    )
    return context


def test_angry_customer_to_agent_takeover_live_talk_and_resolve(
    step_functions, agent, asgi_live_server, browser
):
    services.agent_presence_set(agent=agent, on_duty=True)
    agent_page = logged_in_context(browser, asgi_live_server, agent).new_page()
    agent_page.goto(asgi_live_server + "/agent/")
    agent_page.locator('[data-role="connection"][data-state="live"]').wait_for(timeout=20_000)

    customer_page = browser.new_context().new_page()
    customer_frames: list[dict] = []
    customer_page.on(
        "websocket",
        lambda ws: ws.on("framereceived", lambda p: customer_frames.append(json.loads(p))),
    )
    customer_page.goto(asgi_live_server + "/")
    composer = customer_page.locator("form.composer textarea")
    composer.fill("This is absolutely terrible! I am furious, your service is useless and awful!")
    composer.press("Enter")

    # the ticket arrives in the open inbox, no reload
    row = agent_page.locator("tr.ticket").first
    row.wait_for(timeout=120_000)
    # in plain words (the figures are the row's title, shown on hover)
    assert "Anger or insult" in row.locator(".reason").inner_text()
    assert "Anger: the customer wrote \u201cThis is absolutely terrible!" in (
        row.locator(".reason").inner_text()
    )
    assert row.locator(".reason").get_attribute("title").startswith("Router router-1: anger ")
    # the queue gave it to the only agent on duty
    assert "Assigned to you" in row.locator(".status").inner_text()
    assert row.locator(".waiting").inner_text().endswith("s")
    customer_page.get_by_text("bringing in a person").wait_for(timeout=30_000)
    agent_page.screenshot(path=str(Path(__file__).resolve().parents[2] / "var" / "agent-inbox.png"))

    conversation = Conversation.objects.get()
    ticket = Ticket.objects.get(conversation=conversation)
    # the Lambda of the .waitForTaskToken state posts its token
    services.workflow_callback_register(ticket_id=ticket.pk, task_token=TOKEN)

    row.get_by_role("link", name="Open").click()
    agent_page.locator('.conversation[data-live="1"]').wait_for(timeout=20_000)
    agent_page.get_by_role("button", name="Take over").click()
    agent_page.locator('[data-role="handling"][data-handling="human"]').wait_for(timeout=20_000)
    customer_page.get_by_text("Alex Agent from our support team joined").wait_for(timeout=20_000)

    # typing, agent -> customer
    agent_text = agent_page.locator('[data-role="text"]')
    agent_text.press_sequentially("Hi")
    customer_page.get_by_text("Alex Agent is typing").wait_for(timeout=20_000)
    agent_text.fill("Hi, I'm Alex from support. I'm sorry, let me fix this now.")
    agent_page.get_by_role("button", name="Send to customer").click()
    reply = customer_page.locator("li.msg.agent").first
    reply.wait_for(timeout=20_000)
    assert "let me fix this now" in reply.inner_text()
    assert "Alex Agent" in reply.locator(".who").inner_text()

    # typing, customer -> agent; then the customer answers
    composer.press_sequentially("Thank")
    agent_page.get_by_text("Customer is typing").wait_for(timeout=20_000)
    composer.fill("Thank you, it's the router in the kitchen.")
    composer.press("Enter")
    agent_page.get_by_text("it's the router in the kitchen").wait_for(timeout=20_000)
    customer_page.wait_for_timeout(1500)  # time for any (wrong) assistant answer to show

    # the assistant stayed silent after the takeover
    took_over = conversation.messages.get(marker="human_start").seq
    assert not conversation.messages.filter(
        role=Message.Role.ASSISTANT, visibility=Message.Visibility.PUBLIC, seq__gt=took_over
    ).exists()
    assert customer_page.locator("li.msg.assistant").count() == 0
    assert not [f for f in customer_frames if f["type"] == "assistant.delta"]

    # resolve with an outcome, saying a person was needed (a training row for the router)
    agent_page.locator('[data-role="resolve"] select[name="outcome"]').select_option("approved")
    agent_page.locator('[data-role="resolve"] select[name="person_needed"]').select_option("yes")
    agent_page.locator('[data-role="resolve"] input[name="note"]').fill("Router replaced")
    agent_page.get_by_role("button", name="Resolve").click()
    agent_page.locator('[data-role="ticket-status"]', has_text="resolved").wait_for(timeout=20_000)
    customer_page.get_by_text("handed the conversation back").wait_for(timeout=20_000)

    ticket.refresh_from_db()
    assert (ticket.status, ticket.outcome, ticket.person_needed) == ("resolved", "approved", True)
    from chat.models import IntentExample

    example = IntentExample.objects.get()
    assert (example.label, example.source) == ("anger", "agent_resolve")
    assert example.text.startswith("This is absolutely terrible!")
    assert ticket.first_response_at is not None
    assert ticket.workflow_execution_arn.endswith(":1")
    callback = WorkflowCallback.objects.get()
    # answered by the server process through the stubbed client: once, first try
    assert (callback.state, callback.attempts) == ("answered", 1)
    assert callback.output["outcome"] == "approved"
    agent_page.screenshot(
        path=str(Path(__file__).resolve().parents[2] / "var" / "agent-console.png")
    )


def test_a_customer_page_with_a_person_on_it_fetches_a_message_whose_event_was_lost(
    scripted, agent, asgi_live_server, browser, monkeypatch
):
    """Live events are notifications (the Pub/Sub layer keeps nothing for a server that
    was briefly cut off from Redis): while a person is on the conversation the page asks
    for what it missed every 30 s and whenever the tab comes back into view."""
    from chat.services import conversations as conversation_services

    page = browser.new_page()
    page.goto(asgi_live_server + "/")
    composer = page.locator("form.composer textarea")
    composer.fill("My hub shows E21")
    composer.press("Enter")
    page.locator("li.msg.assistant:not(.streaming)").first.wait_for(timeout=30_000)
    page.get_by_role("button", name="Talk to a person").click()
    page.locator("[data-role=status]", has_text="Waiting").wait_for(timeout=30_000)
    conversation = Conversation.objects.get()
    # The takeover and the agent's reply are stored, but no event reaches the page.
    monkeypatch.setattr(conversation_services, "publish_on_commit", lambda group, event: None)
    services.conversation_take_over(conversation=conversation, agent=agent)
    services.agent_message_send(
        conversation=conversation, agent=agent, text="Hi, Alex here. How can I help?"
    )
    reply = page.locator("li.msg", has_text="Alex here")
    page.wait_for_timeout(1_000)
    assert reply.count() == 0  # nothing arrived live

    page.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")  # back in view
    reply.wait_for(timeout=10_000)
    assert reply.count() == 1
    page.close()
