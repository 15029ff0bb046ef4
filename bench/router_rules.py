"""Do the old decision rules still help beside the intent router? (not a test)

On the evaluation part (and, reported only, the challenge part): escalate-or-not
precision and recall of the shipped router alone, then with each old rule added as it
was seeded (the VADER negative-sentiment rule at -0.5, the "asks for a person" phrases,
the organisation keywords before and after dropping "close/cancel my account"), with the
messages each rule adds.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/router_rules.py [--show]

Prints a table per part, then one JSON line last.
"""

from __future__ import annotations

import argparse
import importlib
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
    parser.add_argument("--show", action="store_true", help="list the messages rules add")
    args = parser.parse_args()

    import django

    django.setup()
    from chat.assistant.embeddings import embed_texts
    from chat.assistant.router import ESCALATING, intent_route, router_shipped
    from chat.assistant.router_training import dataset_load
    from chat.assistant.sentiment import sentiment_vader
    from escalation.services.decisions import patterns_match

    seeded = importlib.import_module("escalation.migrations.0002_default_rules")
    current = importlib.import_module("escalation.migrations.0009_intent_router_rules")
    rules = {rule["kind"]: rule for rule in seeded.RULES}
    human_patterns = [p for p in rules["human_request"]["patterns"].splitlines() if p]
    old_keywords = [p for p in current.OLD_KEYWORDS.splitlines() if p]
    keywords = [p for p in current.KEYWORDS.splitlines() if p]
    checks = {
        "VADER negative sentiment (-0.5)": lambda t: sentiment_vader(t).negative,
        "asks for a person (phrases)": lambda t: bool(patterns_match(human_patterns, t)),
        "organisation keywords (as seeded)": lambda t: bool(patterns_match(old_keywords, t)),
        "organisation keywords (kept)": lambda t: bool(patterns_match(keywords, t)),
    }
    model = router_shipped()
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for part in ("eval", "challenge"):
        rows = dataset_load(part)
        texts = [row.text for row in rows]
        should = [row.label in ESCALATING for row in rows]
        vectors = embed_texts(texts)
        routed = [
            intent_route(model.classify(t, v)).escalates
            for t, v in zip(texts, vectors, strict=True)
        ]

        def figures(escalated: list[bool], should: list[bool] = should) -> dict[str, float]:
            tp = sum(1 for s, e in zip(should, escalated, strict=True) if s and e)
            return {
                "precision": round(tp / max(1, sum(escalated)), 4),
                "recall": round(tp / max(1, sum(should)), 4),
            }

        table = {"router alone": figures(routed)}
        print(f"\n{part} ({len(rows)} messages)\n")
        print("| decision | precision | recall | adds: right | adds: wrong |")
        print("|---|---:|---:|---:|---:|")
        base = table["router alone"]
        print(f"| router alone | {base['precision']:.3f} | {base['recall']:.3f} | | |")
        for name, check in checks.items():
            fired = [check(t) for t in texts]
            combined = [r or f for r, f in zip(routed, fired, strict=True)]
            added = [i for i, (r, f) in enumerate(zip(routed, fired, strict=True)) if f and not r]
            right = sum(1 for i in added if should[i])
            table[f"router + {name}"] = figures(combined)
            row = table[f"router + {name}"]
            print(
                f"| router + {name} | {row['precision']:.3f} | {row['recall']:.3f} | "
                f"{right} | {len(added) - right} |"
            )
            if args.show:
                for i in added:
                    print(f"|  | [{rows[i].label}] {texts[i]} | | | |")
        summary[part] = table
    print(json.dumps({"bench": "router_rules", "router_version": model.version, **summary}))


if __name__ == "__main__":
    main()
