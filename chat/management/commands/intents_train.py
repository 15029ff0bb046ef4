"""Train a new intent router version from the shipped training part plus the rows
agents labelled, and evaluate it on the shipped evaluation part."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat.errors import ApplicationError
from chat.services.intents import (
    router_version_build,
    router_version_make_live,
    router_version_train,
)


class Command(BaseCommand):
    help = (
        "Train a router version (shipped training part + agents' rows), evaluate it on the "
        "evaluation part and keep it (make it live in the admin, or with --make-live). "
        "--output DIR only writes the files (how the shipped version is built)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", default="", help="version name (default router-<time>)")
        parser.add_argument(
            "--without-agent-rows",
            action="store_true",
            help="the shipped training part only (reproduces the shipped version)",
        )
        parser.add_argument("--output", default="", help="write the files here; no database")
        parser.add_argument(
            "--make-live",
            action="store_true",
            help="make it live if it evaluates at least as well as the live version",
        )

    def handle(
        self,
        *args: Any,
        name: str,
        without_agent_rows: bool,
        output: str,
        make_live: bool,
        **options: Any,
    ) -> None:
        def progress(line: str) -> None:
            self.stderr.write(line)

        if output:
            if not name:
                raise CommandError("--output needs --name.")
            _, evaluation, people = router_version_build(
                name=name,
                directory=Path(output),
                include_agent_rows=not without_agent_rows,
                progress=progress,
            )
            self.stdout.write(
                f"Wrote {name} to {output} ({people} agents' rows): escalate-or-not precision "
                f"{evaluation.escalate_precision:.3f}, recall {evaluation.escalate_recall:.3f}."
            )
            return
        try:
            version = router_version_train(
                name=name, include_agent_rows=not without_agent_rows, progress=progress
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            f"Trained {version.name} ({version.train_rows} rows, {version.agent_rows} from "
            f"agents): escalate-or-not precision {version.eval_precision:.3f}, recall "
            f"{version.eval_recall:.3f}, accuracy {version.eval_accuracy:.3f}."
        )
        if make_live:
            try:
                router_version_make_live(version=version, by=None)
            except ApplicationError as exc:
                raise CommandError(exc.message) from exc
            self.stdout.write(self.style.SUCCESS(f"{version.name} is live."))
