"""Request bodies reach Django under Daphne (issue 11, item 12): a malformed multipart
body got a bare 400 with no body from Twisted, before Django's error shape."""

from __future__ import annotations

import httpx
import pytest
from knox.models import AuthToken

BOUNDARY = "c637e12e2b1a998d80d1b087531af51c"


@pytest.mark.django_db(transaction=True)
def test_an_empty_multipart_body_gets_the_api_error_shape(asgi_live_server, ml_engineer):
    _, token = AuthToken.objects.create(user=ml_engineer)

    response = httpx.post(
        asgi_live_server + "/api/labeling/imports/output-manifest/",
        content=f"--{BOUNDARY}--\r\n".encode(),
        headers={
            "Authorization": f"Token {token}",
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        },
        timeout=30,
    )

    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["fields"]["manifest"] == ["No file was submitted."]
