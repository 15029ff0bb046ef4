"""How the local provider's retrieval and sentiment check do on the demo questions.

Not a test. For each of the 72 demo questions (tagged with the article that answers it
and a tone): is that article cited first / in the top 3, does the assistant say it does
not know (the calibrated no-answer decision), and is VADER's verdict negative. Prints
one line per tone. The shipped dev/eval question sets are measured by
``manage.py assistant_eval``.

    .venv/bin/python bench/assistant_retrieval.py
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import django

django.setup()

from chat.assistant.evaluation import demo_index  # noqa: E402
from chat.assistant.knowledge import knowledge_answer  # noqa: E402
from chat.assistant.providers import embedder_current  # noqa: E402
from chat.assistant.sentiment import sentiment_vader  # noqa: E402


def main() -> None:
    demo = Path(__file__).resolve().parent.parent / "chat" / "demo"
    questions = json.loads((demo / "questions.json").read_text())
    embedder = embedder_current()
    index = demo_index(embedder)
    encodings = embedder.encode_documents([q["question"] for q in questions])
    rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for q, encoding in zip(questions, encodings, strict=True):
        passages, retrieval = knowledge_answer(
            index=index,
            query=encoding,
            query_text=q["question"],
            embedding_model=embedder.name,
            top_k=3,
        )
        cited = [p.slug for p in passages]
        row = rows[q["tone"]]
        row["n"] += 1
        row["top1"] += int(bool(cited) and cited[0] == q.get("article"))
        row["top3"] += int(q.get("article") in cited)
        row["no_answer"] += int(retrieval.no_answer)
        row["negative"] += int(sentiment_vader(q["question"]).negative)
    print(f"{'tone':<16}{'n':>4}{'top-1':>8}{'top-3':>8}{'no answer':>11}{'negative':>10}")
    for tone, row in sorted(rows.items()):
        print(
            f"{tone:<16}{row['n']:>4}{row['top1']:>8}{row['top3']:>8}"
            f"{row['no_answer']:>11}{row['negative']:>10}"
        )


if __name__ == "__main__":
    main()
