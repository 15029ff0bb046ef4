"""Every sign-in form locks out after repeated wrong passwords (issue 11, item 7): the
admin's, the customer's and the API token's, for that username from that address."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

FORMS = ["/admin/login/", "/accounts/login/"]


def sign_in(client: Client, url: str, password: str):
    return client.post(url, {"username": "casey", "password": password})


@pytest.mark.parametrize("url", FORMS)
def test_thirty_wrong_passwords_then_the_right_one_is_refused(customer, settings, url):
    settings.AXES_FAILURE_LIMIT = 5
    client = Client(REMOTE_ADDR="203.0.113.7")

    codes = [sign_in(client, url, f"guess-{i}").status_code for i in range(30)]
    right = sign_in(client, url, "pw-for-tests")

    assert codes[:4] == [200] * 4  # the form again, with its error
    assert set(codes[5:]) == {429}
    assert right.status_code == 429
    assert b"Too many sign-in attempts" in right.content
    assert "_auth_user_id" not in client.session


def test_the_lockout_is_for_that_username_from_that_address(customer, settings):
    settings.AXES_FAILURE_LIMIT = 3
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    for i in range(3):
        sign_in(attacker, "/accounts/login/", f"guess-{i}")

    elsewhere = Client(REMOTE_ADDR="198.51.100.9")
    response = sign_in(elsewhere, "/accounts/login/", "pw-for-tests")

    assert response.status_code == 302
    assert elsewhere.session["_auth_user_id"] == str(customer.pk)


def test_a_success_resets_the_count(customer, settings):
    settings.AXES_FAILURE_LIMIT = 3
    client = Client(REMOTE_ADDR="203.0.113.7")
    for i in range(2):
        sign_in(client, "/accounts/login/", f"guess-{i}")
    assert sign_in(client, "/accounts/login/", "pw-for-tests").status_code == 302
    client.logout()

    for i in range(2):
        sign_in(client, "/accounts/login/", f"again-{i}")

    assert sign_in(client, "/accounts/login/", "pw-for-tests").status_code == 302
