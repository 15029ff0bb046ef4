from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from training.selectors import adapter_live
from training.services.deployments import DeploymentError, adapter_deploy, adapter_rollback
from training.services.runs import run_approve


def test_only_holders_of_the_approve_permission_can_approve(succeeded_run, reviewer, ml_engineer):
    run = succeeded_run()

    with pytest.raises(PermissionDenied):
        run_approve(run=run, by=reviewer)
    run.refresh_from_db()
    assert run.approved_at is None

    run_approve(run=run, by=ml_engineer)
    run.refresh_from_db()
    assert run.approved_by == ml_engineer
    assert run.approved_at is not None


def test_deploy_makes_the_adapter_live_and_rollback_restores_the_previous(
    succeeded_run, ml_engineer
):
    first, second = succeeded_run(good_after=2), succeeded_run(good_after=3)
    for run in (first, second):
        run_approve(run=run, by=ml_engineer)
    assert adapter_live() is None  # base model only

    adapter_deploy(run=first, by=ml_engineer)
    assert adapter_live().name == first.adapter_name
    assert (adapter_live().path / "adapter_config.json").exists()

    adapter_deploy(run=second, by=ml_engineer)
    assert adapter_live().name == second.adapter_name

    adapter_rollback(by=ml_engineer)
    assert adapter_live().name == first.adapter_name
    adapter_rollback(by=ml_engineer)
    assert adapter_live() is None


def test_an_unapproved_run_cannot_be_deployed(succeeded_run, ml_engineer):
    run = succeeded_run()
    with pytest.raises(DeploymentError, match="Approve"):
        adapter_deploy(run=run, by=ml_engineer)
    assert adapter_live() is None


def test_a_tenant_slot_gets_its_own_adapter_and_others_keep_the_default(succeeded_run, ml_engineer):
    default, tenant = succeeded_run(), succeeded_run()
    for run in (default, tenant):
        run_approve(run=run, by=ml_engineer)
    adapter_deploy(run=default, by=ml_engineer)
    adapter_deploy(run=tenant, by=ml_engineer, slot="acme")

    assert adapter_live(adapter_name="acme").name == tenant.adapter_name
    assert adapter_live(adapter_name="other-tenant").name == default.adapter_name
    assert adapter_live().name == default.adapter_name
    # an approved run can also be picked by its adapter name
    assert adapter_live(adapter_name=tenant.adapter_name).name == tenant.adapter_name


def test_deploy_needs_the_deploy_permission(succeeded_run, ml_engineer, reviewer):
    run = succeeded_run()
    run_approve(run=run, by=ml_engineer)
    with pytest.raises(PermissionDenied):
        adapter_deploy(run=run, by=reviewer)
    assert adapter_live() is None
