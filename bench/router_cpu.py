"""The intent router's own CPU per customer turn (not a test).

For every message of the evaluation part: the CPU time (``time.process_time``, all
threads) of the live router's classification (TF-IDF features, the logistic regression
on them and the MiniLM vector) plus the route decision, with the message's vector
already computed; the vector comes from the encoder call the turn makes for retrieval
anyway (``chat.assistant.embeddings``: one call; the same text is encoded once).

It also measures what the router adds to that encoder call when the retrieval query is
not the message itself (a short follow-up is searched together with the previous
question): encoding [query, message] against [query] alone.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/router_cpu.py [--repeat 3] [--follow-ups 200]

Prints a table, then one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3, help="passes over the messages")
    parser.add_argument("--follow-ups", type=int, default=200, help="encoder samples")
    args = parser.parse_args()

    import django

    django.setup()
    import torch

    from chat.assistant.embeddings import embed_texts, torch_threads_limit
    from chat.assistant.router import intent_route, router_shipped
    from chat.assistant.router_training import dataset_load

    torch_threads_limit()
    rows = dataset_load("eval")
    texts = [row.text for row in rows]
    model = router_shipped()
    vectors = embed_texts(texts)
    for text, vector in zip(texts[:20], vectors[:20], strict=True):  # warm the caches
        intent_route(model.classify(text, vector))

    router_ms: list[float] = []
    for _ in range(args.repeat):
        for text, vector in zip(texts, vectors, strict=True):
            started = time.process_time()
            intent_route(model.classify(text, vector))
            router_ms.append((time.process_time() - started) * 1000)

    # The encoder: what one more row (the message) costs in the retrieval query's call.
    short = [t for t in texts if len(t.split()) < 6][: args.follow_ups]
    previous = texts[-len(short) :]
    extra_ms: list[float] = []
    for message, before in zip(short, previous, strict=True):
        query = f"{before}\n{message}"
        started = time.process_time()
        embed_texts([query])
        alone = time.process_time() - started
        started = time.process_time()
        embed_texts([query, message])
        together = time.process_time() - started
        extra_ms.append((together - alone) * 1000)

    result = {
        "bench": "router_cpu",
        "router_version": model.version,
        "messages": len(texts),
        "samples": len(router_ms),
        "router_cpu_ms_p50": round(statistics.median(router_ms), 3),
        "router_cpu_ms_p90": round(percentile(router_ms, 90), 3),
        "router_cpu_ms_p99": round(percentile(router_ms, 99), 3),
        "router_cpu_ms_mean": round(statistics.fmean(router_ms), 3),
        "follow_up_samples": len(extra_ms),
        "follow_up_extra_encoder_cpu_ms_p50": round(statistics.median(extra_ms), 2)
        if extra_ms
        else None,
        "torch_threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
    }
    print("| measure | p50 | p90 | p99 |")
    print("|---|---:|---:|---:|")
    print(
        f"| router's own CPU per turn (ms) | {result['router_cpu_ms_p50']} | "
        f"{result['router_cpu_ms_p90']} | {result['router_cpu_ms_p99']} |"
    )
    print(
        f"| extra encoder CPU for a short follow-up (ms) | "
        f"{result['follow_up_extra_encoder_cpu_ms_p50']} | | |"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
