"""Training an intent-router version inside the training child.

The recipe is chat's own (``chat.services.intents.router_version_build``, which calls
``chat.assistant.router_training.router_train``): nothing of it is repeated here. The
router's code reads Django settings and label choices, so this child configures Django
(``django.setup()``) but reads no database: the worker put every row in the spec
(``training.services.router_run.router_spec``).

The spec's extra keys: ``rows`` {"train": shipped training rows}, ``agent_rows`` (the
rows agents labelled), ``eval_rows`` (the evaluation part), ``version_name`` and
``live_version`` {"name", "directory"}: the version routing now, evaluated on the same
rows for the "before" column. Each row is {"text", "label"}.

Progress: one step per stage of the recipe (embedding, the calibration folds, the
thresholds, the evaluation), then the live version's evaluation. Metrics: the
out-of-fold figures the thresholds were calibrated on, then the evaluation part's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

Emit = Callable[[dict[str, Any]], None]

ROUTER_DIR = "router"


class RouterConfigError(ValueError):
    """The router run cannot be trained as configured."""


def _django_setup() -> None:
    """Settings and apps only (the child inherits ``DJANGO_SETTINGS_MODULE``)."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    django.setup()


def _rows(items: list[dict[str, Any]]) -> list[Any]:
    from chat.assistant.router_training import LabelledText

    return [LabelledText(text=str(r["text"]), label=str(r["label"])) for r in items]


def _figures(evaluation: Any) -> dict[str, float]:
    return {
        "escalate_precision": evaluation.escalate_precision,
        "escalate_recall": evaluation.escalate_recall,
        "accuracy": evaluation.accuracy,
        "critical_missed": float(len(evaluation.critical_missed)),
    }


def train_router(spec: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """Train, evaluate, and evaluate the live version on the same rows; returns the
    summary the worker keeps (both evaluations in full)."""
    _django_setup()
    from chat.assistant.router import RouterModel
    from chat.assistant.router_training import FOLDS, router_evaluate
    from chat.services.intents import router_version_build, texts_embed

    train = _rows(spec["rows"].get("train", []))
    agent_rows = _rows(spec.get("agent_rows", []))
    eval_rows = _rows(spec.get("eval_rows", []))
    if not train or not eval_rows:
        raise RouterConfigError("the router needs training rows and an evaluation part")
    # embedding, the folds, the thresholds, the evaluation; then the live version's
    total = FOLDS + 4
    step = 0

    def progress(message: str) -> None:
        nonlocal step
        step = min(step + 1, total)
        emit({"event": "log", "line": message})
        emit({"event": "progress", "step": step, "total": total})

    emit(
        {
            "event": "log",
            "line": f"intent router {spec['version_name']}: {len(train)} shipped rows, "
            f"{len(agent_rows)} rows from agents, {len(eval_rows)} evaluation rows",
        }
    )
    directory = Path(spec["output_dir"]) / ROUTER_DIR
    model, after, people = router_version_build(
        name=spec["version_name"],
        directory=directory,
        base_rows=train,
        agent_rows=agent_rows,
        eval_rows=eval_rows,
        progress=progress,
    )
    calibration = model.meta["training"]["calibration"]
    emit(
        {
            "event": "metrics",
            "step": step,
            "total": total,
            "metrics": {
                "calibration/escalate_precision": float(calibration["precision"]),
                "calibration/escalate_recall": float(calibration["recall"]),
                **{f"after/{k}": v for k, v in _figures(after).items()},
            },
        }
    )
    live = spec["live_version"]
    progress(f"evaluating the live version {live['name']} on the same rows")
    before = router_evaluate(
        RouterModel(Path(live["directory"])),
        part=after.part,
        rows=eval_rows,
        vectors=texts_embed([row.text for row in eval_rows]),
    )
    emit(
        {
            "event": "metrics",
            "step": total,
            "total": total,
            "metrics": {f"before/{k}": v for k, v in _figures(before).items()},
        }
    )
    return {
        "artifact": ROUTER_DIR,
        "version": spec["version_name"],
        "live_version": live["name"],
        "agent_rows": people,
        "calibration": calibration,
        "before": before.as_dict(),
        "after": after.as_dict(),
    }
