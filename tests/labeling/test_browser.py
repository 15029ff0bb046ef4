"""The issue's done-when in a real browser: a reviewer logs in through the admin login
page and labels ten items with the keyboard alone; with two colleagues' labels already
in, the items consolidate and the agreement figure shows on the experts' page."""

from __future__ import annotations

import re

import pytest

from labeling import services
from labeling.models import Label, LabelingBatch, LabelingItem
from tests.labeling.conftest import answered, make_item

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("no_judge"),
]

SCORES = [5, 4, 3, 2, 1, 5, 4, 2, 1, 3]


def log_in(page, base_url: str, username: str) -> None:
    """Through the admin login page, keys only (the username field has autofocus)."""
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    # Keys typed before autofocus lands go nowhere: wait until the field has the focus.
    page.wait_for_function("document.activeElement && document.activeElement.id === 'id_username'")
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type("pw-for-tests")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base_url}/admin/")


def test_reviewer_labels_ten_items_with_the_keyboard_and_agreement_shows(
    reviewers, ml_engineer, asgi_live_server, browser
):
    batch = LabelingBatch.objects.create(name="Browser batch")
    items = []
    for i in range(10):
        item = make_item(answered(f"Browser question {i}?", f"Browser answer {i}."))
        LabelingItem.objects.filter(pk=item.pk).update(batch=batch)
        items.append(item)
    for item, score in zip(items, SCORES, strict=True):
        for colleague in reviewers[1:]:
            label = item.labels.get(reviewer=colleague)
            services.label_submit(label=label, reviewer=colleague, score=score)
    robin = reviewers[0]

    page = browser.new_context().new_page()
    log_in(page, asgi_live_server, robin.username)
    page.goto(f"{asgi_live_server}/admin/labeling/label/queue/")
    assert "10 open" in page.inner_text("[data-testid=queue-summary]")
    page.keyboard.press("Enter")  # start labeling
    for i in range(len(SCORES)):
        page.wait_for_load_state()
        page.wait_for_selector('#label-form[data-keys="ready"]')
        question = page.inner_text("#question")
        index = int(re.search(r"question (\d+)", question).group(1))
        page.keyboard.press(str(SCORES[index]))
        assert page.is_checked(f'input[name="score"][value="{SCORES[index]}"]')
        # Save and next: wait for the navigation the submit starts (on a busy machine
        # the old page was still shown when the load state was first checked).
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert "Saved: relevance" in page.inner_text("body"), f"item {i} not saved"
    page.wait_for_url(re.compile(r".*/admin/labeling/label/queue/$"))
    assert "0 open, 10 labeled by you." in page.inner_text("[data-testid=queue-summary]")

    mine = Label.objects.filter(reviewer=robin).select_related("item")
    assert {(label.item.question, label.score) for label in mine} == {
        (f"Browser question {i}?", score) for i, score in enumerate(SCORES)
    }
    assert LabelingItem.objects.filter(status="consolidated").count() == 10
    batch.refresh_from_db()
    assert batch.agreement_alpha == pytest.approx(1.0)

    expert = browser.new_context().new_page()
    log_in(expert, asgi_live_server, ml_engineer.username)
    expert.goto(f"{asgi_live_server}/admin/labeling/labelingbatch/agreement/")
    row = expert.locator("#batch-agreement tr", has_text="Browser batch")
    assert row.locator("[data-testid=batch-alpha]").inner_text() == "1.00"
    assert "rev_a" in expert.inner_text("#reviewer-agreement")
