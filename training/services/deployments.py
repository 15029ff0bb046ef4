"""Deploying an approved adapter to a slot, and rolling a slot back.

Deploying passes the deployment gate (``training.services.deployment_gate``): an adapter
whose evaluation is not better than what is live in the slot is refused, unless an admin
(``training.force_deploy_adapter``) forces it with a written reason, which is kept with
the deployment.

An intent-router run's deployment makes its version live
(``chat.services.intents.router_version_make_live``, whose own rule is the gate for it);
its rollback makes the version that routed before live again. Every turn records the
version that routed it, so the switch shows in the decisions that follow.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from chat.errors import Conflict
from training.models import AdapterDeployment, TrainingRun
from training.services.deployment_gate import GateVerdict, deployment_gate_check

FORCE_REASON_MIN_CHARS = 10


class DeploymentError(Conflict):
    """The run cannot be deployed, or the slot has nothing to roll back."""

    code = "deployment_refused"


class DeploymentGateRefused(DeploymentError):
    """The run's evaluation is not better than what is live; ``verdict`` says how (the
    API's error body carries it as ``gate``)."""

    code = "deployment_gate"

    def __init__(self, verdict: GateVerdict) -> None:
        super().__init__(verdict.refusal())
        self.verdict = verdict

    def body(self) -> dict[str, Any]:
        return {**super().body(), "gate": self.verdict.as_dict()}


def _require(user: User | AnonymousUser) -> User:
    if not user.has_perm("training.deploy_adapter"):
        raise PermissionDenied("You need the 'deploy adapter' permission.")
    return cast(User, user)  # anonymous users hold no permission


@transaction.atomic
def adapter_deploy(
    *, run: TrainingRun, by: User | AnonymousUser, slot: str = "", force_reason: str = ""
) -> AdapterDeployment:
    """Make ``run``'s approved adapter live for ``slot`` ("" = organisation default).

    The slot's active deployment (locked) becomes the new one's ``previous`` so that a
    rollback restores it. ``adapter_live`` reads this per request: no restart needed.

    The deployment gate compares the run's evaluation with the slot's live adapter (or
    the base model) under that lock. When it is not better, ``DeploymentGateRefused`` is
    raised, unless ``force_reason`` is given (at least ``FORCE_REASON_MIN_CHARS``
    characters) by a holder of ``training.force_deploy_adapter``. The comparison, and a
    forcing reason, are stored with the deployment.
    """
    user = _require(by)
    run = TrainingRun.objects.select_for_update().get(pk=run.pk)
    if run.status != TrainingRun.Status.SUCCEEDED or not run.produces_adapter:
        raise DeploymentError("Only a succeeded run with an adapter can be deployed.")
    if run.approved_at is None:
        raise DeploymentError("Approve the run before deploying its adapter.")
    kind = run.adapter_kind
    if kind == AdapterDeployment.Kind.ROUTER:
        return _router_deploy(run=run, user=user, slot=slot, force_reason=force_reason)
    current = (
        AdapterDeployment.objects.select_for_update()
        .filter(kind=kind, slot=slot, active=True)
        .first()
    )
    if current is not None and current.run_id == run.pk:
        return current
    verdict = deployment_gate_check(run=run, slot=slot)
    reason = _forcing_reason(verdict=verdict, user=user, force_reason=force_reason)
    if current is not None:
        current.active = False
        current.save(update_fields=["active"])
    deployment = AdapterDeployment(
        slot=slot,
        kind=kind,
        run=run,
        active=True,
        previous=current,
        deployed_by=user,
        gate_summary=verdict.summary(),
        forced_reason=reason,
    )
    deployment.full_clean()
    deployment.save()
    return deployment


def _forcing_reason(*, verdict: GateVerdict, user: User, force_reason: str) -> str:
    """ "" when the gate passed; else the admin's written reason, or a refusal."""
    if verdict.passed:
        return ""
    reason = force_reason.strip()
    if not reason:
        raise DeploymentGateRefused(verdict)
    if not user.has_perm("training.force_deploy_adapter"):
        raise PermissionDenied("Only an admin can deploy an adapter past the deployment gate.")
    if len(reason) < FORCE_REASON_MIN_CHARS:
        raise DeploymentError(
            "Write why the adapter should go live although it is not better "
            f"(at least {FORCE_REASON_MIN_CHARS} characters)."
        )
    return reason


