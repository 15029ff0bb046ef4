"""Webhooks reach public addresses only (issue 11, item 5): no internal address can be
saved, a name that resolves to one is refused at delivery without connecting, and
redirects are not followed. Nothing here sends traffic beyond the loopback receiver."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from escalation import services, tasks, webhooks
from escalation.models import Webhook, WebhookDelivery
from tests.escalation.test_events import Receiver

pytestmark = pytest.mark.django_db

INTERNAL_URLS = [
    "http://127.0.0.1:6379/",
    "http://localhost:8000/admin/",
    "http://10.0.0.8/hook",
    "http://172.16.4.2/hook",
    "http://192.168.1.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8000/",
    "http://[fd00:ec2::254]/",
    "http://[::ffff:127.0.0.1]/",
    "http://0.0.0.0:22/",
    "http://100.64.0.1/",
]


@pytest.fixture
def fake_dns(monkeypatch):
    """Names resolve to the addresses a test gives; nothing reaches a real resolver, and
    a connection to anything but loopback fails the test."""
    answers: dict[str, str] = {}
    real_getaddrinfo = socket.getaddrinfo
    attempts: list[tuple] = []

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            family = socket.AF_INET6 if ":" in answers[host] else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (answers[host], port))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    real_connect = socket.socket.connect

    def connect(sock, address):
        attempts.append(address)
        if not str(address[0]).startswith("127."):
            raise AssertionError(f"connected to {address}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    answers["attempts"] = attempts  # type: ignore[assignment]
    return answers


@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_internal_destinations_cannot_be_saved(api_client, admin_member, url):
    api_client.force_authenticate(admin_member)

    response = api_client.post(
        "/api/escalation/webhooks/", {"name": "probe", "url": url, "secret": "x"}, format="json"
    )

    assert response.status_code == 400, url
    assert "public addresses only" in response.json()["fields"]["url"][0]
    assert not Webhook.objects.exists()


def test_a_name_resolving_to_an_internal_address_is_refused_when_saved(
    api_client, admin_member, fake_dns
):
    fake_dns["metadata.example.com"] = "169.254.169.254"
    api_client.force_authenticate(admin_member)

    response = api_client.post(
        "/api/escalation/webhooks/",
        {"name": "probe", "url": "http://metadata.example.com/", "secret": "x"},
        format="json",
    )

    assert response.status_code == 400
    assert not Webhook.objects.exists()


def test_the_admin_form_refuses_internal_destinations(client, admin_member):
    client.force_login(admin_member)

    response = client.post(
        "/admin/escalation/webhook/add/",
        {
            "name": "probe",
            "url": "http://10.0.0.8/",
            "secret": "x",
            "events": "[]",
            "enabled": "on",
        },
    )

    assert response.status_code == 200  # the form again, with the error
    assert b"public addresses only" in response.content
    assert not Webhook.objects.exists()


def test_a_name_that_later_resolves_inside_is_refused_at_delivery_without_connecting(
    conversation, fake_dns
):
    """DNS rebinding: public when saved, internal when delivered. The delivery fails at
    once (no retries, no probing) and the log says why, not what the port answered."""
    fake_dns["hooks.example.com"] = "93.184.215.14"
    webhook = Webhook(name="ops", url="http://hooks.example.com/in", secret="x")
    webhook.full_clean()
    webhook.save()
    fake_dns["hooks.example.com"] = "10.1.2.3"
    event = services.event_record(name="ESCALATION_CREATED", conversation=conversation)
    delivery = WebhookDelivery.objects.get(event=event)

    tasks.webhook_deliver_task(delivery.pk)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 1, None)
    assert "public addresses only" in delivery.last_error
    assert fake_dns["attempts"] == []


def test_redirects_are_not_followed(conversation, settings):
    settings.ESCALATION_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    with Receiver([]) as target:

        class Redirect(BaseHTTPRequestHandler):
            def do_POST(self):
                self.send_response(307)
                self.send_header("Location", target.url)
                self.end_headers()

            def log_message(self, *args):
                pass

        server = HTTPServer(("127.0.0.1", 0), Redirect)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            Webhook.objects.create(
                name="hop", url=f"http://127.0.0.1:{server.server_port}/", secret="x"
            )
            event = services.event_record(name="ESCALATION_CREATED", conversation=conversation)
            delivery = WebhookDelivery.objects.get(event=event)
            tasks.webhook_deliver_task(delivery.pk)
        finally:
            server.shutdown()
            server.server_close()

    delivery.refresh_from_db()
    assert delivery.last_status_code == 307 and delivery.status == "pending"
    assert target.requests == []


def test_an_allow_listed_internal_receiver_gets_its_events(conversation, settings):
    settings.ESCALATION_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    with Receiver([]) as receiver:
        webhook = Webhook(name="internal", url=receiver.url, secret="x")
        webhook.full_clean()
        webhook.save()
        event = services.event_record(name="ESCALATION_CREATED", conversation=conversation)
        tasks.webhook_deliver_task(WebhookDelivery.objects.get(event=event).pk)

    assert len(receiver.requests) == 1
    assert WebhookDelivery.objects.get().status == "delivered"


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.215.14", True),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", True),
        ("127.0.0.1", False),
        ("10.255.255.53", False),
        ("169.254.169.254", False),
        ("::ffff:10.0.0.1", False),
        ("224.0.0.1", False),
        ("fe80::1", False),
    ],
)
def test_address_policy(address, allowed):
    import ipaddress

    assert webhooks.address_allowed(ipaddress.ip_address(address)) is allowed
