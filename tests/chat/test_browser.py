"""A customer in a real browser (Playwright + Debian's chromium) against Daphne, with the
embedded offline assistant answering from the knowledge base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import chat
from chat import services
from chat.models import Conversation, Message

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTICLES = ["changing-email-or-password", "payment-methods", "error-e21-wifi-connection-lost"]


def knowledge_base() -> None:
    demo = json.loads((Path(chat.__file__).parent / "demo" / "articles.json").read_text())
    for article in (a for a in demo if a["slug"] in ARTICLES):
        # Embedded in the background on commit (django-q2 runs tasks inline in tests).
        services.article_upsert(
            slug=article["slug"],
            title=article["title"],
            body=article["body"],
            category=article["category"],
        )


def public_messages(conversation: Conversation) -> list[tuple[int, str]]:
    return list(
        conversation.messages.filter(visibility=Message.Visibility.PUBLIC)
        .order_by("seq")
        .values_list("seq", "text")
    )


@pytest.fixture
def patient_assistant(settings):
    """The server process loads the embedding model on the first question: allow for it.
    (Requested before asgi_live_server so the forked server inherits it.)"""
    settings.ASSISTANT_TIMEOUT_SECONDS = 120


def test_customer_chats_sees_streamed_sourced_answers_and_reloads_without_gaps(
    patient_assistant, asgi_live_server, browser
):
    # The server process is forked before the parent loads the embedding model.
    knowledge_base()
    page = browser.new_page()
    frames: list[dict] = []
    page.on(
        "websocket",
        lambda ws: ws.on("framereceived", lambda payload: frames.append(json.loads(payload))),
    )
    page.goto(asgi_live_server + "/")
    assert page.get_by_text("offline assistant").first.is_visible()

    composer = page.locator("form.composer textarea")
    composer.fill("How do I change my password?")
    composer.press("Enter")
    first_answer = page.locator("li.msg.assistant:not(.streaming)").first
    try:
        first_answer.wait_for(timeout=90_000)
    except Exception:
        page.screenshot(path=str(Path(__file__).resolve().parents[2] / "var" / "chat-fail.png"))
        raise

    assert any(f["type"] == "assistant.delta" for f in frames), "the answer was not streamed"
    assert "password" in first_answer.locator(".bubble").inner_text().lower()
    assert (
        first_answer.locator(".sources li a").first.inner_text()
        == "Changing your email address or password"
    )
    assert first_answer.locator(".sources li .n").first.inner_text() == "[1]"
    assert first_answer.locator(".who").inner_text() == "Assistant"
    assert "?c=" in page.url

    # A second question, then a reload before (or while) it is answered.
    composer.fill("Which payment methods do you accept?")
    composer.press("Enter")
    page.locator("li.msg.customer:not(.pending)").nth(1).wait_for(timeout=30_000)
    page.reload()
    page.locator("li.msg.assistant:not(.streaming)").nth(1).wait_for(timeout=90_000)
    page.wait_for_timeout(500)  # let any late frame arrive: it must not add a duplicate

    conversation = Conversation.objects.get()
    rendered = [
        (int(seq), text)
        for seq, text in page.locator("li.msg[data-seq]").evaluate_all(
            "els => els.map(e => [e.dataset.seq, e.querySelector('.bubble').textContent])"
        )
    ]
    assert rendered == public_messages(conversation)  # whole history, in order, once each
    assert [m.role for m in conversation.messages.order_by("seq")] == [
        "customer",
        "assistant",
        "customer",
        "assistant",
    ]
    assert page.locator("li.msg.pending").count() == 0
    page.screenshot(path=str(Path(__file__).resolve().parents[2] / "var" / "chat-browser.png"))
    page.close()


def test_a_cited_source_opens_the_help_page_at_the_passage(
    patient_assistant, asgi_live_server, browser
):
    knowledge_base()
    page = browser.new_page()
    page.goto(asgi_live_server + "/")
    composer = page.locator("form.composer textarea")
    composer.fill("Which cards do you accept for paying my bills?")
    composer.press("Enter")
    answer = page.locator("li.msg.assistant:not(.streaming)").first
    answer.wait_for(timeout=90_000)

    bubble = answer.locator(".bubble").inner_text()
    link = answer.locator(".sources li a").first
    href = link.get_attribute("href") or ""
    assert "[1]" in bubble  # the answer's marker matches the first source's number
    assert answer.locator(".sources li .n").first.inner_text() == "[1]"
    assert href.startswith("/help/payment-methods/#")
    assert link.get_attribute("target") == "_blank"
    with page.expect_popup() as opened:
        link.click()
    help_page = opened.value
    help_page.wait_for_load_state()

    anchor = href.split("#", 1)[1]
    assert help_page.url == asgi_live_server + href
    assert help_page.locator("h1").inner_text() == "Ways to pay"
    cited = help_page.locator(f"#{anchor}")
    assert cited.evaluate("el => el.matches(':target')")  # highlighted and scrolled to
    assert cited.is_visible()
    # The quoted sentences come from the passage the source points at.
    quoted = bubble.split(": ", 1)[1].split(" [1]")[0]
    assert quoted.split(". ")[0] in cited.inner_text()
    help_page.screenshot(
        path=str(Path(__file__).resolve().parents[2] / "var" / "help-page-from-chat.png")
    )
    help_page.set_viewport_size({"width": 390, "height": 844})  # a phone
    assert help_page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )
    assert cited.is_visible()
    help_page.close()
    page.close()


def test_customer_asks_for_a_person_ends_and_rates_the_conversation(
    scripted, asgi_live_server, browser
):
    # The scripted assistant is patched in before the server process is forked.
    page = browser.new_page()
    page.goto(asgi_live_server + "/")
    composer = page.locator("form.composer textarea")
    composer.fill("My hub shows E21")
    composer.press("Enter")
    answer = page.locator("li.msg.assistant:not(.streaming)").first
    answer.wait_for(timeout=30_000)
    assert answer.locator(".sources li a").first.inner_text() == "Reset your password"

    page.get_by_role("button", name="Talk to a person").click()
    page.locator("li.msg.system").first.wait_for(timeout=30_000)
    page.wait_for_function(
        "document.querySelector('[data-role=status]').textContent.includes('Waiting')",
        timeout=30_000,
    )

    page.get_by_role("button", name="End chat").click()
    rating = page.locator("form.rating")
    rating.wait_for(state="visible", timeout=30_000)
    rating.get_by_label("Agree", exact=True).check()
    rating.get_by_label("Comment (optional)").fill("Quick and clear")
    rating.get_by_role("button", name="Send rating").click()
    page.get_by_text("Thank you for your feedback!").wait_for(timeout=30_000)

    conversation = Conversation.objects.get()
    feedback = conversation.feedback.get()
    assert (feedback.score, feedback.comment) == (4, "Quick and clear")
    assert conversation.status == "ended"
    assert page.locator("form.composer textarea").is_disabled()
    page.close()


def test_the_page_shows_a_failed_turn_and_never_thinks_forever(
    scripted, live_servers, browser, settings
):
    """The server gives up on a turn (its time limit): the customer sees the failure
    notice instead of endless thinking. Then the server process dies mid-turn: nothing
    arrives, and the page stops thinking on its own after the turn's time limit and offers
    a person."""
    settings.ASSISTANT_TIMEOUT_SECONDS = 2
    scripted.hang = True  # the provider never answers
    artifacts = Path(__file__).resolve().parents[2] / "var" / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    url, server = live_servers.start()
    page = browser.new_page()
    page.goto(url + "/")
    composer = page.locator("form.composer textarea")
    thinking = page.locator('[data-role="thinking"]')

    composer.fill("Is anyone there?")
    composer.press("Enter")
    thinking.wait_for(state="visible", timeout=30_000)
    notice = page.locator("li.msg.system").filter(has_text="could not answer")
    notice.wait_for(timeout=30_000)
    assert thinking.is_hidden()
    page.screenshot(path=str(artifacts / "chat-turn-failed.png"))

    page.goto(url + "/")  # a new conversation
    composer.fill("Hello, is my bill ready?")
    composer.press("Enter")
    thinking.wait_for(state="visible", timeout=30_000)
    server.kill()  # the process running the turn dies: no frame will ever come
    stalled = page.locator('[data-role="stalled"]')
    stalled.wait_for(state="visible", timeout=30_000)
    assert thinking.is_hidden()
    assert stalled.get_by_role("button", name="talk to a person").is_visible()
    page.screenshot(path=str(artifacts / "chat-turn-stalled.png"))
    page.close()
