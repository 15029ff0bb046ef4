"""The agent console in a real browser (Playwright + Debian's chromium): the handoff
brief, assignment by capacity with a silent assignee's ticket going back to the queue,
the waiting customer's place in the queue changing live, and the inbox and the
conversation at 390 px without horizontal overflow. Screenshots are kept in
var/test-artifacts/.

State the test sets up before the browser starts goes through the services in this
process; everything the pages do runs in the Daphne child. Services this process runs
while the pages are open (the silent-assignee sweep, as the scheduled task would) write
to the shared database; the pages are reloaded to read it, since their live events go
through the server's channel layer (in memory unless REDIS_URL is set).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.test import Client
from playwright.sync_api import expect

from chat.models import Message
from chat.services import conversation_start, human_request, message_append
from config import roles
from escalation import services
from escalation.models import AgentPresence, Ticket
from tests.config.browser_helpers import ARTIFACTS
from tests.factories import ConversationFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}
WAIT = 20_000

OVERFLOW = """() => {
  const width = window.innerWidth;
  const offenders = [];
  for (const el of document.querySelectorAll("body *")) {
    const style = getComputedStyle(el);
    if (style.display === "none" || style.visibility === "hidden") continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;
    if (box.right > width + 0.5) {
      offenders.push(`${el.tagName.toLowerCase()}.${el.className} right=${box.right}`);
    }
  }
  return {scrollWidth: document.documentElement.scrollWidth, width, offenders};
}"""


def assert_fits_the_phone(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    result = page.evaluate(OVERFLOW)
    assert result["scrollWidth"] <= result["width"], (name, result)
    assert result["offenders"] == [], (name, result["offenders"])


def signed_in_page(browser, base_url: str, user, viewport=DESKTOP):
    client = Client()
    client.force_login(user)
    context = browser.new_context(viewport=viewport)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base_url}]
    )
    return context.new_page()


def open_inbox(page, base_url: str) -> None:
    page.goto(base_url + "/agent/")
    page.locator('[data-role="connection"][data-state="live"]').wait_for(timeout=WAIT)


def row(page, ticket):
    return page.locator(f'tr.ticket[data-ticket="{ticket.pk}"]')


def in_a_thread(fn, **kwargs):
    """Run a service from another thread: this one runs Playwright's event loop."""
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(fn, **kwargs).result()


# --- the handoff brief --------------------------------------------------------------------


@pytest.fixture
def handed_off(pipeline, make_user, agent):
    """Casey asked before (an earlier conversation an agent resolved), asked again today,
    got a cited answer, then asked for a person: the draft was withheld."""
    casey = make_user(roles.CUSTOMERS, username="casey", first_name="Casey", last_name="Jones")
    earlier = conversation_start(
        customer=casey, visitor_id="", rate_subject="test:earlier", title="Router keeps dropping"
    )
    message_append(
        conversation=earlier, role=Message.Role.CUSTOMER, text="It drops hourly", author=casey
    )
    human_request(conversation=earlier, requested_by=casey)
    services.ticket_resolve(
        ticket=Ticket.objects.get(conversation=earlier),
        agent=agent,
        outcome="approved",
        note="Replaced the router",
    )
    conversation = ConversationFactory(customer=casey, visitor_id="", title="Password trouble")
    pipeline.ask(conversation, "How do I reset my password?", author=casey)
    pipeline.ask(conversation, "That did not work. I want to talk to a human", author=casey)
    return conversation


