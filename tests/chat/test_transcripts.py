"""Transcripts: one JSON object per conversation, local storage by default, S3 when set."""

from __future__ import annotations

import json

import boto3
import pytest
from django.core.files.storage import default_storage
from moto import mock_aws

from chat import services
from chat.models import Conversation
from chat.transcripts import transcript_export
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(customer, agent, pipeline):
    conversation = ConversationFactory(customer=customer)
    pipeline.bot.answer = "Hello! How can I help?"
    pipeline.ask(conversation, "Hi, how do I reset my password?", author=customer)
    services.message_append(
        conversation=conversation, role="agent", text="note", author=agent, visibility="internal"
    )
    services.feedback_submit(conversation=conversation, score=5, comment="Great!")
    return conversation


def test_export_writes_one_json_object_per_conversation(conversation):
    path = transcript_export(conversation=conversation)
    again = transcript_export(conversation=conversation)

    assert path == again == f"transcripts/{conversation.created_at:%Y/%m}/{conversation.pk}.json"
    with default_storage.open(path) as handle:
        transcript = json.loads(handle.read())
    assert transcript["conversation_id"] == str(conversation.pk)
    assert [m["role"] for m in transcript["messages"]] == ["customer", "assistant", "agent"]
    answer = transcript["messages"][1]
    assert answer["text"] == "Hello! How can I help?"
    assert answer["reply_to_seq"] == 1 and answer["latency_ms"] >= 0
    assert answer["sources"][0]["slug"] == "reset-password"
    # the turn behind the answer travels with it (an internal record for reviewers)
    assert answer["turn"]["status"] == "answered"
    assert answer["turn"]["sentiment"]["label"] in ("neutral", "positive")
    assert transcript["messages"][2]["visibility"] == "internal"
    assert transcript["feedback"][0]["score_label"] == "Strongly agree"


@mock_aws
def test_export_goes_to_s3_when_configured(conversation, settings):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="loopdesk-transcripts")
    settings.AWS_STORAGE_BUCKET_NAME = "loopdesk-transcripts"
    settings.AWS_S3_REGION_NAME = "us-east-1"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "storages.backends.s3.S3Storage"},
    }

    path = transcript_export(conversation=conversation)

    body = s3.get_object(Bucket="loopdesk-transcripts", Key=path)["Body"].read()
    assert json.loads(body)["conversation_id"] == str(conversation.pk)
    assert path.endswith(f"{conversation.pk}.json")


def test_api_and_admin_action_export(
    api_client, agent, customer, admin_member, conversation, client
):
    api_client.force_authenticate(customer)
    assert api_client.post(f"/api/conversations/{conversation.pk}/transcript/").status_code == 403
    api_client.force_authenticate(agent)
    response = api_client.post(f"/api/conversations/{conversation.pk}/transcript/")
    assert response.status_code == 201
    assert default_storage.exists(response.json()["path"])
    default_storage.delete(response.json()["path"])

    client.force_login(admin_member)
    client.post(
        "/admin/chat/conversation/",
        {"action": "export_transcripts", "_selected_action": [str(conversation.pk)]},
    )
    assert default_storage.exists(
        f"transcripts/{conversation.created_at:%Y/%m}/{conversation.pk}.json"
    )
    assert Conversation.objects.count() == 1


@pytest.fixture
def debug_urls(settings):
    """The URLs as the run command builds them with DJANGO_DEBUG=true."""
    import importlib

    from django.urls import clear_url_caches

    import config.urls

    settings.DEBUG = True
    importlib.reload(config.urls)
    clear_url_caches()
    yield
    settings.DEBUG = False
    importlib.reload(config.urls)
    clear_url_caches()


def test_transcripts_are_never_served_from_a_public_url(
    api_client, agent, conversation, client, debug_urls
):
    """Issue 11 item 4: /media/transcripts/... was downloadable without login, withheld
    drafts and internal checks included."""
    api_client.force_authenticate(agent)
    exported = api_client.post(f"/api/conversations/{conversation.pk}/transcript/").json()

    anonymous = client.get(f"/media/{exported['path']}")

    assert anonymous.status_code == 404
    assert "loopdesk.chat-transcript" not in anonymous.content.decode()
    assert "/media/" not in exported["url"]


def test_support_staff_read_the_transcript_through_the_api_and_nobody_else(
    api_client, agent, customer, reviewer, conversation
):
    url = f"/api/conversations/{conversation.pk}/transcript/"
    api_client.force_authenticate(agent)
    assert api_client.get(url).status_code == 404  # nothing exported yet
    exported = api_client.post(url).json()
    assert exported["url"].endswith(url)

    read = api_client.get(url)
    assert read.status_code == 200
    assert json.loads(b"".join(read.streaming_content))["conversation_id"] == str(conversation.pk)
    for outsider in (customer, reviewer):
        api_client.force_authenticate(outsider)
        assert api_client.get(url).status_code in (403, 404)
    api_client.logout()
    assert api_client.get(url).status_code in (401, 403)
