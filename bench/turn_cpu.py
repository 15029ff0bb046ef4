"""Benchmark (not a test): CPU time of one customer turn, in process, one at a time.

    .venv/bin/python bench/turn_cpu.py --turns 200 [--profile 30]

Loads the demo knowledge base into a fresh SQLite database (in a temporary folder),
then runs customer turns through the real pipeline exactly as the chat socket does
(``customer_message_receive`` with the turn claimed, then ``chat.turns``), with the
configured provider (default ``local``) and the Redis channel layer and cache, one turn
after another so that nothing else competes for the measurement. Reports the process CPU time
per turn (user + system, every thread: the database thread and the inference thread
included) and, as a baseline from the same run, the CPU time of storing a message alone
(no assistant). ``--profile FILE`` samples the measured turns with py-spy (collapsed
stacks; summarise with ``bench/profile_summary.py FILE``). ``--router`` also runs every
turn a second time with the intent router switched off (interleaved, one turn each), so
the difference of the two is what the router adds to a turn's CPU; ``--retriever-adapter
DIR`` does the same with a retriever adapter live and not. The JSON line last
holds the figures.

Process CPU time is used instead of wall time, so a busy machine barely changes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--profile", default="", metavar="FILE")
    parser.add_argument("--questions", default="chat/assistant/datasets/questions_dev.jsonl")
    parser.add_argument(
        "--router", action="store_true", help="also measure turns without the intent router"
    )
    parser.add_argument(
        "--retriever-adapter",
        default="",
        metavar="DIR",
        help="a retriever adapter folder: every turn runs twice, with it live and without "
        "(interleaved), so the difference is what the adapter adds to a turn's CPU",
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="loopdesk-turn-cpu-"))
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DJANGO_DEBUG": "false",
            "LOOPDESK_VAR_DIR": str(workdir),
            "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
            # The channel layer, cache (rate limits) and broker as in production and in
            # bench/chat_ws.py: Redis, with a fresh prefix.
            "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            "CHANNEL_LAYER_PREFIX": f"turn-cpu-{uuid.uuid4().hex[:6]}",
            "CACHE_KEY_PREFIX": f"turn-cpu-{uuid.uuid4().hex[:6]}",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "LOG_LEVEL": "WARNING",
            "CHAT_RATE_LIMIT_MESSAGES": "1000000/min",
        }
    )
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from chat import services, turns
    from chat.events import db
    from chat.models import Article, Conversation

    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    call_command("load_demo", verbosity=0)
    services.articles_embed(article_ids=list(Article.objects.values_list("pk", flat=True)))
    questions = [
        json.loads(line)["question"]
        for line in (ROOT / args.questions).read_text().splitlines()
        if line.strip()
    ]

    def store_only(conversation: Conversation, text: str) -> None:
        services.message_append(
            conversation=conversation, role="customer", text=text, client_id=uuid.uuid4().hex
        )

    async def store_only_socket(conversation: Conversation, text: str) -> str:
        await db(store_only)(conversation, text)
        return "stored"

    async def socket_turn(conversation: Conversation, text: str) -> str:
        # What the chat socket does: store through db() (events go out from the loop),
        # then run the claimed turn.
        received = await db(services.customer_message_receive)(
            conversation=conversation,
            text=text,
            client_id=uuid.uuid4().hex,
            author=None,
            rate_subject="bench",
            claim_owner=turns.process_owner(),
        )
        turn = await turns.turn_await(
            turn_id=received.turn.pk,
            conversation_id=conversation.pk,
            claimed=received.claimed,
            poll_seconds=0.001,
        )
        return turn.status

    new_conversation = db(Conversation.objects.create)

    async def measure(fn, label: str, count: int) -> list[float]:
        costs = []
        statuses: dict[str, int] = {}
        for i in range(count):
            conversation = await new_conversation(visitor_id=f"{label}{i}")
            text = questions[i % len(questions)]
            cpu = time.process_time()
            status = await fn(conversation, text)
            costs.append((time.process_time() - cpu) * 1000)
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        print(f"# {label}: {statuses}")
        return costs

    from chat.assistant import embeddings, providers

    router_on = {"value": True}
    routed_intent = providers.LocalProvider.intent

    async def intent_switchable(self, text):  # type: ignore[no-untyped-def]
        return await routed_intent(self, text) if router_on["value"] else None

    providers.LocalProvider.intent = intent_switchable  # type: ignore[method-assign]
    without_router: list[float] = []

    from chat.assistant.adapters import RETRIEVER, AdapterRef, adapter_resolver_register

    adapter_on = {"value": False}
    adapter = AdapterRef(name="bench", path=Path(args.retriever_adapter).resolve())

    def bench_resolver(*, kind: str, slot: str) -> AdapterRef | None:
        return adapter if kind == RETRIEVER and adapter_on["value"] else None

    if args.retriever_adapter:
        adapter_resolver_register(bench_resolver)
        settings.ASSISTANT_ADAPTER_REFRESH_SECONDS = 0
    without_adapter: list[float] = []

    async def paired_adapter(count: int) -> list[float]:
        """Each question twice, with and without the retriever adapter (alternating which
        goes first), the query vectors forgotten before each turn."""
        with_adapter: list[float] = []
        for i in range(count):
            text = questions[i % len(questions)]
            for on in (True, False) if i % 2 == 0 else (False, True):
                adapter_on["value"] = on
                conversation = await new_conversation(visitor_id=f"a{i}-{int(on)}")
                embeddings._recent.clear()
                cpu = time.process_time()
                await socket_turn(conversation, text)
                (with_adapter if on else without_adapter).append((time.process_time() - cpu) * 1000)
        adapter_on["value"] = False
        return with_adapter

    async def paired(count: int) -> list[float]:
        """Each question twice, with and without the router (alternating which goes
        first), the query vectors forgotten before each turn: a new message each time."""
        with_router: list[float] = []
        for i in range(count):
            text = questions[i % len(questions)]
            for on in (True, False) if i % 2 == 0 else (False, True):
                router_on["value"] = on
                conversation = await new_conversation(visitor_id=f"r{i}-{int(on)}")
                embeddings._recent.clear()
                cpu = time.process_time()
                await socket_turn(conversation, text)
                (with_router if on else without_router).append((time.process_time() - cpu) * 1000)
        router_on["value"] = True
        return with_router

    async def run_all() -> tuple[list[float], list[float]]:
        # One event loop for everything, as in a server process, warmed up like one (the
        # chat socket warms the assistant up when the first customer connects).
        from chat.assistant import assistant_warm_up

        await assistant_warm_up()
        await measure(socket_turn, "warm-up", 20)  # models loaded, caches filled
        if args.retriever_adapter:
            adapter_on["value"] = True  # the adapted encoder loaded, as after a deployment
            await measure(socket_turn, "warm-up with the adapter", 5)
            adapter_on["value"] = False
        baseline = await measure(store_only_socket, "store only", args.turns)
        if args.retriever_adapter:
            costs = await paired_adapter(args.turns)
        elif args.router:
            costs = await paired(args.turns)
        else:
            costs = await measure(socket_turn, "turn", args.turns)
        if args.profile:
            py_spy = str(Path(sys.executable).with_name("py-spy"))
            command = [py_spy, "record", "--format", "raw", "--rate", "500"]
            spy = subprocess.Popen(
                [*command, "-o", args.profile, "--pid", str(os.getpid())],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            await asyncio.sleep(1.0)
            await measure(socket_turn, "profiled turn", args.turns)
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        return baseline, costs

    baseline, costs = asyncio.run(run_all())
    result = {
        "bench": "turn_cpu",
        "provider": settings.ASSISTANT_PROVIDER,
        "turns": args.turns,
        "turn_cpu_ms_p50": round(statistics.median(costs), 2),
        "turn_cpu_ms_mean": round(statistics.fmean(costs), 2),
        "turn_cpu_ms_p90": round(sorted(costs)[int(len(costs) * 0.9)], 2),
        "store_only_cpu_ms_p50": round(statistics.median(baseline), 2),
    }
    if without_router:
        result["without_router_cpu_ms_p50"] = round(statistics.median(without_router), 2)
        result["router_added_cpu_ms_p50"] = round(
            statistics.median(costs) - statistics.median(without_router), 2
        )
        result["router_added_cpu_ms_median_of_pairs"] = round(
            statistics.median(a - b for a, b in zip(costs, without_router, strict=True)), 2
        )
    if without_adapter:
        result["without_adapter_cpu_ms_p50"] = round(statistics.median(without_adapter), 2)
        result["adapter_added_cpu_ms_p50"] = round(
            statistics.median(costs) - statistics.median(without_adapter), 2
        )
        result["adapter_added_share_p50"] = round(
            statistics.median(costs) / statistics.median(without_adapter) - 1, 4
        )
        result["adapter_added_cpu_ms_median_of_pairs"] = round(
            statistics.median(a - b for a, b in zip(costs, without_adapter, strict=True)), 2
        )
    print(
        f"turn CPU p50 {result['turn_cpu_ms_p50']} ms, mean {result['turn_cpu_ms_mean']} ms, "
        f"p90 {result['turn_cpu_ms_p90']} ms; storing a message alone "
        f"{result['store_only_cpu_ms_p50']} ms"
    )
    if without_router:
        print(
            f"without the router: p50 {result['without_router_cpu_ms_p50']} ms; the router "
            f"adds {result['router_added_cpu_ms_p50']} ms at p50 (median of the pairs' "
            f"differences {result['router_added_cpu_ms_median_of_pairs']} ms)"
        )
    if without_adapter:
        print(
            f"without the retriever adapter: p50 {result['without_adapter_cpu_ms_p50']} ms; "
            f"the adapter adds {result['adapter_added_cpu_ms_p50']} ms at p50 "
            f"({100 * result['adapter_added_share_p50']:.1f}%; median of the pairs' "
            f"differences {result['adapter_added_cpu_ms_median_of_pairs']} ms)"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
