"""Running a training run: the worker supervises a child process that does the training.

The child (``python -m training.child``) never touches the database (only an
intent-router run's child configures Django, for chat's router code). It prints one
``@@loopdesk {json}`` line per event (heartbeat, metrics, log, result, error) and every
other output line is a log line. The supervising worker stores metrics and heartbeats as
they come, terminates the child on cancel, and records success or the failure reason.
A crash, out-of-memory kill or ``kill -9`` of the child therefore only fails the run.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from labeling.selectors import snapshot_rows
from training.child import EVENT_PREFIX
from training.models import TrainingRun
from training.selectors import run_guard_limits
from training.services import runs as run_services
from training.services.artifacts import artifact_local_dir, artifacts_store, code_version
from training.services.base_models import BaseModelError, base_model_local_path
from training.services.logs import LogNoiseFilter
from training.services.runs import judge_reward_refusal
from training.services.starter import is_toy_model

logger = logging.getLogger(__name__)

HEARTBEAT_WRITE_SECONDS = 2.0


class RunSpecError(ValueError):
    pass


def _split(rows: list[dict[str, Any]], split: str) -> list[dict[str, Any]]:
    return [row for row in rows if row.get("split", "train") == split]


def _kto_rows(snapshot) -> list[dict[str, Any]]:
    rows = list(snapshot_rows(snapshot=snapshot, kind="kto"))
    if rows:
        return rows
    # Ratings straight from scored answers: desirable when the score is 4 or 5.
    return [
        {
            "prompt": row["prompt"],
            "completion": row["response"],
            "label": float(row["score"]) >= 4,
            "split": row.get("split", "train"),
        }
        for row in snapshot_rows(snapshot=snapshot, kind="scored")
    ]


def eval_prompts(*, snapshot, limit: int) -> list[dict[str, str]]:
    """Held-out questions with a known-good reference answer, one per prompt."""
    candidates: list[tuple[str, str]] = []
    for row in snapshot_rows(snapshot=snapshot, kind="pair", split="test"):
        candidates.append((row["prompt"], row["chosen"]))
    for row in snapshot_rows(snapshot=snapshot, kind="kto", split="test"):
        if row.get("label"):
            candidates.append((row["prompt"], row["completion"]))
    for row in snapshot_rows(snapshot=snapshot, kind="scored", split="test"):
        if float(row.get("score", 0)) >= 4:
            candidates.append((row["prompt"], row["response"]))
    seen: set[str] = set()
    prompts = []
    for prompt, reference in candidates:
        if prompt not in seen:
            seen.add(prompt)
            prompts.append({"prompt": prompt, "reference": reference})
    return prompts[:limit]


def spec_build(*, run: TrainingRun, work_dir: Path) -> dict[str, Any]:
    """Everything the child needs, as plain data (rows are read here, not in the child)."""
    snapshot = run.snapshot
    if run.algorithm == TrainingRun.Algorithm.RETRIEVER:
        return _retriever_spec(run=run, work_dir=work_dir)
    if run.algorithm == TrainingRun.Algorithm.INTENT_ROUTER:
        from training.services.router_run import router_spec

        return router_spec(run=run, work_dir=work_dir)
    if run.algorithm in (TrainingRun.Algorithm.REWARD_MODEL, TrainingRun.Algorithm.DPO):
        rows = list(snapshot_rows(snapshot=snapshot, kind="pair"))
    elif run.algorithm == TrainingRun.Algorithm.KTO:
        rows = _kto_rows(snapshot)
    else:
        rows = [
            *snapshot_rows(snapshot=snapshot, kind="pair"),
            *snapshot_rows(snapshot=snapshot, kind="scored"),
            *snapshot_rows(snapshot=snapshot, kind="kto"),
        ]
    if not _split(rows, "train"):
        raise RunSpecError(f"snapshot {snapshot} has no training rows for {run.algorithm}")
    reward_model_path = None
    if run.is_online and run.reward_source == TrainingRun.RewardSource.REWARD_MODEL:
        reward_run = run.reward_run
        if reward_run is None or reward_run.status != TrainingRun.Status.SUCCEEDED:
            raise RunSpecError(
                f"{run.algorithm} needs a succeeded reward_model run as its reward run"
            )
        reward_model_path = str(artifact_local_dir(run=reward_run, kind="reward_model"))
    if run.is_online and run.reward_source == TrainingRun.RewardSource.JUDGE:
        # Checked again here: the judge may have lost its calibration since the run was
        # created (new labels disagreeing with it).
        refusal = judge_reward_refusal()
        if refusal:
            raise RunSpecError(refusal)
    guards = run_guard_limits(run=run)
    base = base_model_local_path(uri=run.base_model)
    hp = dict(run.hyperparameters)
    return {
        "run_id": run.pk,
        "algorithm": run.algorithm,
        "base_model_path": str(base),
        "reward_source": run.reward_source if run.is_online else None,
        "reward_model_path": reward_model_path,
        "guards": guards.as_dict() if guards is not None else None,
        "rows": {"train": _split(rows, "train"), "test": _split(rows, "test")},
        "lora": {
            "r": run.lora_r,
            "alpha": run.lora_alpha,
            "dropout": run.lora_dropout,
            "target_modules": run.lora_target_modules or None,
        },
        "hyperparameters": hp,
        "seed": run.seed,
        "device": run.device,
        "output_dir": str(work_dir),
        "eval_prompts": eval_prompts(
            snapshot=snapshot, limit=int(hp.get("eval_prompts", settings.TRAINING_EVAL_PROMPTS))
        )
        if run.produces_adapter
        else [],
        "max_new_tokens": int(hp.get("eval_max_new_tokens", settings.HF_MAX_NEW_TOKENS)),
    }


def _retriever_spec(*, run: TrainingRun, work_dir: Path) -> dict[str, Any]:
    """A retriever run's spec: questions with their positive and hard-negative passages
    of the live knowledge index, and that index's passages and vectors."""
    from training.services.retriever import retriever_spec_parts

    parts = retriever_spec_parts(snapshot=run.snapshot, work_dir=work_dir)
    if not parts["corpus"]:
        raise RunSpecError("the knowledge base has no indexed passages to train a retriever on")
    if not any(row.get("positive") is not None for row in parts["rows"].get("train", [])):
        raise RunSpecError(
            f"snapshot {run.snapshot} has no training question with a high-rated answer, "
            "a better answer or an agent's reply that quotes a knowledge-base passage"
        )
    base = base_model_local_path(uri=run.base_model)
    return {
        "run_id": run.pk,
        "algorithm": run.algorithm,
        "base_model_path": str(base),
        "reward_source": None,
        "reward_model_path": None,
        "guards": None,
        "rows": parts["rows"],
        "corpus": parts["corpus"],
        "lora": {
            "r": run.lora_r,
            "alpha": run.lora_alpha,
            "dropout": run.lora_dropout,
            "target_modules": run.lora_target_modules or None,
        },
        "hyperparameters": dict(run.hyperparameters),
        "seed": run.seed,
        "device": run.device,
        "output_dir": str(work_dir),
        "eval_prompts": [],
        "max_new_tokens": 0,
    }


