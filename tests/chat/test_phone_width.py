"""The chat at phone width (390 x 844) in a real browser: history, "New conversation" and
sign-in through the menu, a compact notice, a one-line header, nothing wider than the
screen. Screenshots are kept in var/test-artifacts/."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from chat import services
from config import roles
from tests.config.browser_helpers import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}

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

START_CONVERSATION = """async (title) => {
  const csrf = document.cookie.match(/csrftoken=([^;]+)/)[1];
  const response = await fetch("/chat/start/", {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
    body: JSON.stringify({title}),
  });
  return (await response.json()).id;
}"""


def assert_nothing_overflows(page, name: str) -> None:
    # Measured once the drawer has finished sliding.
    page.wait_for_function("() => document.getAnimations().every(a => a.playState !== 'running')")
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    result = page.evaluate(OVERFLOW)
    assert result["scrollWidth"] <= result["width"], (name, result)
    assert result["offenders"] == [], (name, result["offenders"])


@pytest.fixture
def customer_with_history(make_user):
    """The demo customer with one earlier conversation (made before the browser starts:
    the message's broadcast cannot run inside Playwright's event loop)."""
    customer = make_user(roles.CUSTOMERS, username="customer", first_name="Casey")
    earlier = services.conversation_start(
        customer=customer, visitor_id="", rate_subject="test:phone", title="Router keeps dropping"
    )
    services.customer_message_receive(
        conversation=earlier,
        text="It drops every hour, see https://example.com/" + "a-very-long-path-" * 12,
        client_id="phone-1",
        author=customer,
        rate_subject="test:phone",
    )
    return customer


def test_phone_reaches_history_and_sign_in_through_the_menu(
    customer_with_history, asgi_live_server, browser
):
    context = browser.new_context(viewport=PHONE, has_touch=True)
    page = context.new_page()
    page.goto(asgi_live_server + "/")

    # Closed menu: the chat fills the screen, the header is one line, the notice one line.
    menu = page.locator("#chat-menu")
    toggle = page.get_by_role("button", name="Menu: conversations and sign-in")
    assert not menu.is_visible() and toggle.is_visible()
    head = page.locator(".widget-head").bounding_box()
    assert head["height"] < 60
    for button in page.locator(".head-actions button").all():
        assert button.bounding_box()["height"] < 32  # its label did not wrap
    avatar = page.locator(".widget-head .avatar").bounding_box()
    assert avatar["width"] == avatar["height"] == 32
    notice = page.locator("[data-role=offline-notice]")
    assert "offline assistant" in notice.inner_text()
    assert notice.bounding_box()["height"] <= 32
    assert_nothing_overflows(page, "chat-390")

    # A conversation started on this device before signing in.
    page.evaluate(START_CONVERSATION, "Asked before signing in")
    page.reload()

    toggle.click()
    assert toggle.get_attribute("aria-expanded") == "true"
    assert page.get_by_role("button", name="+ New conversation").is_visible()
    assert menu.get_by_role("link", name="Asked before signing in").is_visible()
    assert "Router keeps dropping" not in menu.inner_text()
    assert_nothing_overflows(page, "chat-390-menu")
    page.keyboard.press("Escape")
    expect(menu).to_be_hidden()  # after its slide-out

    toggle.click()
    menu.get_by_role("link", name="Sign in").click()
    page.wait_for_url("**/accounts/login/**")
    assert_nothing_overflows(page, "sign-in-390")
    page.get_by_label("Username").fill("customer")
    page.get_by_label("Password").fill("pw-for-tests")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(asgi_live_server + "/")

    toggle.click()
    assert menu.get_by_text("Signed in as Casey").is_visible()
    assert menu.get_by_role("link", name="Router keeps dropping").is_visible()
    assert menu.get_by_role("link", name="Asked before signing in").is_visible()
    assert menu.get_by_role("button", name="Sign out").is_visible()
    assert_nothing_overflows(page, "chat-390-signed-in-menu")
    menu.get_by_role("button", name="Close the menu").click()
    expect(menu).to_be_hidden()

    # An earlier conversation opened from the menu, with a long unbroken line.
    toggle.click()
    menu.get_by_role("link", name="Router keeps dropping").click()
    expect(page.locator("li.msg.customer .bubble")).to_contain_text("It drops every hour")
    assert_nothing_overflows(page, "chat-390-conversation")

    # The notice goes away for good once dismissed.
    page.get_by_role("button", name="Dismiss this notice").click()
    assert not notice.is_visible()
    page.reload()
    assert not notice.is_visible()
    assert_nothing_overflows(page, "chat-390-notice-dismissed")
    context.close()


def test_desktop_customer_signs_in_from_the_sidebar_and_sees_their_history(
    asgi_live_server, browser, make_user
):
    customer = make_user(roles.CUSTOMERS, username="customer")
    services.conversation_start(
        customer=customer, visitor_id="", rate_subject="test:desk", title="Billing question"
    )
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(asgi_live_server + "/")
    assert not page.get_by_role("button", name="Menu: conversations and sign-in").is_visible()

    page.locator(".sidebar").get_by_role("link", name="Sign in").click()
    page.get_by_label("Username").fill("customer")
    page.get_by_label("Password").fill("pw-for-tests")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(asgi_live_server + "/")

    sidebar = page.locator(".sidebar")
    assert sidebar.get_by_role("heading", name="Your conversations").is_visible()
    assert sidebar.get_by_role("link", name="Billing question").is_visible()
    page.screenshot(path=str(ARTIFACTS / "chat-desktop-signed-in.png"))
