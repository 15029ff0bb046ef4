"""Deploying an approved adapter to a slot, and rolling a slot back."""

from __future__ import annotations

from typing import cast

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from chat.errors import Conflict
from training.models import AdapterDeployment, TrainingRun


class DeploymentError(Conflict):
    """The run cannot be deployed, or the slot has nothing to roll back."""

    code = "deployment_refused"


def _require(user: User | AnonymousUser) -> User:
    if not user.has_perm("training.deploy_adapter"):
        raise PermissionDenied("You need the 'deploy adapter' permission.")
    return cast(User, user)  # anonymous users hold no permission


@transaction.atomic
def adapter_deploy(
    *, run: TrainingRun, by: User | AnonymousUser, slot: str = ""
) -> AdapterDeployment:
    """Make ``run``'s approved adapter live for ``slot`` ("" = organisation default).

    The slot's active deployment (locked) becomes the new one's ``previous`` so that a
    rollback restores it. ``adapter_live`` reads this per request: no restart needed.
    """
    user = _require(by)
    run = TrainingRun.objects.select_for_update().get(pk=run.pk)
    if run.status != TrainingRun.Status.SUCCEEDED or not run.produces_adapter:
        raise DeploymentError("Only a succeeded run with an adapter can be deployed.")
    if run.approved_at is None:
        raise DeploymentError("Approve the run before deploying its adapter.")
    current = AdapterDeployment.objects.select_for_update().filter(slot=slot, active=True).first()
    if current is not None:
        if current.run_id == run.pk:
            return current
        current.active = False
        current.save(update_fields=["active"])
    deployment = AdapterDeployment(
        slot=slot, run=run, active=True, previous=current, deployed_by=user
    )
    deployment.full_clean()
    deployment.save()
    return deployment


@transaction.atomic
def adapter_rollback(*, by: User | AnonymousUser, slot: str = "") -> AdapterDeployment | None:
    """Undo the slot's active deployment: its previous adapter (or the base model) is live.

    Returns the deployment that is live afterwards (None: base model only).
    """
    user = _require(by)
    current = AdapterDeployment.objects.select_for_update().filter(slot=slot, active=True).first()
    if current is None:
        raise DeploymentError(f"Nothing is deployed for {slot or 'the default slot'}.")
    current.active = False
    current.rolled_back_at = timezone.now()
    current.save(update_fields=["active", "rolled_back_at"])
    previous = current.previous
    if previous is None:
        return None
    restored = AdapterDeployment(
        slot=slot, run=previous.run, active=True, previous=previous.previous, deployed_by=user
    )
    restored.full_clean()
    restored.save()
    return restored