def test_agent_sees_the_handoff_brief_and_works_the_ticket_at_phone_width(
    handed_off, agent, asgi_live_server, browser
):
    page = signed_in_page(browser, asgi_live_server, agent)
    page.goto(f"{asgi_live_server}/agent/conversations/{handed_off.pk}/")
    page.locator('.conversation[data-live="1"]').wait_for(timeout=WAIT)

    brief = page.locator('[data-role="brief"]')
    expect(brief).to_be_visible()
    expect(brief).to_contain_text("Casey Jones")
    expect(brief.locator('[data-role="brief-why"]')).to_have_text(
        "The customer asks for a person: \u201cThat did not work. I want to talk to a human\u201d."
    )
    expect(brief).to_contain_text("How do I reset my password?")
    expect(brief).to_contain_text("Cited: Reset your password")
    expect(brief).to_contain_text("Its draft, kept from the customer")
    expect(brief).to_contain_text("Router keeps dropping")
    expect(brief).to_contain_text("Replaced the router")
    # the brief comes first: above the thread and the ticket's buttons
    brief_top = brief.bounding_box()["y"]
    assert brief_top < page.locator('[data-role="messages"]').bounding_box()["y"]
    # the audit: the customer's message, then the checks made on it, in words
    audit = page.locator('[data-role="audit"] .audit-turn').first
    expect(audit.locator(".said")).to_contain_text("I want to talk to a human")
    fired = audit.locator(".check.fired")
    expect(fired).to_contain_text("A person is needed")
    assert fired.get_attribute("title").startswith("Router router-1: asks for a person 0.9")
    page.screenshot(path=str(ARTIFACTS / "agent-conversation-1366.png"), full_page=True)

    page.set_viewport_size(PHONE)
    assert_fits_the_phone(page, "agent-conversation-390")
    page.get_by_role("button", name="Take over").click()
    expect(page.locator('[data-role="notice"]')).to_contain_text("You took over")
    expect(page.locator('[data-role="ticket-state"]')).to_have_text(
        "You are talking with the customer."
    )
    expect(page.get_by_role("button", name="Take over")).to_be_hidden()
    page.get_by_role("button", name="Hand back to assistant").click()
    expect(page.locator('[data-role="notice"]')).to_contain_text("The ticket is closed")
    expect(page.locator('[data-role="resolve"]')).to_be_hidden()
    assert_fits_the_phone(page, "agent-conversation-390-handed-back")
    ticket = Ticket.objects.get(conversation=handed_off)
    assert (ticket.status, ticket.outcome) == ("closed", "handed_back")


# --- assignment, the silent assignee, the customer's place --------------------------------


@pytest.fixture
def queue(make_user):
    """Ana and Ben take one ticket each; four customers asked for a person: the first two
    tickets went to them (round robin), the other two wait in the queue."""
    ana = make_user(roles.AGENTS, username="ana", first_name="Ana", last_name="Early")
    ben = make_user(roles.AGENTS, username="ben", first_name="Ben", last_name="Busy")
    for agent in (ana, ben):
        services.agent_capacity_set(agent=agent, capacity=1)
        services.agent_presence_set(agent=agent, on_duty=True)
    customers, tickets = [], []
    for i in range(4):
        customer = make_user(roles.CUSTOMERS, username=f"customer{i}", first_name=f"Cus{i}")
        conversation = conversation_start(
            customer=customer, visitor_id="", rate_subject=f"test:q{i}", title=f"Question {i}"
        )
        message_append(
            conversation=conversation,
            role=Message.Role.CUSTOMER,
            text=f"My order {i} never arrived",
            author=customer,
        )
        human_request(conversation=conversation, requested_by=customer)
        customers.append(customer)
        tickets.append(Ticket.objects.get(conversation=conversation))
    assert [t.assigned_agent for t in tickets] == [ana, ben, None, None]
    return SimpleNamespace(ana=ana, ben=ben, customers=customers, tickets=tickets)


