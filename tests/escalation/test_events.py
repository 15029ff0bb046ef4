"""Domain events reach admin-configured webhooks: signed, retried with backoff, logged."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django_q.models import Schedule

from escalation import services, tasks
from escalation.models import DomainEvent, Webhook, WebhookDelivery

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _loopback_receivers_allowed(settings):
    """The receivers here listen on loopback, which webhooks refuse unless allow-listed."""
    settings.ESCALATION_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]


class Receiver:
    """A loopback HTTP server that answers with the queued status codes."""

    def __init__(self, statuses: list[int]):
        self.statuses = list(statuses)
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/loopdesk"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    with Receiver([]) as r:
        yield r


def test_event_is_delivered_signed(receiver, conversation, django_capture_on_commit_callbacks):
    Webhook.objects.create(name="ops", url=receiver.url, secret="s3cret")
    with django_capture_on_commit_callbacks(execute=True):
        event = services.event_record(
            name=DomainEvent.Name.HARMFUL_CONTENT_DETECTED,
            conversation=conversation,
            payload={"toxicity": 0.9},
        )
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    body = json.loads(request["body"])
    assert body["event"] == "HARMFUL_CONTENT_DETECTED" and body["id"] == event.pk
    assert body["data"] == {"toxicity": 0.9}
    expected = "sha256=" + hmac.new(b"s3cret", request["body"], hashlib.sha256).hexdigest()
    assert request["headers"]["X-Loopdesk-Signature"] == expected
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "delivered" and delivery.attempts == 1
    assert delivery.last_status_code == 200


def test_webhook_only_gets_subscribed_events(
    receiver, conversation, django_capture_on_commit_callbacks
):
    Webhook.objects.create(
        name="takeovers", url=receiver.url, secret="x", events=["TAKEOVER_STARTED"]
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.event_record(name="ESCALATION_CREATED", conversation=conversation)
    assert receiver.requests == [] and not WebhookDelivery.objects.exists()


def test_failures_are_retried_with_backoff_and_logged(conversation, settings):
    settings.ESCALATION_RETRY_MAX_ATTEMPTS = 3
    with Receiver([500, 503, 200]) as receiver:
        Webhook.objects.create(name="flaky", url=receiver.url, secret="x")
        event = services.event_record(name="ESCALATION_CREATED", conversation=conversation)
        delivery = WebhookDelivery.objects.get(event=event)
        tasks.webhook_deliver_task(delivery.pk)
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
            "pending",
            1,
            500,
        )
        retries = Schedule.objects.filter(func="escalation.tasks.webhook_deliver_task")
        assert retries.count() == 1
        tasks.webhook_deliver_task(delivery.pk)
        tasks.webhook_deliver_task(delivery.pk)
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == ("delivered", 3)
        tasks.webhook_deliver_task(delivery.pk)  # redelivered task: not sent again
        assert len(receiver.requests) == 3
        delays = [s.next_run for s in retries.order_by("id")]
        assert delays[1] > delays[0]


def test_unreachable_webhook_fails_after_max_attempts(conversation, settings):
    settings.ESCALATION_RETRY_MAX_ATTEMPTS = 2
    with Receiver([]) as closed:
        url = closed.url
    Webhook.objects.create(name="gone", url=url, secret="x")
    event = services.event_record(name="ESCALATION_CREATED", conversation=conversation)
    delivery = WebhookDelivery.objects.get(event=event)
    tasks.webhook_deliver_task(delivery.pk)
    tasks.webhook_deliver_task(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.attempts == 2
    assert "Error" in delivery.last_error or "refused" in delivery.last_error.lower()
