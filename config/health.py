"""`GET /healthz`: is every part the platform needs answering?

Each check returns a small dict with ``ok``; the view answers 200 when all are ok and
503 naming the failing parts otherwise. Checks are bounded by short timeouts so a dead
Redis makes the endpoint answer 503 quickly instead of hanging a load balancer probe.
"""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

CHECK_TIMEOUT_SECONDS = 2.0


def check_database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True, "vendor": connection.vendor}


async def _channel_round_trip() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    channel = await layer.new_channel("healthz.")

    async def ping() -> None:
        # On the Pub/Sub layer the SUBSCRIBE behind ``new_channel`` is not acknowledged:
        # a PUBLISH on the other connection can overtake it and reach nobody. Pinging
        # again until one comes back covers that (a list-based layer keeps the first).
        while True:
            await layer.send(channel, {"type": "healthz.ping"})
            await asyncio.sleep(0.2)

    pinger = asyncio.ensure_future(ping())
    receiver = asyncio.ensure_future(layer.receive(channel))
    try:
        await asyncio.wait({pinger, receiver}, return_when=asyncio.FIRST_COMPLETED)
        if pinger.done():
            pinger.result()  # a send failed: report why
        message = receiver.result()
    finally:
        pinger.cancel()
        receiver.cancel()
    if message.get("type") != "healthz.ping":
        raise RuntimeError("channel layer returned a different message")


def check_channel_layer() -> dict[str, Any]:
    backend = str(settings.CHANNEL_LAYERS["default"]["BACKEND"]).rsplit(".", 1)[-1]

    async def bounded() -> None:
        await asyncio.wait_for(_channel_round_trip(), CHECK_TIMEOUT_SECONDS)

    try:
        async_to_sync(bounded)()
    except Exception as exc:
        return {"ok": False, "backend": backend, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True, "backend": backend}


def check_task_broker() -> dict[str, Any]:
    """The broker answers and at least one django-q2 cluster is alive.

    A running cluster refreshes its status in the cache every few seconds with a
    3-second expiry, so a cluster that died drops out of ``Stat.get_all`` on its own.
    """
    from django_q.brokers import get_broker
    from django_q.conf import Conf
    from django_q.status import Stat

    try:
        broker = get_broker()
        if broker.ping() is False:
            raise RuntimeError("broker did not answer ping")
        stats = Stat.get_all(broker=broker)
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    clusters = [
        {
            "cluster": str(stat.cluster_id),
            "status": stat.status,
            "workers": len(getattr(stat, "workers", []) or []),
            "uptime_seconds": round(stat.uptime(), 1),
        }
        for stat in stats
        if stat.status != Conf.STOPPED
    ]
    broker_name = type(broker).__name__
    if not clusters:
        return {"ok": False, "broker": broker_name, "error": "no worker cluster is running"}
    return {"ok": True, "broker": broker_name, "clusters": clusters}


CHECKS = {
    "database": check_database,
    "channel_layer": check_channel_layer,
    "task_broker": check_task_broker,
}


def health_report() -> dict[str, Any]:
    results = {name: check() for name, check in CHECKS.items()}
    failing = [name for name, result in results.items() if not result["ok"]]
    return {"status": "ok" if not failing else "error", "failing": failing, "checks": results}


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    report = health_report()
    return JsonResponse(report, status=200 if not report["failing"] else 503)
