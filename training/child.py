"""The training child process: train one run from a spec file, report on stdout.

Started by ``training.services.execution`` as ``python -m training.child --spec FILE``.
It never touches the database, and imports Django only for an intent-router run (chat's
router code reads settings; ``training.services.router_backend``): one
``@@loopdesk {json}`` line per event, everything else printed is a log line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

EVENT_PREFIX = "@@loopdesk "
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


def run(spec: dict[str, Any]) -> int:
    """Train, then answer the held-out questions before/after; returns the exit code."""
    from training.services import trl_backend

    try:
        summary = trl_backend.train(spec, emit)
        answers = []
        prompts = spec.get("eval_prompts") or []
        if prompts and summary.get("artifact") == "adapter":
            emit({"event": "log", "line": f"evaluating on {len(prompts)} held-out questions"})
            questions = [p["prompt"] for p in prompts]
            base = spec["base_model_path"]
            tokens = int(spec.get("max_new_tokens", 48))
            before = trl_backend.answers_generate(
                base_model_path=base, questions=questions, max_new_tokens=tokens
            )
            after = trl_backend.answers_generate(
                base_model_path=base,
                questions=questions,
                adapter_path=str(Path(spec["output_dir"]) / "adapter"),
                max_new_tokens=tokens,
            )
            answers = [
                {"prompt": p["prompt"], "reference": p["reference"], "before": b, "after": a}
                for p, b, a in zip(prompts, before, after, strict=True)
            ]
    except trl_backend.TrainingConfigError as exc:
        emit({"event": "error", "message": f"configuration: {exc}"})
        return 2
    except trl_backend.GuardTripped as exc:
        emit({"event": "error", "message": str(exc)})  # "stopped: KL 6.2 exceeded ..."
        return 3
    except Exception as exc:
        traceback.print_exc(file=sys.stdout)
        emit({"event": "error", "message": f"{type(exc).__name__}: {exc}"})
        return 1
    emit({"event": "result", "result": {"summary": summary, "answers": answers}})
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    threading.Thread(target=_heartbeat, args=(os.getppid(),), daemon=True).start()
    return run(json.loads(Path(args.spec).read_text()))


if __name__ == "__main__":
    sys.exit(main())
