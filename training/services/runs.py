"""Every write to a training run: create/queue, start, progress, finish, cancel, approve."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from chat.errors import Conflict
from chat.models import RouterVersion
from labeling.models import DatasetSnapshot
from training.models import RunMetric, TrainingRun
from training.services.presets import PRESETS

LOG_TAIL_LINES = 40


class RunStateError(Conflict):
    """The run is not in a status that allows this move."""

    code = "run_state"


@transaction.atomic
def run_create(
    *,
    snapshot: DatasetSnapshot,
    created_by: User | None = None,
    preset: str = "",
    algorithm: str = "",
    base_model: str = "",
    reward_run: TrainingRun | None = None,
    reward_source: str = "",
    name: str = "",
    seed: int = 0,
    device: str = TrainingRun.Device.AUTO,
    lora_r: int | None = None,
    lora_alpha: int | None = None,
    lora_dropout: float | None = None,
    lora_target_modules: list[str] | None = None,
    hyperparameters: dict[str, Any] | None = None,
    enqueue: bool = True,
) -> TrainingRun:
    """Create a run (preset values first, explicit arguments win) and queue it.

    The training task is queued on the training cluster after commit.
    """
    fields: dict[str, Any] = {}
    if preset:
        if preset not in PRESETS:
            raise ValidationError({"preset": f"unknown preset {preset!r}"})
        fields.update(PRESETS[preset].fields())
    overrides = {
        "algorithm": algorithm or None,
        "lora_r": lora_r,
        "lora_alpha": lora_alpha,
        "lora_dropout": lora_dropout,
        "lora_target_modules": lora_target_modules,
    }
    fields.update({key: value for key, value in overrides.items() if value is not None})
    if hyperparameters:
        fields["hyperparameters"] = {**fields.get("hyperparameters", {}), **hyperparameters}
    if not base_model and fields.get("algorithm") in (
        TrainingRun.Algorithm.RETRIEVER,
        TrainingRun.Algorithm.INTENT_ROUTER,  # the router's features include MiniLM's
    ):
        from training.services.retriever_backend import minilm_path

        base_model = minilm_path()  # the assistant's own encoder, shipped in a package
    run = TrainingRun(
        snapshot=snapshot,
        created_by=created_by,
        preset=preset,
        base_model=base_model or str(settings.HF_BASE_MODEL_PATH),
        reward_run=reward_run,
        reward_source=reward_source or TrainingRun.RewardSource.REWARD_MODEL,
        name=name,
        seed=seed,
        device=device,
        **fields,
    )
    run.full_clean()
    _check_trainable(run)
    run.save()
    if enqueue:
        transaction.on_commit(lambda: run_enqueue(run_id=run.pk))
    return run


def judge_reward_refusal() -> str:
    """Why the AI judge may not reward a run now ("" when it may): it must first pass its
    calibration gate (``labeling.judge.judge_usable_as_reward``)."""
    from labeling import judge
    from labeling.selectors import judge_human_agreement

    if judge.judge_usable_as_reward():
        return ""
    figure = judge_human_agreement()
    measured = (
        f"Krippendorff's alpha {figure.alpha:.2f} on {figure.items} items"
        if figure.alpha is not None
        else f"no agreement figure yet ({figure.items} items)"
    )
    return (
        "The AI judge cannot reward runs yet: it has not passed its calibration gate "
        f"({measured}; it needs alpha >= {figure.threshold:g} on at least "
        f"{figure.min_items} items labelled by reviewers). Use a reward model."
    )


def _check_trainable(run: TrainingRun) -> None:
    """Refusals that need more than the row: the judge's calibration, PPO's presence."""
    if run.is_online and run.reward_source == TrainingRun.RewardSource.JUDGE:
        refusal = judge_reward_refusal()
        if refusal:
            raise ValidationError({"reward_source": refusal})
    if run.algorithm == TrainingRun.Algorithm.PPO:
        from training.services.trl_backend import PPO_MISSING, ppo_available, trl_version

        if not ppo_available():
            raise ValidationError({"algorithm": PPO_MISSING.format(version=trl_version())})


def run_enqueue(*, run_id: int) -> None:
    """Hand the run to a worker of the training cluster (inline in django-q2 sync mode)."""
    from django_q.tasks import async_task

    async_task(
        "training.tasks.training_run_execute_task",
        run_id,
        cluster=settings.TRAINING_CLUSTER,
        task_name=f"training-run-{run_id}",
    )


@transaction.atomic
def run_start(*, run_id: int, pid: int | None = None) -> TrainingRun | None:
    """Move a queued run to running under a row lock.

    Returns None when the run is not queued any more (a redelivered task, a cancelled
    run): the caller must then do nothing, so a run is never trained twice.
    """
    run = TrainingRun.objects.select_for_update().get(pk=run_id)
    if run.status != TrainingRun.Status.QUEUED:
        return None
    now = timezone.now()
    run.status = TrainingRun.Status.RUNNING
    run.started_at = now
    run.heartbeat_at = now
    run.child_pid = pid
    run.error = ""
    run.full_clean()
    run.save(update_fields=["status", "started_at", "heartbeat_at", "child_pid", "error"])
    return run


def run_child_started(*, run: TrainingRun, pid: int) -> None:
    TrainingRun.objects.filter(pk=run.pk).update(child_pid=pid, heartbeat_at=timezone.now())


def run_heartbeat(*, run: TrainingRun, log_lines: list[str] | None = None) -> str:
    """Record that the child is alive (and its new log lines); returns the current status.

    A single UPDATE, so a concurrent cancel is not overwritten.
    """
    updates: dict[str, Any] = {"heartbeat_at": timezone.now()}
    if log_lines:
        current = TrainingRun.objects.filter(pk=run.pk).values_list("log_tail", flat=True).first()
        lines = ((current or "").splitlines() + [line[:500] for line in log_lines])[
            -LOG_TAIL_LINES:
        ]
        updates["log_tail"] = "\n".join(lines)
    TrainingRun.objects.filter(pk=run.pk).update(**updates)
    return TrainingRun.objects.filter(pk=run.pk).values_list("status", flat=True).get()


@transaction.atomic
def run_metrics_record(
    *, run: TrainingRun, step: int, total: int, metrics: dict[str, float]
) -> None:
    """Store one step's metrics and the progress they imply."""
    RunMetric.objects.bulk_create(
        RunMetric(run=run, step=step, name=name[:80], value=value)
        for name, value in metrics.items()
    )
    updates: dict[str, Any] = {"step": step, "heartbeat_at": timezone.now()}
    if total:
        updates["total_steps"] = total
    TrainingRun.objects.filter(pk=run.pk).update(**updates)