def _router_deploy(
    *, run: TrainingRun, user: User, slot: str, force_reason: str
) -> AdapterDeployment:
    """Make an intent-router run's version live (within ``adapter_deploy``'s
    transaction; the router versions' rows are locked as ``router_version_make_live``
    locks them)."""
    from chat.services.intents import (
        RouterVersionRefused,
        router_version_make_live,
        router_version_routing,
    )

    if slot:
        raise DeploymentError(
            "The intent router routes every conversation: deploy it to the default slot."
        )
    version = run.router_version
    if version is None:
        raise DeploymentError("This run kept no router version.")
    current = (
        AdapterDeployment.objects.select_for_update()
        .filter(kind=AdapterDeployment.Kind.ROUTER, slot="", active=True)
        .first()
    )
    routing = router_version_routing(lock=True)
    if routing.pk == version.pk and current is not None and current.run_id == run.pk:
        return current
    verdict = deployment_gate_check(run=run)
    reason = _forcing_reason(verdict=verdict, user=user, force_reason=force_reason)
    try:
        router_version_make_live(version=version, by=user, force=bool(reason))
    except RouterVersionRefused as exc:  # the live version changed since the check
        raise DeploymentError(exc.message) from exc
    if current is not None:
        current.active = False
        current.save(update_fields=["active"])
    deployment = AdapterDeployment(
        slot="",
        kind=AdapterDeployment.Kind.ROUTER,
        run=run,
        active=True,
        previous=current,
        deployed_by=user,
        gate_summary=verdict.summary(),
        forced_reason=reason,
        router_version=version,
        replaced_router_version=routing if routing.pk != version.pk else None,
    )
    deployment.full_clean()
    deployment.save()
    return deployment


@transaction.atomic
def adapter_rollback(
    *, by: User | AnonymousUser, slot: str = "", kind: str = AdapterDeployment.Kind.GENERATOR
) -> AdapterDeployment | None:
    """Undo the slot's active deployment of ``kind`` (generator or retriever): its
    previous adapter (or the base model) is live.

    Returns the deployment that is live afterwards (None: base model only).
    """
    user = _require(by)
    current = (
        AdapterDeployment.objects.select_for_update()
        .filter(kind=kind, slot=slot, active=True)
        .first()
    )
    if current is None:
        raise DeploymentError(f"Nothing is deployed for {slot or 'the default slot'}.")
    if kind == AdapterDeployment.Kind.ROUTER:
        return _router_rollback(current=current, user=user)
    current.active = False
    current.rolled_back_at = timezone.now()
    current.save(update_fields=["active", "rolled_back_at"])
    previous = current.previous
    if previous is None:
        return None
    restored = AdapterDeployment(
        slot=slot,
        kind=kind,
        run=previous.run,
        active=True,
        previous=previous.previous,
        deployed_by=user,
        gate_summary=f"rollback of {current.run.adapter_name}: restored without the gate",
    )
    restored.full_clean()
    restored.save()
    return restored


def _router_rollback(*, current: AdapterDeployment, user: User) -> AdapterDeployment | None:
    """Make the version that routed before ``current`` was deployed live again (no
    gate: it was live). Returns the router deployment live afterwards, None when that
    version did not come from a run (the shipped one, or one made live in the router
    versions' admin)."""
    from chat.services.intents import router_version_make_live, router_version_routing

    routing = router_version_routing(lock=True)
    if routing.pk != current.router_version_id:
        raise DeploymentError(
            f"{routing.name} routes now, made live outside training runs since "
            f"{current.run.adapter_name} was deployed: choose the version in the router "
            "versions' admin page."
        )
    target = current.replaced_router_version
    if target is None:
        raise DeploymentError(f"{routing.name} replaced no other version: nothing to restore.")
    router_version_make_live(version=target, by=user, force=True)
    current.active = False
    current.rolled_back_at = timezone.now()
    current.save(update_fields=["active", "rolled_back_at"])
    previous = current.previous
    if previous is None or previous.router_version_id != target.pk:
        return None
    restored = AdapterDeployment(
        slot="",
        kind=AdapterDeployment.Kind.ROUTER,
        run=previous.run,
        active=True,
        previous=previous.previous,
        deployed_by=user,
        gate_summary=(
            f"rollback of {current.run.adapter_name}: {target.name} restored without the gate"
        ),
        router_version=target,
        replaced_router_version=previous.replaced_router_version,
    )
    restored.full_clean()
    restored.save()
    return restored