def test_capacity_assignment_silent_assignee_and_the_customers_place(
    queue, asgi_live_server, browser, settings
):
    base = asgi_live_server
    first, second, third, fourth = queue.tickets
    ana = signed_in_page(browser, base, queue.ana)
    ben = signed_in_page(browser, base, queue.ben)
    open_inbox(ana, base)
    open_inbox(ben, base)
    expect(row(ana, first).locator(".status")).to_have_text("Assigned to you, not taken yet")
    expect(row(ana, second).locator(".status")).to_have_text("Assigned to Ben Busy, not taken yet")
    expect(row(ana, third).locator(".status")).to_have_text("In the queue, #1")
    expect(row(ana, fourth).locator(".status")).to_have_text("In the queue, #2")
    expect(ana.locator('[data-role="load"]')).to_have_text("You have 1 of 1.")

    waiting = signed_in_page(browser, base, queue.customers[3], viewport=PHONE)
    waiting.goto(f"{base}/?c={fourth.conversation_id}")
    place = waiting.locator('[data-role="queue"]')
    expect(place).to_contain_text("You are number 2 in line", timeout=WAIT)

    # Ben takes his ticket over and resolves it: his place goes to the next in line,
    # and the waiting customer moves up, live
    row(ben, second).get_by_role("link").click()
    ben.locator('.conversation[data-live="1"]').wait_for(timeout=WAIT)
    expect(ben.locator('[data-role="ticket-state"]')).to_have_text(
        "Assigned to you: take it over to reply."
    )
    ben.get_by_role("button", name="Take over").click()
    expect(ben.locator('[data-role="notice"]')).to_contain_text("You took over")
    ben.locator('[data-role="text"]').fill("Hi, Ben here. Your order is on its way.")
    ben.get_by_role("button", name="Send to customer").click()
    expect(ben.locator('[data-role="notice"]')).to_have_text("Sent to the customer.")
    ben.get_by_role("button", name="Resolve").click()
    expect(ben.locator('[data-role="notice"]')).to_contain_text("Resolved")
    expect(ben.get_by_role("button", name="Resolve")).to_be_hidden()
    expect(place).to_contain_text("You are next in line", timeout=WAIT)
    expect(row(ana, third).locator(".status")).to_have_text(
        "Assigned to Ben Busy, not taken yet", timeout=WAIT
    )
    expect(row(ana, fourth).locator(".status")).to_have_text("In the queue, #1")

    # Ana never opened hers: past the reply time the scheduled sweep puts it back in
    # the queue (ahead: it has waited longest) and takes her off duty
    first.refresh_from_db()
    third.refresh_from_db()
    reply_time = timedelta(seconds=settings.ESCALATION_ASSIGNEE_REPLY_SECONDS)
    assert third.assigned_at - first.assigned_at > timedelta(seconds=1)
    later = first.assigned_at + reply_time + timedelta(seconds=1)
    assert in_a_thread(services.tickets_return_silent, now=later) == 1
    first.refresh_from_db()
    assert (first.status, first.returned_from) == ("open", queue.ana)
    note = first.conversation.messages.filter(visibility="internal").last()
    assert "Ana Early did not reply within 5 minutes" in note.text
    assert not AgentPresence.objects.get(agent=queue.ana).on_duty

    open_inbox(ana, base)
    expect(ana.locator('[data-role="duty"]')).not_to_be_checked()
    expect(row(ana, first).locator(".status")).to_have_text(
        "In the queue, #1 (back from Ana Early)"
    )
    expect(row(ana, fourth).locator(".status")).to_have_text("In the queue, #2")
    waiting.reload()
    expect(place).to_contain_text("You are number 2 in line", timeout=WAIT)

    # Ana is back: the queue never gives her the ticket she let go, so the next one in
    # line is hers, and its customer hears it live
    ana.locator('[data-role="duty"]').check()
    expect(ana.locator('[data-role="notice"]')).to_contain_text("A ticket was assigned to you")
    expect(row(ana, fourth).locator(".status")).to_have_text("Assigned to you, not taken yet")
    expect(row(ana, first).locator(".status")).to_have_text(
        "In the queue, #1 (back from Ana Early)"
    )
    expect(place).to_have_text("Ana Early will be with you shortly.", timeout=WAIT)
    fourth.refresh_from_db()
    assert fourth.assigned_agent == queue.ana

    # the inbox at phone width
    ana.set_viewport_size(PHONE)
    assert_fits_the_phone(ana, "agent-inbox-390")
    assert_fits_the_phone(waiting, "customer-waiting-390")
