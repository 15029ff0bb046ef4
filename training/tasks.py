"""django-q2 entry points for training (queued on settings.TRAINING_CLUSTER)."""

from __future__ import annotations

from training.services.execution import run_execute
from training.services.runs import runs_fail_stale


def training_run_execute_task(run_id: int) -> None:
    """Train one run in a child process; a redelivered task finds it not queued."""
    run_execute(run_id=run_id)


def training_runs_sweep_task() -> list[int]:
    """Scheduled: fail running runs whose worker stopped sending heartbeats."""
    return runs_fail_stale()
