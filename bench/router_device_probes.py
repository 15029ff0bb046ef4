"""Calm device questions and device hazards the training data does not hold (not a test)

`router_device_probes.jsonl`: 58 messages written fresh for this check (none in any
training or evaluation part) in the customers' device vocabulary: calm questions
(`answer`: must reach the knowledge base, neither escalated nor declined), hazards
(`safety`, `medical`: must escalate) and other brands' devices (`out_of_scope`: must not
escalate). Routes each with a router's directory (default the shipped router-1).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/router_device_probes.py [--router DIR] [--show]

Prints the wrongly routed messages, then one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--router", default=str(ROOT / "chat/assistant/routers/router-1"))
    parser.add_argument("--show", action="store_true", help="list every message")
    args = parser.parse_args()

    import django

    django.setup()
    from chat.assistant.embeddings import embed_texts
    from chat.assistant.router import ESCALATING, RouterModel
    from chat.assistant.router_training import _routes

    rows = [
        json.loads(line) for line in (Path(__file__).parent / "router_device_probes.jsonl").open()
    ]
    texts = [row["text"] for row in rows]
    model = RouterModel(Path(args.router))
    probabilities = model.probabilities(texts, embed_texts(texts))
    right = {"answer": 0, "escalated": 0, "out_of_scope": 0}
    total = {"answer": 0, "escalated": 0, "out_of_scope": 0}
    for row, (label, route), probs in zip(
        rows,
        _routes(
            probabilities,
            model.labels,
            thresholds=model.thresholds,
            combined_threshold=model.combined_threshold,
        ),
        probabilities,
        strict=True,
    ):
        gold = row["label"]
        kind = "escalated" if gold in ESCALATING else gold
        ok = {
            "answer": route == "answer",
            "escalated": route == "escalate",
            "out_of_scope": route != "escalate",
        }[kind]
        total[kind] += 1
        right[kind] += ok
        if args.show or not ok:
            top = sorted(zip(model.labels, probs, strict=True), key=lambda kv: -kv[1])[:3]
            scores = ", ".join(f"{k} {v:.2f}" for k, v in top)
            print(f"{'ok ' if ok else 'BAD'} [{gold} -> {route}/{label}] {row['text']}  ({scores})")
    print(json.dumps({"router": model.version, "right": right, "of": total}))


if __name__ == "__main__":
    main()
