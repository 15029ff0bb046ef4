"""Evaluate the intent router on a shipped part: per-class precision and recall,
escalate-or-not precision and recall, and the confusion between classes."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat.assistant.router import SHIPPED_VERSION, router_shipped
from chat.assistant.router_training import (
    PARTS,
    dataset_load,
    evaluation_text,
    router_evaluate,
)
from chat.models import RouterVersion
from chat.selectors import router_version_live
from chat.services.intents import router_version_model, texts_embed


class Command(BaseCommand):
    help = (
        "Evaluate the live intent router (or --router) on the evaluation part (or --set "
        "challenge / train) with the model's calibrated thresholds."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--set", dest="part", choices=sorted(PARTS), default="eval")
        parser.add_argument("--router", default="", help="a router version (default: the live one)")
        parser.add_argument(
            "--errors", action="store_true", help="list the messages routed wrongly"
        )

    def handle(self, *args: Any, part: str, router: str, errors: bool, **options: Any) -> None:
        if router and router != SHIPPED_VERSION:
            row = RouterVersion.objects.filter(name=router).first()
            if row is None:
                raise CommandError(f"No router version named {router}.")
            model = router_version_model(row)
        else:
            live = None if router else router_version_live()
            model = router_version_model(live) if live is not None else router_shipped()
        rows = dataset_load(part)
        self.stderr.write(f"Embedding {len(rows)} messages with MiniLM...")
        evaluation = router_evaluate(
            model, part=part, rows=rows, vectors=texts_embed([row.text for row in rows])
        )
        self.stdout.write(evaluation_text(evaluation, version=model.version, errors=errors))
