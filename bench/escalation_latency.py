"""Escalation latency and takeover race against a real Daphne with Postgres + Redis.

Not a test. Starts Daphne on 127.0.0.1:8103 (the escalation engineer's port) with the
Redis channel layer, opens agent inbox sockets, then has customers send a clearly
negative message over their chat socket. Measures the time from the customer's send to
the ticket frame arriving on the agents' open inbox sockets (p50/p99), one customer at
a time and in bursts. Then races many agents for the same ticket through the API,
round after round, and counts the owners.

Use a Redis database of its own: the test suite's cache fixture clears (FLUSHDB) the
Redis database of every concurrent test run, channel-layer groups included.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loopdesk_escalation_bench \\
    REDIS_URL=redis://127.0.0.1:6379/9 .venv/bin/python bench/escalation_latency.py \\
        [--agents 5] [--sequential 30] [--bursts 5] [--burst-size 20] \\
        [--racers 20] [--races 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DJANGO_DEBUG", "false")
os.environ.setdefault("CHANNEL_LAYER_PREFIX", f"bench-{uuid.uuid4().hex[:6]}")
# Bursts of customers must not hit the chat's per-subject rate limits or a slow first turn.
os.environ.setdefault("CHAT_RATE_LIMIT_MESSAGES", "100000/min")
os.environ.setdefault("CHAT_RATE_LIMIT_CONVERSATIONS", "100000/hour")
os.environ.setdefault("CHAT_RATE_LIMIT_MESSAGES_PER_ADDRESS", "100000/min")
os.environ.setdefault("CHAT_RATE_LIMIT_CONVERSATIONS_PER_ADDRESS", "100000/hour")
os.environ.setdefault("ASSISTANT_TIMEOUT_SECONDS", "120")
# Daphne's thread pool must not pin one Postgres connection per thread on a shared server.
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "0")

PORT = 8103
BASE = f"http://127.0.0.1:{PORT}"
WS = f"ws://127.0.0.1:{PORT}"
ANGRY = "This is absolutely terrible, I am furious and your service is useless!"


def setup_django() -> None:
    import django

    django.setup()
    from django.conf import settings

    if not os.environ.get("REDIS_URL") or "postgres" not in os.environ.get("DATABASE_URL", ""):
        sys.exit("Set DATABASE_URL (Postgres) and REDIS_URL: this measures the real services.")
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"].startswith("channels_redis")


def prepare_database() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    call_command("sync_roles", verbosity=0)


def make_users(prefix: str, count: int, role: str) -> list:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from config import roles

    user_model = get_user_model()
    group = Group.objects.get(name=roles.ROLES[role].group)
    users = []
    for i in range(count):
        user, _ = user_model.objects.get_or_create(
            username=f"{prefix}{i}",
            defaults={"first_name": prefix.title(), "last_name": str(i), "is_staff": True},
        )
        user.groups.add(group)
        users.append(user)
    return users


def session_cookie(user) -> str:
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    # As a real sign-in records it: the backend that authenticates (django-axes' backend,
    # first in the list, only counts failures and loads no users).
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return f"sessionid={session.session_key}"


def start_daphne(processes: int = 1) -> list[subprocess.Popen]:
    """``processes`` Daphne processes on PORT (one SO_REUSEPORT socket each, handed over
    with ``--fd`` as a process manager does), sharing Postgres and the Redis layer."""
    import socket

    log = (ROOT / "var" / "escalation_bench_daphne.log").open("w")
    started = []
    for _ in range(processes):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(("127.0.0.1", PORT))
        listener.listen(1024)
        started.append(
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "daphne"),
                    *("--fd", str(listener.fileno()), "config.asgi:application"),
                ],
                cwd=ROOT,
                env=os.environ.copy(),
                stdout=subprocess.DEVNULL,
                stderr=log,
                pass_fds=(listener.fileno(),),
            )
        )
        listener.close()
    for _ in range(120):
        try:
            urllib.request.urlopen(BASE + "/healthz", timeout=1)  # noqa: S310
            return started
        except urllib.error.HTTPError:
            return started  # serving (503 only says no task worker runs: none is needed)
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    for process in started:
        process.terminate()
    sys.exit("Daphne did not start")


def pct(values: list[float], q: float) -> float:
    if not values:  # e.g. --bursts 0
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class Inboxes:
    """Agents' open inbox sockets; records when each ticket frame arrives on each."""

    def __init__(self, cookies: list[str]):
        self.cookies = cookies
        self.arrivals: dict[str, list[float]] = {}
        self.wall_arrivals: dict[str, float] = {}
        self.sockets: list = []
        self.tasks: list[asyncio.Task] = []

    async def open(self) -> None:
        import websockets

        for cookie in self.cookies:
            ws = await websockets.connect(
                WS + "/ws/agent/inbox/",
                additional_headers={"Cookie": cookie, "Origin": BASE},
            )
            snapshot = json.loads(await ws.recv())
            assert snapshot["type"] == "inbox.snapshot", snapshot
            self.sockets.append(ws)
            self.tasks.append(asyncio.create_task(self._listen(ws)))

    async def _listen(self, ws) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            if frame.get("type") == "ticket" and frame.get("change") == "created":
                conversation_id = frame["ticket"]["conversation_id"]
                self.arrivals.setdefault(conversation_id, []).append(time.perf_counter())
                self.wall_arrivals.setdefault(conversation_id, time.time())

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for ws in self.sockets:
            await ws.close()


