"""Build the offline starter causal LM the ``hf`` provider and training runs start from.

The result is a mechanics-only toy (marked with TOY_MODEL.txt in its folder): it shows the
training loop offline, not useful answers.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from training.services.starter import knowledge_base_texts, starter_model_build


class Command(BaseCommand):
    help = (
        "Train a small tokenizer + 2-layer Llama on the knowledge base (no downloads). "
        "The result is a mechanics-only toy, marked as such in its folder."
    )

    def add_arguments(self, parser):
        parser.add_argument("--output", default=str(settings.HF_BASE_MODEL_PATH))
        parser.add_argument("--steps", type=int, default=300)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--threads",
            type=int,
            default=1,
            help="Torch threads for the build (1: fastest on a busy two-core machine).",
        )
        parser.add_argument(
            "--if-missing",
            action="store_true",
            help="Do nothing when a model already exists at --output (used by scripts/run).",
        )

    def handle(self, *args, output: str, steps: int, seed: int, threads: int, **options):
        if options["if_missing"] and (Path(output) / "config.json").exists():
            return
        self.stdout.write(f"building the offline starter model (a toy) in {output}")
        texts = knowledge_base_texts(base_dir=Path(settings.BASE_DIR))
        path = starter_model_build(
            output_dir=Path(output),
            texts=texts,
            steps=steps,
            seed=seed,
            threads=threads,
            progress=lambda line: self.stdout.write(f"  {line}"),
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"starter model written to {path}: a mechanics-only toy; the hf provider "
                "serves it to customers only with HF_ALLOW_TOY_MODEL=true"
            )
        )
