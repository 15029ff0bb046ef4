"""Query embedding throughput: micro-batched (QueryBatcher) vs one call per query.

Not a test. Simulates N customers whose questions arrive at the same moment and
measures how many queries per second the MiniLM encoder serves.

    .venv/bin/python bench/assistant_batching.py [--queries 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import django

django.setup()

from chat.assistant.embeddings import QueryBatcher, embed_texts  # noqa: E402


def questions(n: int) -> list[str]:
    demo = Path(__file__).resolve().parent.parent / "chat" / "demo" / "questions.json"
    base = [q["question"] for q in json.loads(demo.read_text())]
    # Distinct texts, so nothing could be cached.
    return [f"{base[i % len(base)]} (#{i})" for i in range(n)]


async def one_at_a_time(texts: list[str]) -> float:
    """Every query encoded by its own call (in a thread, as a server would)."""
    start = time.perf_counter()
    await asyncio.gather(*(asyncio.to_thread(embed_texts, [t]) for t in texts))
    return time.perf_counter() - start


async def batched(texts: list[str]) -> tuple[float, list[int]]:
    batcher = QueryBatcher(embed_texts)
    start = time.perf_counter()
    await asyncio.gather(*(batcher.embed(t) for t in texts))
    return time.perf_counter() - start, list(batcher.batch_sizes)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    texts = questions(args.queries)
    embed_texts(["warm up the model"])
    single, grouped, sizes = [], [], []
    for _ in range(args.rounds):
        single.append(await one_at_a_time(texts))
        seconds, sizes = await batched(texts)
        grouped.append(seconds)
    s, b = statistics.median(single), statistics.median(grouped)
    print(f"queries per round: {args.queries}, rounds: {args.rounds} (median shown)")
    print(f"one at a time : {args.queries / s:8.1f} queries/s  ({s * 1000:.0f} ms)")
    print(f"micro-batched : {args.queries / b:8.1f} queries/s  ({b * 1000:.0f} ms)")
    print(f"speed-up      : {s / b:8.2f}x   batch sizes (last round): {sizes}")


if __name__ == "__main__":
    asyncio.run(main())