def new_conversations(customers: list) -> list[tuple[str, str]]:
    from chat.services import conversation_start

    out = []
    for customer in customers:
        conversation = conversation_start(
            customer=customer, visitor_id="", rate_subject=f"bench:{customer.pk}:{uuid.uuid4()}"
        )
        out.append((str(conversation.pk), session_cookie(customer)))
    return out


async def customer_sends(conversation_id: str, cookie: str, button: bool = False) -> float:
    import websockets

    async with websockets.connect(
        f"{WS}/ws/chat/{conversation_id}/",
        additional_headers={"Cookie": cookie, "Origin": BASE},
    ) as ws:
        await ws.recv()  # conversation.state
        sent = time.perf_counter()
        if button:  # "Talk to a person": no assistant work in front of the escalation
            await ws.send(json.dumps({"type": "request_human"}))
        else:
            await ws.send(
                json.dumps({"type": "message", "text": ANGRY, "client_id": uuid.uuid4().hex})
            )
        while True:  # keep the socket open until the escalation notice arrives
            frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=600))
            if frame.get("type") == "message" and frame["message"]["role"] == "system":
                return sent


def handoff_time(conversation_id: str) -> float:
    from escalation.models import Ticket

    return Ticket.objects.get(conversation_id=conversation_id).handoff_at.timestamp()


async def warm_up(conversation_id: str, cookie: str) -> None:
    import websockets

    from chat.models import Message

    async with websockets.connect(
        f"{WS}/ws/chat/{conversation_id}/",
        additional_headers={"Cookie": cookie, "Origin": BASE},
    ) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "message", "text": ANGRY, "client_id": "warm-up"}))
    for _ in range(600):  # the turn runs on in the server after the socket closed
        done = await asyncio.to_thread(
            lambda: Message.objects.filter(
                conversation_id=conversation_id, role=Message.Role.SYSTEM
            ).exists()
        )
        if done:
            return
        await asyncio.sleep(0.5)
    raise RuntimeError("the warm-up turn never finished")


async def wait_for(inboxes: Inboxes, conversation_id: str, agents: int) -> None:
    for _ in range(3000):
        if len(inboxes.arrivals.get(conversation_id, [])) >= agents:
            return
        await asyncio.sleep(0.01)
    raise RuntimeError(f"ticket for {conversation_id} never reached every inbox")


async def latency(args, agents_cookies, customers) -> dict:
    # Warm-up before any agent socket opens: the first turn loads the embedding model and
    # can keep the server busy long enough for idle sockets to miss their pings.
    # (a few per server process: the kernel spreads the connections over them)
    warm = await asyncio.to_thread(new_conversations, customers[: 3 * args.processes])
    await asyncio.gather(*(warm_up(warm_id, warm_cookie) for warm_id, warm_cookie in warm))
    inboxes = Inboxes(agents_cookies)
    await inboxes.open()

    results = {}
    for label, rounds, size, button in (
        ("negative message, one at a time", args.sequential, 1, False),
        (f"negative message, bursts of {args.burst_size}", args.bursts, args.burst_size, False),
        ("button, one at a time", args.sequential, 1, True),
        (f"button, bursts of {args.burst_size}", args.bursts, args.burst_size, True),
    ):
        first, every, from_handoff = [], [], []
        print(f"{label}: {rounds} round(s) of {size}", file=sys.stderr, flush=True)
        for _ in range(rounds):
            batch = await asyncio.to_thread(new_conversations, customers[:size])
            sent_at = await asyncio.gather(*(customer_sends(cid, ck, button) for cid, ck in batch))
            for (cid, _), sent in zip(batch, sent_at, strict=True):
                await wait_for(inboxes, cid, len(agents_cookies))
                times = [(t - sent) * 1000 for t in inboxes.arrivals[cid]]
                first.append(min(times))
                every.extend(times)
                handoff = await asyncio.to_thread(handoff_time, cid)
                from_handoff.append((inboxes.wall_arrivals[cid] - handoff) * 1000)
        results[label] = {
            "tickets": len(first),
            "first_inbox_ms": {
                "p50": pct(first, 50),
                "p99": pct(first, 99),
                "mean": statistics.mean(first),
            },
            "every_inbox_ms": {"p50": pct(every, 50), "p99": pct(every, 99), "max": max(every)},
            "handoff_to_first_inbox_ms": {
                "p50": pct(from_handoff, 50),
                "p99": pct(from_handoff, 99),
            },
        }
    await inboxes.close()
    return results


