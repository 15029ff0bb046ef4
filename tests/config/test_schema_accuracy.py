"""The OpenAPI schema matches the responses (issue 11, item 12), checked with
schemathesis's response validation on the real answers of the cases the review found:
a ticket's blank outcome, webhook deliveries as a plain list, a run's /live/ progress,
a customer's messages, JSON Lines exports, take-over and knowledge-draft answers. (The
whole API is fuzzed against the schema by scripts/fuzz-api in CI.)"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from schemathesis.core.transport import Response

from tests.test_authorization_matrix import world_build


@pytest.mark.django_db(transaction=True)
def test_documented_responses_match_the_schema(asgi_live_server):
    world = world_build()
    schema = schemathesis.openapi.from_dict(
        httpx.get(asgi_live_server + "/api/schema/?format=json", timeout=30).json()
    )
    ids = world.ids

    def check(role: str, method: str, template: str, **values):
        url = template.format(**values)
        response = httpx.request(
            method,
            asgi_live_server + url,
            headers={"Authorization": f"Token {world.tokens[role]}"},
            timeout=60,
        )
        assert 200 <= response.status_code < 300, (url, response.status_code, response.text)
        operation = schema[template][method]
        operation.validate_response(Response.from_any(response))
        return response

    check("agent", "GET", "/api/escalation/tickets/")
    check("agent", "GET", "/api/escalation/tickets/{id}/", id=ids["open_ticket"])
    check("admin", "GET", "/api/escalation/webhooks/{id}/deliveries/", id=ids["webhook"])
    check("ml_engineer", "GET", "/api/training/runs/{id}/live/", id=ids["run"])
    check("customer", "GET", "/api/conversations/{id}/messages/", id=ids["conversation"])
    check("agent", "GET", "/api/conversations/{id}/messages/", id=ids["conversation"])
    check("ml_engineer", "GET", "/api/labeling/exports/input-manifest.jsonl")
    check(
        "agent",
        "POST",
        "/api/escalation/conversations/{conversation_id}/take-over/",
        conversation_id=ids["waiting_conversation"],
    )
    check(
        "agent", "POST", "/api/escalation/tickets/{id}/knowledge-draft/", id=ids["resolved_ticket"]
    )
