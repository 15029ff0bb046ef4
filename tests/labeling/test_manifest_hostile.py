"""Hostile Ground Truth manifests (issue 11, item 8): every one is refused with a 400 that
names the first problems by line, never a server error, through the API and the admin."""

from __future__ import annotations

import io
import json

import pytest
from django.urls import reverse

from labeling.models import Label, LabelingItem
from tests.labeling.test_groundtruth import BLOG_LINE

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_judge")]


ATTRIBUTE = "RHLF-custom-feedback"


def _line(*, source=None, worker=None, created=None) -> str:
    """The blog's example line with one value replaced."""
    data = json.loads(BLOG_LINE)
    if source is not None:
        data["source"] = source
    if worker is not None:
        data[ATTRIBUTE]["workerId"] = worker
    if created is not None:
        data[f"{ATTRIBUTE}-metadata"]["creation-date"] = created
    return json.dumps(data)


def _upload(body: bytes, name: str = "output.manifest") -> io.BytesIO:
    upload = io.BytesIO(body)
    upload.name = name
    return upload


HOSTILE = {
    "invalid UTF-8": BLOG_LINE.encode()[:40] + b"\xff\xfe\xfa" + BLOG_LINE.encode()[40:],
    "UTF-16": BLOG_LINE.encode("utf-16"),
    "a number where a date is expected": _line(created=20230809).encode(),
    "an over-long worker id": _line(worker="w" * 5000).encode(),
    "an absurd Loopdesk reviewer id": _line(worker="private.loopdesk." + "9" * 40).encode(),
    "a NUL character": _line(source="what?\u0000,answer").encode(),
    "a lone surrogate": BLOG_LINE.replace("what is", "what \\ud800 is").encode(),
    "10,000 levels of nesting": b'{"source": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_manifests_are_refused_through_the_api(api_client, ml_engineer, case):
    api_client.force_authenticate(ml_engineer)

    response = api_client.post(
        reverse("api:labeling-manifest-import"),
        {"manifest": _upload(HOSTILE[case] + b"\n")},
        format="multipart",
    )

    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert body["code"] == "invalid_manifest"
    assert body["fields"]["manifest"][0].startswith("line 1:")
    assert LabelingItem.objects.count() == 0 and Label.objects.count() == 0


def test_a_huge_error_list_is_cut_to_the_first_problems_and_counted(api_client, ml_engineer):
    api_client.force_authenticate(ml_engineer)
    body = b"{not json\n" * 5000

    response = api_client.post(
        reverse("api:labeling-manifest-import"), {"manifest": _upload(body)}, format="multipart"
    )

    assert response.status_code == 400
    data = response.json()
    assert len(data["fields"]["manifest"]) == 20
    assert "5000 problems" in data["message"]
    assert len(response.content) < 10_000


def test_a_manifest_over_the_size_cap_is_refused_unread(api_client, ml_engineer, settings):
    settings.LABELING_MANIFEST_MAX_BYTES = 10_000
    api_client.force_authenticate(ml_engineer)

    response = api_client.post(
        reverse("api:labeling-manifest-import"),
        {"manifest": _upload((BLOG_LINE + "\n").encode() * 50)},
        format="multipart",
    )

    assert response.status_code == 400
    assert "larger than 10000 bytes" in response.json()["fields"]["manifest"][0]
    assert LabelingItem.objects.count() == 0


@pytest.mark.parametrize("case", ["invalid UTF-8", "UTF-16", "an absurd Loopdesk reviewer id"])
def test_hostile_manifests_are_refused_in_the_admin(client, ml_engineer, case):
    client.force_login(ml_engineer)

    response = client.post(
        reverse("admin:labeling_manifest_import"),
        {"manifest": _upload(HOSTILE[case] + b"\n"), "label_attribute": ""},
    )

    assert response.status_code == 200
    assert b'id="manifest-errors"' in response.content
    assert b"Nothing was imported" in response.content
    assert LabelingItem.objects.count() == 0