@transaction.atomic
def run_succeed(
    *,
    run_id: int,
    artifact_prefix: str,
    manifest: dict[str, Any],
    evaluation: dict[str, Any],
    router_version: RouterVersion | None = None,
) -> TrainingRun:
    """Mark a running run succeeded with its artifacts and evaluation (and, for an
    intent-router run, the router version it trained), under a row lock."""
    run = TrainingRun.objects.select_for_update().get(pk=run_id)
    if run.status != TrainingRun.Status.RUNNING:
        raise RunStateError(f"run {run_id} is {run.status}, not running")
    run.status = TrainingRun.Status.SUCCEEDED
    run.finished_at = timezone.now()
    run.artifact_prefix = artifact_prefix
    run.manifest = manifest
    run.evaluation = evaluation
    run.child_pid = None
    if router_version is not None:
        run.router_version = router_version
    if run.total_steps:
        run.step = run.total_steps
    run.save(
        update_fields=[
            "status",
            "finished_at",
            "artifact_prefix",
            "manifest",
            "evaluation",
            "child_pid",
            "step",
            "router_version",
        ]
    )
    return run


@transaction.atomic
def run_fail(*, run_id: int, error: str) -> TrainingRun | None:
    """Mark a queued or running run failed with ``error``; finished runs are left alone."""
    run = TrainingRun.objects.select_for_update().get(pk=run_id)
    if run.is_finished:
        return None
    run.status = TrainingRun.Status.FAILED
    run.error = error[-4000:]
    run.finished_at = timezone.now()
    run.child_pid = None
    run.save(update_fields=["status", "error", "finished_at", "child_pid"])
    return run


@transaction.atomic
def run_cancel(*, run: TrainingRun, by: User | AnonymousUser | None = None) -> TrainingRun:
    """Cancel a queued or running run under a row lock.

    The worker supervising a running run sees the status and terminates the child.
    """
    locked = TrainingRun.objects.select_for_update().get(pk=run.pk)
    if locked.is_finished:
        raise RunStateError(f"run {run.pk} is already {locked.status}")
    locked.status = TrainingRun.Status.CANCELLED
    locked.finished_at = timezone.now()
    locked.error = f"cancelled by {by}" if by else "cancelled"
    locked.save(update_fields=["status", "finished_at", "error"])
    return locked


def runs_fail_stale(*, older_than: timedelta | None = None) -> list[int]:
    """Fail running runs whose heartbeat stopped (their worker died); returns their ids."""
    if older_than is None:
        older_than = timedelta(seconds=settings.TRAINING_HEARTBEAT_TIMEOUT_SECONDS)
    cutoff = timezone.now() - older_than
    stale = list(
        TrainingRun.objects.filter(
            status=TrainingRun.Status.RUNNING, heartbeat_at__lt=cutoff
        ).values_list("pk", flat=True)
    )
    failed = []
    for run_id in stale:
        with transaction.atomic():
            run = TrainingRun.objects.select_for_update().get(pk=run_id)
            if (
                run.status == TrainingRun.Status.RUNNING
                and run.heartbeat_at is not None
                and run.heartbeat_at < cutoff
            ):
                run.status = TrainingRun.Status.FAILED
                run.error = (
                    f"worker lost: no heartbeat since {run.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC"
                )
                run.finished_at = timezone.now()
                run.child_pid = None
                run.save(update_fields=["status", "error", "finished_at", "child_pid"])
                failed.append(run_id)
    return failed


@transaction.atomic
def run_approve(*, run: TrainingRun, by: User | AnonymousUser) -> TrainingRun:
    """Approve a succeeded run's adapter; only holders of approve_trainingrun may."""
    if not by.has_perm("training.approve_trainingrun"):
        raise PermissionDenied("You need the 'approve training run' permission.")
    locked = TrainingRun.objects.select_for_update().get(pk=run.pk)
    if locked.status != TrainingRun.Status.SUCCEEDED:
        raise RunStateError("Only a succeeded run can be approved.")
    if locked.approved_at is None:
        locked.approved_by = cast(User, by)  # holders of the permission are users
        locked.approved_at = timezone.now()
        locked.save(update_fields=["approved_by", "approved_at"])
    return locked
