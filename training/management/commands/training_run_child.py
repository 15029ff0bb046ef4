"""The training child process: train one run from a spec file, report on stdout.

Started by ``training.services.execution``; never touches the database. Each event is one
``@@loopdesk {json}`` line; everything else printed is a log line.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

from training.services.execution import EVENT_PREFIX

HEARTBEAT_SECONDS = 5.0
_write_lock = threading.Lock()


def emit(event: dict[str, Any]) -> None:
    with _write_lock:
        sys.stdout.write(EVENT_PREFIX + json.dumps(event) + "\n")
        sys.stdout.flush()


def _heartbeat(parent_pid: int) -> None:
    while True:
        time.sleep(HEARTBEAT_SECONDS)
        if os.getppid() != parent_pid:
            # The supervising worker died: stop rather than train for nobody.
            os._exit(3)
        emit({"event": "heartbeat"})


class Command(BaseCommand):
    help = "Internal: run one training spec in this process (started by the training worker)."

    def add_arguments(self, parser):
        parser.add_argument("--spec", required=True)

    def handle(self, *args, spec: str, **options):
        from training.services import trl_backend

        threading.Thread(target=_heartbeat, args=(os.getppid(),), daemon=True).start()
        spec_data = json.loads(Path(spec).read_text())
        try:
            summary = trl_backend.train(spec_data, emit)
            answers = []
            prompts = spec_data.get("eval_prompts") or []
            if prompts and summary.get("artifact") == "adapter":
                emit({"event": "log", "line": f"evaluating on {len(prompts)} held-out questions"})
                questions = [p["prompt"] for p in prompts]
                base = spec_data["base_model_path"]
                tokens = int(spec_data.get("max_new_tokens", 48))
                before = trl_backend.answers_generate(
                    base_model_path=base, questions=questions, max_new_tokens=tokens
                )
                after = trl_backend.answers_generate(
                    base_model_path=base,
                    questions=questions,
                    adapter_path=str(Path(spec_data["output_dir"]) / "adapter"),
                    max_new_tokens=tokens,
                )
                answers = [
                    {"prompt": p["prompt"], "reference": p["reference"], "before": b, "after": a}
                    for p, b, a in zip(prompts, before, after, strict=True)
                ]
        except trl_backend.TrainingConfigError as exc:
            emit({"event": "error", "message": f"configuration: {exc}"})
            sys.exit(2)
        except Exception as exc:
            traceback.print_exc(file=sys.stdout)
            emit({"event": "error", "message": f"{type(exc).__name__}: {exc}"})
            sys.exit(1)
        emit({"event": "result", "result": {"summary": summary, "answers": answers}})