def race(args, racers: list, customer) -> dict:
    from knox.models import AuthToken

    from chat.services import conversation_start
    from escalation.services import escalation_open

    tokens = [AuthToken.objects.create(user=agent)[1] for agent in racers]
    exactly_one = 0
    more_than_one = 0
    no_owner = 0
    histogram: dict[int, int] = {}
    for _ in range(args.races):
        conversation = conversation_start(
            customer=customer, visitor_id="", rate_subject=f"race:{uuid.uuid4()}"
        )
        ticket, _ = escalation_open(conversation=conversation, reason="human_request")
        barrier = threading.Barrier(len(tokens))
        statuses: list[int] = []

        def claim(
            token: str, ticket_id: int = ticket.pk, barrier=barrier, statuses=statuses
        ) -> None:
            request = urllib.request.Request(  # noqa: S310
                f"{BASE}/api/escalation/tickets/{ticket_id}/claim/",
                method="POST",
                data=b"",
                headers={"Authorization": f"Token {token}"},
            )
            barrier.wait()
            try:
                with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                    statuses.append(response.status)
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)

        threads = [threading.Thread(target=claim, args=(t,)) for t in tokens]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ticket.refresh_from_db()
        owners = statuses.count(200)
        markers = conversation.messages.filter(marker="human_start").count()
        # Judged on the database: a 5xx (e.g. Postgres out of connections) is a failed
        # request, not a second owner.
        if markers == 1 and ticket.assigned_agent_id is not None and owners <= 1:
            exactly_one += 1
        elif markers == 0 and ticket.assigned_agent_id is None:
            no_owner += 1
        if owners > 1 or markers > 1:
            more_than_one += 1
        for code in statuses:
            histogram[code] = histogram.get(code, 0) + 1
    return {
        "racers": len(tokens),
        "rounds": args.races,
        "rounds_with_exactly_one_owner": exactly_one,
        "rounds_with_more_than_one_owner": more_than_one,
        "rounds_with_no_owner": no_owner,
        "responses_by_status": {str(k): v for k, v in sorted(histogram.items())},
    }


def main() -> None:
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid> prints where a run hangs
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so Daphne is stopped too
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=5)
    parser.add_argument("--sequential", type=int, default=30)
    parser.add_argument("--bursts", type=int, default=5)
    parser.add_argument("--burst-size", type=int, default=20)
    parser.add_argument("--racers", type=int, default=20)
    parser.add_argument("--races", type=int, default=50)
    parser.add_argument("--race-only", action="store_true")
    parser.add_argument("--processes", type=int, default=1, help="Daphne processes on the port")
    args = parser.parse_args()
    setup_django()
    prepare_database()
    from config import roles

    agents = make_users("benchagent", max(args.agents, args.racers), roles.AGENTS)
    customers = make_users("benchcustomer", max(1, args.burst_size), roles.CUSTOMERS)
    from escalation.services import agent_presence_set

    for agent in agents[: args.agents]:
        agent_presence_set(agent=agent, on_duty=True)
    servers = start_daphne(args.processes)
    try:
        cookies = [session_cookie(agent) for agent in agents[: args.agents]]
        report = {
            "setup": {
                "agents_listening": args.agents,
                "channel_layer": "redis",
                "db": "postgres",
                "processes": args.processes,
            },
            "latency": None if args.race_only else asyncio.run(latency(args, cookies, customers)),
            "takeover_race": race(args, agents[: args.racers], customers[0]),
        }
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=20)
    report = rounded(report)
    for name, figures in (report["latency"] or {}).items():
        inbox = figures.get("first_inbox_ms", {})
        p50, p99 = inbox.get("p50"), inbox.get("p99")
        print(f"{name}: send -> ticket in an inbox p50 {p50} ms, p99 {p99} ms")
    race_report = report["takeover_race"]
    print(
        f"takeover race: {race_report['rounds_with_exactly_one_owner']} of "
        f"{race_report['rounds']} rounds with exactly one owner"
    )
    print(json.dumps(report))


def rounded(value):
    if isinstance(value, float):
        return round(value, 1)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


if __name__ == "__main__":
    main()
