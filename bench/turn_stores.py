"""Benchmark (not a test): CPU of the database work of one answered customer turn, in
process, on the calling thread, split by step.

    .venv/bin/python bench/turn_stores.py --turns 300 [--rounds 3] [--messages 4]

Loads the demo knowledge base into a fresh SQLite database (or ``DATABASE_URL``), runs
the assistant once per question to get real signals and answers (``questions.json``'s
neutral questions, 4 by default, as the saturation benchmark's customers ask them), then
for each turn of a new conversation (``--messages N``: N turns per conversation, as a
customer asks them one after another) times, with ``time.process_time``:

- **receive**: ``customer_message_receive`` (rate limit, message, turn opened and
  claimed; Redis as in production);
- **review**: the registered reviewer's ``review`` (the escalation rules);
- **store**: ``turn_answer_store`` (the decision's audit row, the answer, the turn).

The baseline from the same run is ``message_append`` alone (a message stored, nothing
else). Events are collected as the database threads collect them and not sent. Prints
the medians per round and a JSON line last.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=300, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--questions", type=int, default=4)
    parser.add_argument(
        "--messages",
        type=int,
        default=1,
        help="turns per conversation (the saturation benchmark's customers send 4): "
        "from the second on, a turn reads the history and the earlier turns",
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="loopdesk-turn-stores-"))
    prefix = f"turn-stores-{uuid.uuid4().hex[:6]}"
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DJANGO_DEBUG": "false",
            "LOOPDESK_VAR_DIR": str(workdir),
            "DATABASE_URL": os.environ.get(
                "DATABASE_URL", f"sqlite:///{workdir / 'bench.sqlite3'}"
            ),
            "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            "CHANNEL_LAYER_PREFIX": prefix,
            "CACHE_KEY_PREFIX": prefix,
            "CHAT_RATE_LIMIT_MESSAGES": "1000000/min",
            "CHAT_RATE_LIMIT_MESSAGES_PER_ADDRESS": "1000000/min",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "LOG_LEVEL": "WARNING",
        }
    )
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from chat import assistant, services, turns
    from chat.events import _outbox
    from chat.models import Article, Conversation, Turn
    from chat.review import reviewer_current
    from chat.services.turns import turn_answer_store

    call_command("migrate", verbosity=0)
    call_command("load_demo", verbosity=0)
    services.articles_embed(article_ids=list(Article.objects.values_list("pk", flat=True)))
    demo = json.loads((ROOT / "chat/demo/questions.json").read_text())
    questions = [q["question"] for q in demo if q.get("tone") == "neutral"][: args.questions]

    async def answers() -> list[tuple]:
        out = []
        for question in questions:
            prepared = await assistant.assistant_prepare(
                question=question, history=[], adapter_name=""
            )
            deltas, info = assistant.assistant_stream(
                question=question, history=[], prepared=prepared, adapter_name="", route="answer"
            )
            out.append((prepared, info, "".join([d async for d in deltas])))
        return out

    prepared_answers = asyncio.run(answers())
    owner = turns.process_owner()
    takes_turn = "turn" in inspect.signature(turn_answer_store).parameters

    conversations: dict[int, Conversation] = {}

    def turn(i: int, costs: dict[str, list[float]]) -> None:
        _outbox.set([])  # as on a database thread: events collected, sent by the caller
        key = i // args.messages if i >= 0 else i
        conversation = conversations.pop(key, None) or Conversation.objects.create(
            visitor_id=f"bench-{key}"
        )
        conversations[key] = conversation
        question = questions[i % len(questions)]
        prepared, info, text = prepared_answers[i % len(questions)]
        start = time.process_time()
        received = services.customer_message_receive(
            conversation=conversation,
            text=question,
            client_id=uuid.uuid4().hex,
            author=None,
            rate_subject="bench",
            claim_owner=owner,
        )
        received_at = time.process_time()
        claimed = received.claimed
        verdict = reviewer_current().review(claimed.facts(prepared))
        reviewed_at = time.process_time()
        stored = turn_answer_store(
            # Commits before 6656b00 took the turn's id: runs there too, for an A/B.
            **({"turn": claimed.turn} if takes_turn else {"turn_id": claimed.turn.pk}),
            owner=owner,
            prepared=prepared,
            verdict=verdict,
            text=text,
            info=info,
            first_token_ms=1,
            stream_id="bench",
        )
        stored_at = time.process_time()
        if stored is None or stored.turn.status != Turn.Status.ANSWERED:
            raise SystemExit(f"turn {i} was not answered: {stored}")
        costs["receive"].append((received_at - start) * 1000)
        costs["review"].append((reviewed_at - received_at) * 1000)
        costs["store"].append((stored_at - reviewed_at) * 1000)

        _outbox.set([])
        other = Conversation.objects.create(visitor_id=f"bench-alone-{i}")
        start = time.process_time()
        services.message_append(
            conversation=other, role="customer", text=question, client_id=uuid.uuid4().hex
        )
        costs["message_alone"].append((time.process_time() - start) * 1000)

    for i in range(20):  # warm-up: caches, the rules, the first statements
        turn(-1 - i, {"receive": [], "review": [], "store": [], "message_alone": []})
    rounds = []
    for r in range(args.rounds):
        costs: dict[str, list[float]] = {
            "receive": [],
            "review": [],
            "store": [],
            "message_alone": [],
        }
        for i in range(args.turns):
            turn(r * args.turns + i, costs)
        medians = {k: round(statistics.median(v), 3) for k, v in costs.items()}
        medians["turn"] = round(medians["receive"] + medians["review"] + medians["store"], 3)
        rounds.append(medians)
        print(f"# round {r + 1}: " + ", ".join(f"{k} {v} ms" for k, v in medians.items()))
    result = {
        "bench": "turn_stores",
        "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
        "turns_per_round": args.turns,
        "turns_per_conversation": args.messages,
        **{
            f"{k}_cpu_ms_median_of_rounds": statistics.median(r[k] for r in rounds)
            for k in rounds[0]
        },
    }
    print(json.dumps(result))  # the JSON line comes last


if __name__ == "__main__":
    main()