def child_command(spec_path: Path) -> list[str]:
    return [sys.executable, "-m", "training.child", "--spec", str(spec_path)]


def _terminate(proc: subprocess.Popen) -> None:
    """SIGTERM the child's process group, then SIGKILL if it does not leave."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, PermissionError):
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        hint = " (out of memory or killed)" if name == "SIGKILL" else ""
        return f"training process was killed by {name}{hint}"
    return f"training process exited with code {code}"


def run_execute(*, run_id: int) -> None:
    """Train one queued run in a child process and record the outcome.

    Idempotent: a run that is not queued (already running, finished, cancelled) is left
    alone. Never raises for a training failure: the run is failed with the reason and the
    worker carries on.
    """
    run = run_services.run_start(run_id=run_id)
    if run is None:
        logger.info("training run %s is not queued; nothing to do", run_id)
        return
    try:
        _run_supervised(run)
    except Exception as exc:  # the worker must survive anything a run does
        logger.exception("training run %s failed", run_id)
        run_services.run_fail(run_id=run_id, error=f"{type(exc).__name__}: {exc}")


def _run_supervised(run: TrainingRun) -> None:
    work_dir = Path(settings.TRAINING_OUTPUT_DIR) / f"run-{run.pk}"
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        spec = spec_build(run=run, work_dir=work_dir)
    except (RunSpecError, BaseModelError, ValidationError) as exc:
        run_services.run_fail(run_id=run.pk, error=f"configuration: {exc}")
        return
    spec_path = work_dir / "spec.json"
    spec_path.write_text(json.dumps(spec))

    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "TRL_EXPERIMENTAL_SILENCE": "1",  # PPO's import warning, on every run's log
    }
    proc = subprocess.Popen(
        child_command(spec_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        bufsize=1,
        env=env,
        cwd=settings.BASE_DIR,
        start_new_session=True,  # its own process group: cancel kills all of it
    )
    run_services.run_child_started(run=run, pid=proc.pid)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()

    result: dict[str, Any] | None = None
    error: str | None = None
    pending_logs: list[str] = []
    last_write = 0.0
    last_child_signal = time.monotonic()
    status: str = TrainingRun.Status.RUNNING
    finished_stream = False
    noise = LogNoiseFilter()  # progress bars, deprecation warnings, metric dicts
    while not finished_stream:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            line = ""
        if line is None:
            finished_stream = True
        elif line.startswith(EVENT_PREFIX):
            last_child_signal = time.monotonic()
            event = json.loads(line[len(EVENT_PREFIX) :])
            kind = event.get("event")
            if kind == "metrics":
                if event.get("metrics"):
                    run_services.run_metrics_record(
                        run=run,
                        step=event["step"],
                        total=event.get("total", 0),
                        metrics=event["metrics"],
                    )
            elif kind == "progress":
                run_services.run_metrics_record(
                    run=run, step=event["step"], total=event.get("total", 0), metrics={}
                )
            elif kind == "log":
                pending_logs.append(event["line"])
            elif kind == "result":
                result = event["result"]
            elif kind == "error":
                error = event["message"]
        elif line:
            last_child_signal = time.monotonic()
            if noise.keep(line):
                pending_logs.append(line)
        now = time.monotonic()
        if finished_stream or now - last_write >= HEARTBEAT_WRITE_SECONDS:
            status = run_services.run_heartbeat(run=run, log_lines=pending_logs)
            pending_logs = []
            last_write = now
            if status != TrainingRun.Status.RUNNING:
                _terminate(proc)  # cancelled from the admin (or failed by the sweep)
                break
            if now - last_child_signal > settings.TRAINING_STALL_SECONDS:
                _terminate(proc)
                error = f"training process stalled: silent for {settings.TRAINING_STALL_SECONDS}s"
                break
    code = proc.wait()
    if pending_logs:
        run_services.run_heartbeat(run=run, log_lines=pending_logs)
    if status != TrainingRun.Status.RUNNING:
        return
    if code != 0 or result is None:
        reason = error or _exit_reason(code)
        run_services.run_fail(run_id=run.pk, error=reason)
        return
    _finish(run=run, spec=spec, result=result, work_dir=work_dir)


def _retriever_evaluation(*, spec: dict[str, Any], work_dir: Path) -> dict[str, Any]:
    """Before/after on the snapshot's held-out questions (``training.services.retriever``)."""
    from chat.assistant.embeddings import MODEL_NAME
    from chat.assistant.knowledge import knowledge_index
    from training.services.retriever import held_out_questions, retriever_evaluate

    index = knowledge_index(embedding_model=MODEL_NAME)
    questions = held_out_questions(test_rows=spec["rows"].get("test", []), index=index)
    limit = int(spec["hyperparameters"].get("eval_questions", 0) or 0)
    return retriever_evaluate(
        questions=questions[:limit] if limit else questions,
        adapter_path=str(work_dir / "adapter"),
        index=index,
    )


