"""Reads for training runs and adapter deployments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db.models import QuerySet

from chat.assistant.adapters import GENERATOR, RETRIEVER, AdapterRef
from training.models import AdapterDeployment, RunMetric, TrainingRun
from training.services.guards import GuardLimits, guard_limits_resolve
from training.services.logs import log_lines_clean


def _ref(deployment: AdapterDeployment) -> AdapterRef:
    from training.services.artifacts import artifact_local_dir

    run = deployment.run
    return AdapterRef(name=run.adapter_name, path=artifact_local_dir(run=run, kind="adapter"))


def adapter_live(*, adapter_name: str = "") -> AdapterRef | None:
    """The LoRA adapter the ``hf`` provider should use: ``adapter_name`` if given and
    deployed, else the organisation's live adapter, else None (base model only).

    ``adapter_name`` is a deployment slot (a tenant or conversation choice, e.g.
    ``Conversation.adapter_name``) or an approved run's adapter name ("run-12"). Read per
    request, so a deployment or rollback takes effect without restarting the web process.
    """
    active = AdapterDeployment.objects.filter(
        active=True, kind=AdapterDeployment.Kind.GENERATOR
    ).select_related("run")
    if adapter_name:
        deployment = active.filter(slot=adapter_name).first()
        if deployment is not None:
            return _ref(deployment)
        if adapter_name.startswith("run-") and adapter_name[4:].isdigit():
            run = TrainingRun.objects.filter(
                pk=int(adapter_name[4:]),
                status=TrainingRun.Status.SUCCEEDED,
                approved_at__isnull=False,
            ).first()
            if run is not None and run.produces_adapter and run.adapter_kind == GENERATOR:
                from training.services.artifacts import artifact_local_dir

                return AdapterRef(
                    name=run.adapter_name, path=artifact_local_dir(run=run, kind="adapter")
                )
    deployment = active.filter(slot="").first()
    return _ref(deployment) if deployment is not None else None


def retriever_adapter_live(*, slot: str = "") -> AdapterRef | None:
    """The retriever adapter for ``slot`` (a conversation's adapter slot), else the
    organisation's live one, else None (the base encoder). Read per request."""
    active = AdapterDeployment.objects.filter(
        active=True, kind=AdapterDeployment.Kind.RETRIEVER
    ).select_related("run")
    deployment = (active.filter(slot=slot).first() if slot else None) or active.filter(
        slot=""
    ).first()
    return _ref(deployment) if deployment is not None else None


def adapter_for_assistant(*, kind: str, slot: str) -> AdapterRef | None:
    """The resolver the assistant calls (registered in ``TrainingConfig.ready``)."""
    if kind == GENERATOR:
        return adapter_live(adapter_name=slot)
    if kind == RETRIEVER:
        return retriever_adapter_live(slot=slot)
    return None


def run_metric_series(*, run: TrainingRun, after_id: int = 0) -> dict[str, list[list[float]]]:
    """Metrics of a run as {name: [[step, value], ...]}, optionally only rows after an id."""
    series: dict[str, list[list[float]]] = {}
    rows = RunMetric.objects.filter(run=run, pk__gt=after_id).order_by("step", "pk")
    for name, step, value in rows.values_list("name", "step", "value"):
        series.setdefault(name, []).append([step, value])
    return series


def run_progress(*, run: TrainingRun) -> dict[str, Any]:
    """Progress of a run with an ETA extrapolated from the steps done so far."""
    from django.utils import timezone

    eta_seconds = None
    if run.status == TrainingRun.Status.RUNNING and run.started_at and run.step and run.total_steps:
        elapsed = (timezone.now() - run.started_at).total_seconds()
        eta_seconds = max(0.0, elapsed / run.step * (run.total_steps - run.step))
    return {
        "status": run.status,
        "step": run.step,
        "total_steps": run.total_steps,
        "fraction": (run.step / run.total_steps) if run.total_steps else 0.0,
        "eta_seconds": eta_seconds,
        "error": run.error,
        "log_tail": log_lines_clean(run.log_tail.splitlines())[-20:],
        "heartbeat_at": run.heartbeat_at.isoformat() if run.heartbeat_at else None,
    }


def deployments_active() -> QuerySet[AdapterDeployment]:
    return AdapterDeployment.objects.filter(active=True).select_related("run", "deployed_by")


def run_guard_limits(*, run: TrainingRun) -> GuardLimits | None:
    """The guard limits an online run trains under (settings, then the run's ``guard_*``
    hyperparameters); None for offline runs, which are not guarded."""
    from django.conf import settings

    if not run.is_online:
        return None
    defaults = GuardLimits(
        max_kl=settings.TRAINING_GUARD_MAX_KL,
        max_length_drift=settings.TRAINING_GUARD_MAX_LENGTH_DRIFT,
        warmup_steps=settings.TRAINING_GUARD_WARMUP_STEPS,
    )
    hyperparameters = run.hyperparameters if isinstance(run.hyperparameters, dict) else {}
    return guard_limits_resolve(defaults=defaults, hyperparameters=hyperparameters)


def run_base_model_is_toy(*, run: TrainingRun) -> bool:
    """Whether the run trained on the offline starter model, a mechanics-only toy: as
    recorded in its manifest, else as its base-model folder says (TOY_MODEL.txt)."""
    from training.services.starter import is_toy_model

    manifest = run.manifest if isinstance(run.manifest, dict) else {}
    if "base_model_toy" in manifest:
        return bool(manifest["base_model_toy"])
    base = run.base_model.strip()
    return base.startswith("/") and is_toy_model(Path(base))
