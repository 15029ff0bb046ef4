from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from config.demo import demo_load
from labeling.demo import demo_labels_load


class Command(BaseCommand):
    help = (
        "Create demo conversations, labels from three reviewers and a dataset snapshot "
        "with pairs and KTO rows. Safe to run again: it only adds what is missing."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--no-judge", action="store_true", help="Skip the AI judge (no MiniLM load)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        demo_load()  # users (three reviewers) and articles
        result = demo_labels_load(judge=not options["no_judge"])
        snapshot = result.snapshot
        assert snapshot is not None
        self.stdout.write(
            f"{result.conversations} conversations, {result.items} items and "
            f"{result.labels} labels created, {result.judged} items judged; snapshot "
            f"{snapshot} ({'created' if result.snapshot_created else 'exists'}): "
            + ", ".join(f"{kind} {n}" for kind, n in snapshot.row_counts.items())
        )
