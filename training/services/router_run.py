"""The intent-router run kind, on the worker's side: what the child is given, and what
is kept when it succeeds.

The child (``training.services.router_backend``) trains with chat's recipe on the rows
put in the spec here: the shipped training data (``shipped_rows_per_class`` > 0 keeps
that many per class, for a quick run), the rows agents labelled up to the moment the run
starts (``IntentExample``: "a person was needed", flagged conversations; written to the
run's artifacts as ``agent_rows.jsonl``), and the evaluation part every version is
compared on (``ROUTER_EVAL_PART``). The version routing now is evaluated on the same
rows for the "before" column.

On success the new version is kept as a ``RouterVersion`` named ``router-run-<id>``
(not live: deploying the run makes it live through the router's own rule,
``training.services.deployments``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chat.assistant.router import LABEL_NAMES, LABELS
from chat.assistant.router_training import Evaluation, LabelledText, training_rows
from chat.models import RouterVersion
from chat.selectors import intent_examples_for_training
from chat.services.intents import (
    eval_part_rows,
    router_version_keep,
    router_version_local_dir,
    router_version_routing,
)
from training.models import TrainingRun

AGENT_ROWS_FILE = "agent_rows.jsonl"


def router_version_name(*, run: TrainingRun) -> str:
    return f"router-{run.adapter_name}"


def _per_class(rows: list[LabelledText], limit: int) -> list[LabelledText]:
    if limit <= 0:
        return rows
    taken: dict[str, int] = {}
    kept = []
    for row in rows:
        if taken.get(row.label, 0) < limit:
            taken[row.label] = taken.get(row.label, 0) + 1
            kept.append(row)
    return kept


def _plain(rows: list[LabelledText]) -> list[dict[str, str]]:
    return [{"text": row.text, "label": row.label} for row in rows]


def router_spec(*, run: TrainingRun, work_dir: Path) -> dict[str, Any]:
    """Everything the child needs to train and evaluate a router version (reads the
    database and the data files; the child reads neither)."""
    hp = dict(run.hyperparameters)
    limit = int(hp.get("shipped_rows_per_class", 0) or 0)
    train = _per_class(training_rows(), limit)
    agent_rows = [LabelledText(text=e.text, label=e.label) for e in intent_examples_for_training()]
    (work_dir / AGENT_ROWS_FILE).write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in _plain(agent_rows))
    )
    live = router_version_routing()
    return {
        "run_id": run.pk,
        "algorithm": run.algorithm,
        "base_model_path": run.base_model,
        "reward_source": None,
        "reward_model_path": None,
        "guards": None,
        "rows": {"train": _plain(train), "test": []},
        "agent_rows": _plain(agent_rows),
        "eval_rows": _plain(eval_part_rows()),
        "version_name": router_version_name(run=run),
        "live_version": {
            "name": live.name,
            "directory": str(router_version_local_dir(version=live)),
        },
        "lora": {},
        "hyperparameters": hp,
        "seed": run.seed,
        "device": run.device,
        "output_dir": str(work_dir),
        "eval_prompts": [],
        "max_new_tokens": 0,
    }


def _side(evaluation: dict[str, Any], version: str) -> dict[str, Any]:
    return {
        "version": version,
        "escalate_precision": evaluation["escalate_precision"],
        "escalate_recall": evaluation["escalate_recall"],
        "accuracy": evaluation["accuracy"],
        "critical_missed": len(evaluation["critical_missed"]),
        "false_escalations": len(evaluation["false_escalations"]),
        "missed_escalations": len(evaluation["missed_escalations"]),
    }


def router_evaluation(*, result: dict[str, Any]) -> dict[str, Any]:
    """The run's evaluation (the run page's before/after section) from the child's
    summary: the live version before, the new version after, on the same rows."""
    summary = result["summary"]
    before, after = summary["before"], summary["after"]
    classes = []
    for label in LABELS:
        b, a = before["per_class"].get(label), after["per_class"].get(label)
        if not b or not a:
            continue
        classes.append(
            {
                "label": label,
                "name": LABEL_NAMES.get(label, label),
                "support": int(a["support"]),
                "before": {"precision": b["precision"], "recall": b["recall"]},
                "after": {"precision": a["precision"], "recall": a["recall"]},
            }
        )
    return {
        "kind": "intent_router",
        "part": after["part"],
        "messages": after["rows"],
        "fingerprint": after["fingerprint"],
        "agent_rows": summary["agent_rows"],
        "calibration": summary["calibration"],
        "before": _side(before, summary["live_version"]),
        "after": _side(after, summary["version"]),
        "classes": classes,
        "critical_missed_before": before["critical_missed"][:50],
        "critical_missed_after": after["critical_missed"][:50],
    }


def router_version_from_run(
    *, run: TrainingRun, result: dict[str, Any], work_dir: Path
) -> RouterVersion:
    """Keep the version the child trained (its files are in ``work_dir/router``)."""
    summary = result["summary"]
    return router_version_keep(
        name=summary["version"],
        directory=work_dir / summary["artifact"],
        evaluation=Evaluation(**summary["after"]),
        agent_rows=int(summary["agent_rows"]),
        created_by=run.created_by,
    )
