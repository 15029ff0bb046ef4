"""How the local provider's retrieval and sentiment check do on the demo questions.

Not a test. For each of the 72 demo questions (tagged with the article that answers it
and a tone): is that article ranked first / in the top 3, does the question fall below
the minimum score (the assistant says it does not know and offers a person), and is
VADER's verdict negative. Prints one line per tone.

    .venv/bin/python bench/assistant_retrieval.py [--min-score 0.35]
"""

from __future__ import annotations

import argparse
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

import numpy as np  # noqa: E402

from chat.assistant.embeddings import embed_texts  # noqa: E402
from chat.assistant.knowledge import article_scores  # noqa: E402
from chat.assistant.sentiment import sentiment_vader  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--min-score", type=float, default=0.35)
    args = parser.parse_args()
    demo = Path(__file__).resolve().parent.parent / "chat" / "demo"
    articles = json.loads((demo / "articles.json").read_text())
    questions = json.loads((demo / "questions.json").read_text())
    matrix = embed_texts([f"{a['title']}\n\n{a['body']}" for a in articles])
    titles = [a["title"] for a in articles]
    slugs = [a["slug"] for a in articles]
    vectors = embed_texts([q["question"] for q in questions])
    rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for q, vector in zip(questions, vectors, strict=True):
        scores = article_scores(
            matrix=matrix, titles=titles, query_vector=vector, query_text=q["question"]
        )
        order = [slugs[i] for i in np.argsort(-scores)[:3]]
        row = rows[q["tone"]]
        row["n"] += 1
        row["top1"] += int(order[0] == q.get("article"))
        row["top3"] += int(q.get("article") in order)
        row["no_answer"] += int(float(scores.max()) < args.min_score)
        row["negative"] += sentiment_vader(q["question"])["negative"]
    print(f"min score {args.min_score}")
    print(f"{'tone':<16}{'n':>4}{'top-1':>8}{'top-3':>8}{'no answer':>11}{'negative':>10}")
    for tone, row in sorted(rows.items()):
        print(
            f"{tone:<16}{row['n']:>4}{row['top1']:>8}{row['top3']:>8}"
            f"{row['no_answer']:>11}{row['negative']:>10}"
        )


if __name__ == "__main__":
    main()
