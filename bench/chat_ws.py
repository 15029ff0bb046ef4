"""Benchmark (not a test): N concurrent WebSocket customers against Daphne with the Redis
channel layer, on this machine.

    .venv/bin/python bench/chat_ws.py --clients 20 --messages 5

Starts Daphne twice on free local ports: once with the real app (config.asgi, the
configured assistant provider, default the offline "local" one) and once with a bare
echo consumer on the same stack (bench/chat_echo_asgi.py) as the baseline. Each customer
connects, resumes, and sends its messages one after another (every ``--retry-every``-th
send is repeated with the same client_id, as a client retrying after a timeout would).
Prints messages/s, p50/p99 from send to the first assistant token and to the complete
answer, and lost / duplicated messages, checked on the sockets and in the database (both
must be 0). Uses SQLite in a temporary folder unless DATABASE_URL is set; REDIS_URL
defaults to redis://127.0.0.1:6379/0 (a fresh channel/cache prefix per run).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Customer:
    path: str
    cookie: str = ""
    sent: list[str] = field(default_factory=list)
    first_token_ms: list[float] = field(default_factory=list)
    complete_ms: list[float] = field(default_factory=list)
    seqs_seen: list[int] = field(default_factory=list)
    acks: dict[str, int] = field(default_factory=dict)
    answers: dict[int, int] = field(default_factory=dict)  # message id -> answers seen
    errors: list[str] = field(default_factory=list)
    unstreamed: int = 0  # answers that arrived without any delta before them
    # The turn handed the conversation to a person (e.g. the assistant could not answer
    # twice in a row): the customer stops there, as a real one would wait for the agent.
    handed_over: bool = False
    # A message whose answer never arrived before the timeout: the frames this socket
    # saw while waiting for it (printed at the end, counted as lost).
    stuck: list[list[str]] = field(default_factory=list)


async def run_customer(
    base_ws: str,
    customer: Customer,
    messages: int,
    retry_every: int,
    questions: list[str],
    timeout: float,
    think: tuple[float, float] | None = None,
) -> None:
    import random

    import websockets

    async with websockets.connect(
        base_ws + customer.path,
        origin=base_ws.replace("ws", "http", 1),
        additional_headers={"Cookie": customer.cookie},
        max_size=2**22,
    ) as ws:
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        while json.loads(await ws.recv())["type"] != "replay.done":
            pass
        for i in range(messages):
            if customer.handed_over:
                break
            if think is not None:
                # A customer reads and types before each message (the first one too, so
                # arrivals are spread rather than one burst at the start).
                await asyncio.sleep(random.uniform(*think))
            client_id = uuid.uuid4().hex
            text = questions[i % len(questions)]
            started = time.perf_counter()
            await ws.send(json.dumps({"type": "message", "client_id": client_id, "text": text}))
            if retry_every and (i + 1) % retry_every == 0:
                await ws.send(json.dumps({"type": "message", "client_id": client_id, "text": text}))
            customer.sent.append(client_id)
            message_id = None
            first = None
            deadline = time.monotonic() + timeout
            seen: list[str] = []
            while True:
                try:
                    raw = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
                except TimeoutError:
                    customer.stuck.append([f"client_id={client_id} message_id={message_id}", *seen])
                    return
                frame = json.loads(raw)
                kind = frame["type"]
                seen.append(raw if len(raw) < 200 else raw[:200] + "...")
                if kind == "conversation.state" and frame.get("handling") != "assistant":
                    customer.handed_over = True
                if kind == "ack" and frame["client_id"] == client_id:
                    message_id = frame["message_id"]
                    customer.acks[client_id] = message_id
                elif kind == "error":
                    customer.errors.append(frame["code"])
                    if frame.get("client_id") == client_id and message_id is None:
                        # Refused (never stored): counted lost, the customer gives up.
                        customer.stuck.append([f"client_id={client_id} refused", *seen])
                        return
                elif (
                    kind == "assistant.delta"
                    and frame["reply_to_id"] == message_id
                    and first is None
                ):
                    first = time.perf_counter()
                elif kind == "message":
                    m = frame["message"]
                    customer.seqs_seen.append(m["seq"])
                    if m["role"] in ("assistant", "system") and m.get("reply_to_id") == message_id:
                        customer.answers[message_id] = customer.answers.get(message_id, 0) + 1
                        done = time.perf_counter()
                        if first is None and m["role"] == "assistant":
                            customer.unstreamed += 1
                        customer.first_token_ms.append(((first or done) - started) * 1000)
                        customer.complete_ms.append((done - started) * 1000)
                        break
        # Anything still in flight (e.g. a late duplicate) shows up within a short grace.
        try:
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 0.3))
                if frame["type"] == "message":
                    customer.seqs_seen.append(frame["message"]["seq"])
                    rid = frame["message"].get("reply_to_id")
                    if rid in customer.answers:
                        customer.answers[rid] += 1
        except TimeoutError:
            pass


def profile_start(pid: int, path: str, gil: bool = False) -> subprocess.Popen:
    """Sample the server with py-spy (collapsed stacks, for flamegraph.pl, speedscope or
    bench/profile_summary.py) until ``profile_stop``: the measured round only, not the
    start-up and warm-up."""
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    command = [py_spy, "record", "--format", "raw", "--rate", "200", "-o", path]
    if gil:  # only the thread holding the GIL: where one process's Python time goes
        command.append("--gil")
    return subprocess.Popen(
        [*command, "--pid", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def profile_stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    process.wait(timeout=60)


def server_cpu_seconds(pids: list[int]) -> float:
    """CPU seconds (user + system, all threads) the server processes have used so far."""
    import psutil

    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)


class ConnectionWatcher(threading.Thread):
    """Samples how many database connections the server processes hold during the round
    (all of them together): their sockets to PostgreSQL's port, or their open SQLite
    file handles."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids, self.peak, self._stop_event = pids, 0, threading.Event()

    def count(self) -> int:
        import psutil

        total = 0
        for pid in self.pids:
            process = psutil.Process(pid)
            if "postgres" in os.environ.get("DATABASE_URL", ""):
                total += sum(
                    1
                    for c in process.net_connections(kind="tcp")
                    if c.raddr and c.raddr.port == 5432
                )
            else:
                total += sum(1 for f in process.open_files() if f.path.endswith(".sqlite3"))
        return total

    def run(self) -> None:
        while not self._stop_event.wait(0.25):
            try:
                self.peak = max(self.peak, self.count())
            except Exception:  # the process may be going away
                return

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def start_daphne(
    app: str, port: int, env: dict[str, str], log: Path, processes: int = 1
) -> tuple[list[subprocess.Popen], list[int]]:
    """``processes`` Daphne processes serving ``app`` on ``port``, as a process manager
    runs them in production (``daphne --fd``: circus, supervisor, systemd sockets): one
    listening socket per process with SO_REUSEPORT, so the kernel spreads connections
    evenly; they share the Redis layer. Each process also listens on a port of its own
    (returned), so the warm-up can reach every one of them. Returns once all answer."""
    started, own_ports, listeners = [], [], []
    for i in range(processes):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(1024)
        listeners.append(listener)
        own = free_port()
        own_ports.append(own)
        started.append(
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "daphne", "--fd", str(listener.fileno())),
                    *("-e", f"tcp:port={own}:interface=127.0.0.1", app),
                ],
                cwd=ROOT,
                env=env,
                stdout=(log.with_suffix(f".{i}.log") if processes > 1 else log).open("w"),
                stderr=subprocess.STDOUT,
                pass_fds=(listener.fileno(),),
            )
        )
    for listener in listeners:
        listener.close()  # the children hold them
    for own in own_ports:
        for _ in range(300):
            try:
                with socket.create_connection(("127.0.0.1", own), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            for process in started:
                process.terminate()
            raise RuntimeError(f"daphne did not start, see {log}")
    return started, own_ports


async def run_round(base_ws: str, customers: list[Customer], args, questions) -> float:
    started = time.perf_counter()
    await asyncio.gather(
        *(
            run_customer(
                base_ws,
                c,
                args.messages,
                args.retry_every,
                questions,
                args.timeout,
                getattr(args, "think", None),
            )
            for c in customers
        )
    )
    return time.perf_counter() - started


def summarise(
    name: str,
    customers: list[Customer],
    wall: float,
    db_check: dict | None,
    think: tuple[float, float] | None = None,
) -> dict:
    first = [v for c in customers for v in c.first_token_ms]
    complete = [v for c in customers for v in c.complete_ms]
    sent = sum(len(c.sent) for c in customers)
    answered = sum(len(c.answers) for c in customers)
    lost = sent - sum(len(c.acks) for c in customers) + (sent - answered)
    duplicated = sum(len(c.seqs_seen) - len(set(c.seqs_seen)) for c in customers) + sum(
        n - 1 for c in customers for n in c.answers.values() if n > 1
    )
    if db_check:
        lost += db_check["lost"]
        duplicated += db_check["duplicated"]
    return {
        "stack": name,
        "customers": len(customers),
        "messages": sent,
        "wall_s": round(wall, 2),
        "messages_per_s": round(answered / wall, 1),
        "think_s": list(think) if think else None,
        "first_token_p50_ms": round(percentile(first, 50), 1),
        "first_token_p99_ms": round(percentile(first, 99), 1),
        "complete_p50_ms": round(percentile(complete, 50), 1),
        "complete_p99_ms": round(percentile(complete, 99), 1),
        "lost": lost,
        "duplicated": duplicated,
        "answers_without_stream": sum(c.unstreamed for c in customers),
        "customers_handed_to_a_person": sum(c.handed_over for c in customers),
        "errors": sorted({e for c in customers for e in c.errors}),
    }


def think_range(value: str) -> tuple[float, float]:
    low, _, high = value.partition("-")
    bounds = (float(low), float(high or low))
    if not 0 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError("MIN-MAX with 0 <= MIN <= MAX, e.g. 3-10")
    return bounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--messages", type=int, default=5, help="per customer")
    parser.add_argument(
        "--retry-every",
        type=int,
        default=3,
        help="re-send every k-th message with the same client_id (0: never)",
    )
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument(
        "--think",
        type=think_range,
        default=None,
        metavar="MIN-MAX",
        help="seconds a customer pauses before each message, uniformly random (default: "
        "no pause, the saturation case)",
    )
    parser.add_argument("--skip-echo", action="store_true")
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="Daphne processes per stack on one listening socket (chat and echo alike); "
        "default: what scripts/run starts with the benchmark's Redis (WEB_PROCESSES: one per "
        "core, so 1 on one core)",
    )
    parser.add_argument(
        "--profile", default="", help="write py-spy collapsed stacks of the chat server here"
    )
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="with --profile: sample only the thread holding the GIL (py-spy --gil)",
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="loopdesk-bench-"))
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DJANGO_DEBUG": "false",
        "LOOPDESK_VAR_DIR": str(workdir),
        "DATABASE_URL": os.environ.get("DATABASE_URL", f"sqlite:///{workdir / 'bench.sqlite3'}"),
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "CHANNEL_LAYER_PREFIX": prefix,
        "CACHE_KEY_PREFIX": prefix,
        "CHAT_RATE_LIMIT_MESSAGES": "1000000/min",
        "CHAT_RATE_LIMIT_CONVERSATIONS": "1000000/min",
        # Every simulated customer comes from 127.0.0.1: lift the per-address limits too.
        "CHAT_RATE_LIMIT_MESSAGES_PER_ADDRESS": "1000000/min",
        "CHAT_RATE_LIMIT_CONVERSATIONS_PER_ADDRESS": "1000000/min",
        "ASSISTANT_TIMEOUT_SECONDS": str(args.timeout),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from chat.models import Article, Conversation, Message
    from chat.services import article_embed
    from chat.visitors import VISITOR_COOKIE, visitor_token_issue

    if args.processes is None:
        args.processes = settings.WEB_PROCESSES
    print(
        f"# database {settings.DATABASES['default']['ENGINE']}, channel layer "
        f"{settings.CHANNEL_LAYERS['default']['BACKEND']}, provider {settings.ASSISTANT_PROVIDER}"
        f", {args.processes} Daphne process(es) per stack"
    )
    call_command("migrate", verbosity=0)
    call_command("load_demo", verbosity=0)
    for article in Article.objects.filter(embedding__isnull=True):
        article_embed(article_id=article.pk)
    # Neutral questions only: an upset customer is (rightly) handed to a person, and the
    # assistant then stays silent in that conversation.
    demo = json.loads((ROOT / "chat/demo/questions.json").read_text())
    questions = [q["question"] for q in demo if q.get("tone") == "neutral"]

    customers = []
    for _ in range(args.clients):
        visitor_id, token = visitor_token_issue()
        conversation = Conversation.objects.create(visitor_id=visitor_id, title="bench")
        customers.append(
            Customer(path=f"/ws/chat/{conversation.pk}/", cookie=f"{VISITOR_COOKIE}={token}")
        )
    # Warm-up conversations: a few per server process, so that each process has loaded
    # its models before the measured round (the kernel spreads the connections).
    warm_customers = []
    for _ in range(3 * args.processes):
        warm_visitor, warm_token = visitor_token_issue()
        warm = Conversation.objects.create(visitor_id=warm_visitor, title="warm-up")
        warm_customers.append(
            Customer(path=f"/ws/chat/{warm.pk}/", cookie=f"{VISITOR_COOKIE}={warm_token}")
        )

    # This process loaded Django, the demo data and MiniLM (to embed the articles): a
    # full collection of that heap takes 0.3-0.4 s, a pause of every simulated customer
    # at once, in whichever round it falls. Nothing of it is garbage: keep the collector
    # off it, as the server does after its warm-up.
    gc.collect()
    gc.freeze()
    results = []
    port = free_port()
    servers, own_ports = start_daphne(
        "config.asgi:application", port, env, workdir / "daphne-chat.log", args.processes
    )
    pids = [server.pid for server in servers]
    try:
        base = f"ws://127.0.0.1:{port}"
        # Warm-up: the first questions load the models in every server process.
        for i, own in enumerate(own_ports):
            asyncio.run(
                run_round(
                    f"ws://127.0.0.1:{own}",
                    warm_customers[3 * i : 3 * i + 3],
                    argparse.Namespace(messages=1, retry_every=0, timeout=args.timeout),
                    questions,
                )
            )
        profiler = (
            profile_start(pids[0], args.profile, gil=args.profile_gil) if args.profile else None
        )
        if profiler is not None:
            time.sleep(1.0)  # py-spy attaches
        cpu_before = server_cpu_seconds(pids)
        watcher = ConnectionWatcher(pids)
        watcher.start()
        wall = asyncio.run(run_round(base, customers, args, questions))
        watcher.stop()
        server_cpu = server_cpu_seconds(pids) - cpu_before
        if profiler is not None:
            profile_stop(profiler)
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=10)
    # The database view: every sent client_id stored once, each answered exactly once.
    ids = [cid for c in customers for cid in c.sent]
    stored = Message.objects.filter(client_id__in=ids, role="customer")
    stored_ids = list(stored.values_list("client_id", flat=True))
    replies = Message.objects.filter(reply_to__in=stored, visibility="public")
    reply_counts = {}
    for reply_to in replies.values_list("reply_to_id", flat=True):
        reply_counts[reply_to] = reply_counts.get(reply_to, 0) + 1
    db_check = {
        "lost": len(set(ids) - set(stored_ids)) + (len(stored_ids) - len(reply_counts)),
        "duplicated": len(stored_ids)
        - len(set(stored_ids))
        + sum(n - 1 for n in reply_counts.values()),
    }
    results.append(summarise("chat (assistant)", customers, wall, db_check, args.think))
    results[-1]["server_cpu_ms_per_message"] = round(
        server_cpu * 1000 / max(1, results[-1]["messages"]), 2
    )
    results[-1]["server_cpu_share"] = round(server_cpu / wall, 2)
    results[-1]["db_connections_max"] = watcher.peak
    results[-1]["processes"] = args.processes

    if not args.skip_echo:
        port = free_port()
        echoes, _ = start_daphne(
            "bench.chat_echo_asgi:application",
            port,
            env,
            workdir / "daphne-echo.log",
            args.processes,
        )
        echo_pids = [echo.pid for echo in echoes]
        try:
            echo_customers = [
                Customer(path=f"/ws/echo/{uuid.uuid4().hex}/") for _ in range(args.clients)
            ]
            cpu_before = server_cpu_seconds(echo_pids)
            wall = asyncio.run(run_round(f"ws://127.0.0.1:{port}", echo_customers, args, questions))
            server_cpu = server_cpu_seconds(echo_pids) - cpu_before
        finally:
            for echo in echoes:
                echo.terminate()
            for echo in echoes:
                echo.wait(timeout=10)
        results.append(summarise("echo baseline", echo_customers, wall, None, args.think))
        results[-1]["server_cpu_ms_per_message"] = round(
            server_cpu * 1000 / max(1, results[-1]["messages"]), 2
        )
        results[-1]["server_cpu_share"] = round(server_cpu / wall, 2)
        results[-1]["processes"] = args.processes

    for c in customers:
        for frames in c.stuck[:3]:
            print("# no answer before the timeout:", c.path, *frames, sep="\n#   ")
    keys = list(results[0])
    print(" | ".join(keys))
    for row in results:
        print(" | ".join(str(row.get(k, "")) for k in keys))
    print(f"# logs in {workdir}")
    print(json.dumps(results))  # the JSON line comes last


if __name__ == "__main__":
    main()
