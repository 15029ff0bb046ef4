"""Customer accounts: sign-in from the chat, sign-out, password reset and sign-up."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from chat.models import Conversation
from chat.visitors import VISITOR_COOKIE
from config import roles
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests"


def start_anonymous_conversation(client, title: str) -> Conversation:
    client.get("/")
    response = client.post(
        "/chat/start/", json.dumps({"title": title}), content_type="application/json"
    )
    return Conversation.objects.get(pk=response.json()["id"])


def sign_in(client, username: str, password: str = PASSWORD, next_url: str = ""):
    data = {"username": username, "password": password}
    if next_url:
        data["next"] = next_url
    return client.post("/accounts/login/", data)


def test_the_chat_page_sends_customers_to_the_customer_sign_in(client):
    page = client.get("/?c=abc").content.decode()

    assert 'href="/accounts/login/?next=/%3Fc%3Dabc"' in page
    assert "/admin/login/" not in page
    sign_in_page = client.get("/accounts/login/?next=/")
    assert sign_in_page.status_code == 200
    assert "Brightwave support" in sign_in_page.content.decode()
    assert "Forgot your password?" in sign_in_page.content.decode()


def test_signing_in_brings_this_devices_conversations_into_the_account(client, customer):
    earlier = start_anonymous_conversation(client, "Router keeps dropping")
    elsewhere = ConversationFactory(visitor_id="another-device", title="Not mine")

    response = sign_in(client, "casey", next_url=f"/?c={earlier.pk}")

    assert response.status_code == 302 and response.url == f"/?c={earlier.pk}"
    earlier.refresh_from_db()
    elsewhere.refresh_from_db()
    assert earlier.customer == customer
    assert elsewhere.customer is None
    page = client.get("/").content.decode()
    assert "Your conversations" in page and "Router keeps dropping" in page
    assert "Signed in as" in page and "Sign out" in page


def test_the_account_sees_its_conversations_on_another_device(client, customer):
    start_anonymous_conversation(client, "Billing question")
    sign_in(client, "casey")

    from django.test import Client

    other_device = Client()
    sign_in(other_device, "casey")

    assert "Billing question" in other_device.get("/").content.decode()


def test_a_wrong_password_is_refused_in_the_page(client, customer):
    start_anonymous_conversation(client, "Mine")

    response = sign_in(client, "casey", password="wrong")

    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert Conversation.objects.get().customer is None


def test_an_unsafe_next_address_is_ignored(client, customer):
    response = sign_in(client, "casey", next_url="https://evil.example/")

    assert response.status_code == 302 and response.url == "/"


def test_staff_keep_the_admin_login_and_may_use_the_customer_page(client, agent):
    assert client.get("/admin/login/").status_code == 200

    response = sign_in(client, "alex")

    assert response.status_code == 302
    assert client.get("/agent/").status_code == 200


def test_signing_out_forgets_the_account_and_the_devices_visitor_token(client, customer):
    start_anonymous_conversation(client, "Private matter")
    sign_in(client, "casey")

    assert client.get("/accounts/logout/").status_code == 405  # a link cannot sign you out
    response = client.post("/accounts/logout/")

    assert response.status_code == 302 and response.url == "/"
    assert response.cookies[VISITOR_COOKIE].value == ""  # deleted
    assert "_auth_user_id" not in client.session
    assert "Private matter" not in client.get("/").content.decode()


def test_password_reset_by_email_through_the_configured_backend(client, customer):
    response = client.post("/accounts/password-reset/", {"email": customer.email})

    assert response.status_code == 302 and response.url == "/accounts/password-reset/sent/"
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [customer.email]
    assert message.subject == "Choose a new password for Brightwave support"
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", message.body).group(1)

    form_page = client.get(link, follow=True)
    assert "Choose a new password" in form_page.content.decode()
    done = client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": "a-new-long-password-42", "new_password2": "a-new-long-password-42"},
    )
    assert done.status_code == 302 and done.url == "/accounts/reset/done/"
    assert sign_in(client, "casey", password="a-new-long-password-42").status_code == 302
    # The link works once.
    assert "This link no longer works" in client.get(link, follow=True).content.decode()


def test_password_reset_for_an_unknown_address_sends_nothing_and_says_the_same(client, db):
    response = client.post("/accounts/password-reset/", {"email": "nobody@example.com"})

    assert response.status_code == 302 and response.url == "/accounts/password-reset/sent/"
    assert mail.outbox == []


def test_sign_up_does_not_exist_unless_enabled(client, settings):
    settings.CUSTOMER_SIGNUP_ENABLED = False

    assert client.get("/accounts/signup/").status_code == 404
    assert "Create an account" not in client.get("/accounts/login/").content.decode()
    assert client.post("/accounts/signup/", {"username": "new"}).status_code == 404
    assert not get_user_model().objects.filter(username="new").exists()


def test_sign_up_when_enabled_makes_a_customer_and_keeps_the_devices_chats(
    client, settings, role_groups
):
    settings.CUSTOMER_SIGNUP_ENABLED = True
    earlier = start_anonymous_conversation(client, "Before I had an account")
    assert "Create an account" in client.get("/accounts/login/").content.decode()

    response = client.post(
        "/accounts/signup/",
        {
            "username": "newcustomer",
            "email": "new@example.com",
            "password1": "a-long-password-42",
            "password2": "a-long-password-42",
            "next": f"/?c={earlier.pk}",
        },
    )

    assert response.status_code == 302 and response.url == f"/?c={earlier.pk}"
    user = get_user_model().objects.get(username="newcustomer")
    assert user.email == "new@example.com" and user.check_password("a-long-password-42")
    assert not user.is_staff and not user.is_superuser
    assert list(user.groups.values_list("name", flat=True)) == [roles.CUSTOMERS]
    assert client.session["_auth_user_id"] == str(user.pk)
    earlier.refresh_from_db()
    assert earlier.customer == user


def test_sign_up_refuses_a_taken_email_and_a_weak_password(client, settings, customer):
    settings.CUSTOMER_SIGNUP_ENABLED = True

    response = client.post(
        "/accounts/signup/",
        {
            "username": "another",
            "email": customer.email.upper(),
            "password1": "short",
            "password2": "short",
        },
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert "An account with this e-mail address already exists." in html
    assert "This password is too short" in html
    assert not get_user_model().objects.filter(username="another").exists()


def test_hostile_input_on_the_account_pages_is_refused_not_a_server_error(client, customer):
    nul = sign_in(client, "casey\x00", password="pw\x00")
    assert nul.status_code == 200 and "_auth_user_id" not in client.session

    huge_uid = client.get(f"/accounts/reset/{'OTk5' * 1500}/set-password/", follow=True)
    assert huge_uid.status_code == 200
    assert "This link no longer works" in huge_uid.content.decode()

    sign_in(client, "casey")
    loop = client.get("/accounts/login/?next=/accounts/login/")
    assert loop.status_code == 302 and loop.url == "/"


def test_a_form_sent_without_its_csrf_token_gets_the_branded_page(db):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    response = strict.post("/accounts/login/", {"username": "casey", "password": PASSWORD})

    assert response.status_code == 403
    assert "This form has expired" in response.content.decode()