def _finish(*, run: TrainingRun, spec: dict[str, Any], result: dict[str, Any], work_dir: Path):
    from training.services.evaluation import evaluation_build

    if run.algorithm == TrainingRun.Algorithm.RETRIEVER:
        evaluation = _retriever_evaluation(spec=spec, work_dir=work_dir)
    elif run.algorithm == TrainingRun.Algorithm.INTENT_ROUTER:
        from training.services.router_run import router_evaluation

        evaluation = router_evaluation(result=result)
    else:
        evaluation = evaluation_build(result=result)
    run.refresh_from_db()
    metrics_last = {
        m["name"]: m["value"]
        for m in run.metrics.order_by("step").values("name", "value")  # last value wins
    }
    manifest = {
        "run": run.pk,
        "adapter_name": run.adapter_name,
        "algorithm": run.algorithm,
        "base_model": run.base_model,
        "base_model_toy": is_toy_model(Path(spec["base_model_path"])),
        "snapshot": {"id": run.snapshot_id, "name": str(run.snapshot)},
        "reward_run": run.reward_run_id,
        "config": {
            "lora": spec["lora"],
            "hyperparameters": spec["hyperparameters"],
            "seed": spec["seed"],
            "device": spec["device"],
            "preset": run.preset,
        },
        "metrics": metrics_last,
        "evaluation": {k: v for k, v in evaluation.items() if k != "rows"},
        "summary": result.get("summary", {}),
        "code_version": code_version(),
    }
    if run.algorithm == TrainingRun.Algorithm.RETRIEVER:
        from training.services.retriever import TOKENS_FILE

        (work_dir / TOKENS_FILE).unlink(missing_ok=True)  # a copy of the index's, not an artifact
    prefix, stored = artifacts_store(run=run, local_dir=work_dir, manifest=manifest)
    with transaction.atomic():  # an intent-router run's version is kept with its success
        router_version = None
        if run.algorithm == TrainingRun.Algorithm.INTENT_ROUTER:
            from training.services.router_run import router_version_from_run

            router_version = router_version_from_run(run=run, result=result, work_dir=work_dir)
        run_services.run_succeed(
            run_id=run.pk,
            artifact_prefix=prefix,
            manifest=stored,
            evaluation=evaluation,
            router_version=router_version,
        )
    shutil.rmtree(work_dir / "trainer", ignore_errors=True)
