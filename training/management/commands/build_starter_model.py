"""Build the offline starter causal LM the ``hf`` provider and training runs start from."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from training.services.starter import knowledge_base_texts, starter_model_build


class Command(BaseCommand):
    help = "Train a small tokenizer + 2-layer Llama on the knowledge base (no downloads)."

    def add_arguments(self, parser):
        parser.add_argument("--output", default=str(settings.HF_BASE_MODEL_PATH))
        parser.add_argument("--steps", type=int, default=300)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--if-missing",
            action="store_true",
            help="Do nothing when a model already exists at --output (used by scripts/run).",
        )

    def handle(self, *args, output: str, steps: int, seed: int, **options):
        if options["if_missing"] and (Path(output) / "config.json").exists():
            return
        texts = knowledge_base_texts(base_dir=Path(settings.BASE_DIR))
        self.stdout.write(f"training a starter model on {len(texts)} texts ({steps} steps)")

        def progress(step: int, loss: float) -> None:
            self.stdout.write(f"  step {step}/{steps}, loss {loss:.2f}")

        path = starter_model_build(
            output_dir=Path(output), texts=texts, steps=steps, seed=seed, progress=progress
        )
        self.stdout.write(self.style.SUCCESS(f"starter model written to {path}"))
