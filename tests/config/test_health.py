"""`/healthz` reports the database, the channel layer and the task broker."""

from __future__ import annotations

import os
import types
import uuid

import pytest
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.brokers.redis_broker import Redis as RedisBroker
from django_q.conf import Conf
from django_q.status import Stat

pytestmark = pytest.mark.django_db


@pytest.fixture
def running_worker():
    """A django-q2 cluster heartbeat, written the way a live sentinel writes it."""
    sentinel = types.SimpleNamespace(
        parent_pid=None,
        pid=os.getpid(),
        cluster_id=uuid.uuid4(),
        broker=None,
        tob=timezone.now(),
        reincarnations=0,
        status=lambda: Conf.IDLE,
        monitor=None,
        pusher=None,
        pool=[],
        result_queue=types.SimpleNamespace(qsize=lambda: 0),
        task_queue=types.SimpleNamespace(qsize=lambda: 0),
    )
    broker = get_broker()
    Stat(sentinel).save()
    yield sentinel
    # The worker "stops": its heartbeat goes, as when a real cluster's key expires.
    key = Stat.get_key(sentinel.cluster_id)
    if isinstance(broker, RedisBroker):
        broker.connection.delete(key)  # the Redis broker keeps heartbeats in Redis itself
    else:
        broker.cache.delete(key)


def test_healthy_platform_answers_200(client, running_worker):
    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["failing"] == []
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["channel_layer"]["ok"] is True
    assert body["checks"]["task_broker"]["clusters"][0]["cluster"] == str(running_worker.cluster_id)


def test_no_worker_running_answers_503_naming_the_broker(client):
    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["task_broker"]
    assert "no worker" in body["checks"]["task_broker"]["error"]


@pytest.mark.parametrize(
    "backend",
    ["channels_redis.pubsub.RedisPubSubChannelLayer", "channels_redis.core.RedisChannelLayer"],
)
def test_redis_down_answers_503_naming_channel_layer_and_broker(
    client, settings, monkeypatch, running_worker, backend
):
    dead = "redis://127.0.0.1:1/0"
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": backend,
            "CONFIG": {"hosts": [dead]},
        }
    }
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", dead)

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert set(body["failing"]) == {"channel_layer", "task_broker"}
    assert body["checks"]["database"]["ok"] is True


def test_healthz_is_never_cached(client, running_worker):
    response = client.get("/healthz")
    assert "no-cache" in response["Cache-Control"]
