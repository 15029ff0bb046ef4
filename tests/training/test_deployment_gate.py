"""The deployment gate: an adapter whose evaluation is not better than what is live is
refused, unless an admin forces it with a written reason, kept with the deployment."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from training.models import AdapterDeployment, TrainingRun
from training.selectors import adapter_live
from training.services.deployment_gate import (
    _KINDS,
    GateKind,
    GateMetric,
    deployment_gate_check,
    gate_kind_register,
)
from training.services.deployments import (
    DeploymentError,
    DeploymentGateRefused,
    adapter_deploy,
    adapter_rollback,
)
from training.services.runs import run_approve

REASON = "Judge scores are noisy on 4 questions; agents asked for this tone change."


@pytest.fixture
def approved(succeeded_run, ml_engineer):
    def make(**kwargs) -> TrainingRun:
        run = succeeded_run(**kwargs)
        return run_approve(run=run, by=ml_engineer)

    return make


def test_an_adapter_no_better_than_the_base_model_is_refused(approved, ml_engineer):
    # judge mean 1.0 before and after: the run's own evaluation shows no gain
    run = approved(good_after=0)

    with pytest.raises(DeploymentGateRefused) as refused:
        adapter_deploy(run=run, by=ml_engineer)

    message = str(refused.value)
    assert message.startswith(f"{run.adapter_name} was not deployed")
    assert "the base model (nothing is deployed for the default slot)" in message
    assert "judge mean 1.00 vs 1.00 (not higher)" in message
    assert "share above 3 0% vs 0% (not higher)" in message
    assert "An admin can force" in message
    assert adapter_live() is None
    assert not AdapterDeployment.objects.exists()


def test_an_adapter_is_compared_with_the_live_one_in_its_slot(approved, ml_engineer):
    live = approved(good_after=3)
    adapter_deploy(run=live, by=ml_engineer)
    weaker = approved(good_after=2)  # better than the base model, worse than what is live

    with pytest.raises(DeploymentGateRefused, match=f"{live.adapter_name}, live for the default"):
        adapter_deploy(run=weaker, by=ml_engineer)
    assert adapter_live().name == live.adapter_name

    # another slot has nothing live: there the base model is the baseline
    deployment = adapter_deploy(run=weaker, by=ml_engineer, slot="acme")
    assert adapter_live(adapter_name="acme").name == weaker.adapter_name
    assert deployment.gate_summary.startswith(f"{weaker.adapter_name} vs the base model")
    assert not deployment.forced


def test_a_better_adapter_passes_and_the_comparison_is_kept(approved, ml_engineer):
    first = approved(good_after=2)
    adapter_deploy(run=first, by=ml_engineer)
    better = approved(good_after=4)

    deployment = adapter_deploy(run=better, by=ml_engineer)

    assert adapter_live().name == better.adapter_name
    assert deployment.gate_summary == (
        f"{better.adapter_name} vs {first.adapter_name}, live for the default slot: better "
        "(judge mean 5.00 vs 3.00 (higher); share above 3 100% vs 50% (higher))"
    )


def test_an_admin_forces_a_refused_adapter_with_a_written_reason(
    approved, ml_engineer, admin_member
):
    run = approved(good_after=0)

    deployment = adapter_deploy(run=run, by=admin_member, force_reason=f"  {REASON}  ")

    assert adapter_live().name == run.adapter_name
    deployment.refresh_from_db()
    assert deployment.forced
    assert deployment.forced_reason == REASON
    assert deployment.deployed_by == admin_member
    assert "not better" in deployment.gate_summary
    # a rollback restores the base model as usual
    adapter_rollback(by=ml_engineer)
    assert adapter_live() is None


def test_forcing_needs_an_admin_and_a_real_reason(approved, ml_engineer, admin_member):
    run = approved(good_after=0)

    with pytest.raises(PermissionDenied, match="Only an admin"):
        adapter_deploy(run=run, by=ml_engineer, force_reason=REASON)
    with pytest.raises(DeploymentError, match="at least 10 characters"):
        adapter_deploy(run=run, by=admin_member, force_reason="because")
    with pytest.raises(DeploymentGateRefused):
        adapter_deploy(run=run, by=admin_member, force_reason="   ")
    assert not AdapterDeployment.objects.exists()


def test_ml_engineers_deploy_but_only_admins_may_force(ml_engineer, admin_member):
    assert ml_engineer.has_perm("training.deploy_adapter")
    assert not ml_engineer.has_perm("training.force_deploy_adapter")
    assert admin_member.has_perm("training.force_deploy_adapter")


@pytest.fixture
def retriever_kind():
    """Another adapter kind registering its own comparison (lower miss rate is better)."""
    saved = dict(_KINDS)
    kind = GateKind(
        name="retriever",
        metrics=(GateMetric(key="miss", label="right article not first", higher_is_better=False),),
        with_adapter=lambda evaluation: {"miss": (evaluation.get("retrieval") or {}).get("after")},
        without_adapter=lambda evaluation: {
            "miss": (evaluation.get("retrieval") or {}).get("before")
        },
    )
    gate_kind_register(algorithms=[TrainingRun.Algorithm.KTO], kind=kind)
    yield kind
    _KINDS.clear()
    _KINDS.update(saved)


def test_another_kind_of_adapter_registers_its_own_metric_comparison(
    retriever_kind, snapshot, tiny_model_dir
):
    from training.services.runs import run_create, run_start, run_succeed

    def run_with(evaluation: dict) -> TrainingRun:
        run = run_create(
            snapshot=snapshot, preset="tiny_cpu_kto", base_model=str(tiny_model_dir), enqueue=False
        )
        run_start(run_id=run.pk)
        return run_succeed(run_id=run.pk, artifact_prefix="", manifest={}, evaluation=evaluation)

    fewer_misses = run_with({"retrieval": {"before": 0.24, "after": 0.16}})
    more_misses = run_with({"retrieval": {"before": 0.24, "after": 0.30}})

    assert deployment_gate_check(run=fewer_misses).passed
    refused = deployment_gate_check(run=more_misses)
    assert not refused.passed
    assert refused.comparisons[0].text() == "right article not first 0.30 vs 0.24 (worse)"


# --- admin and API ---------------------------------------------------------------------------


def test_the_run_page_refuses_then_an_admin_forces_with_a_reason(
    client, approved, ml_engineer, admin_member
):
    run = approved(good_after=0)
    act = reverse("admin:training_trainingrun_act", args=[run.pk])

    client.force_login(ml_engineer)
    page = client.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    assert "not better" in page  # the gate's verdict is shown before anyone clicks
    response = client.post(act, {"action": "deploy", "slot": ""}, follow=True)
    assert "was not deployed" in response.content.decode()
    assert not AdapterDeployment.objects.exists()

    client.force_login(admin_member)
    page = client.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    assert 'name="force_reason"' in page
    client.post(act, {"action": "deploy", "slot": "", "force_reason": REASON})
    deployment = AdapterDeployment.objects.get(active=True)
    assert deployment.forced_reason == REASON

    listing = client.get(reverse("admin:training_adapterdeployment_changelist")).content.decode()
    assert "forced" in listing and REASON in listing
    assert "Toy starter model (mechanics only)" in listing  # the tiny base is a toy
    detail = client.get(
        reverse("admin:training_adapterdeployment_change", args=[deployment.pk])
    ).content.decode()
    assert REASON in detail and "not better" in detail


def test_the_api_refuses_with_409_and_the_comparison_and_forcing_is_for_admins(
    api_client, approved, ml_engineer, admin_member
):
    run = approved(good_after=0)
    url = f"/api/training/runs/{run.pk}/deploy/"

    api_client.force_authenticate(ml_engineer)
    refused = api_client.post(url, {"slot": ""}, format="json")
    assert refused.status_code == 409
    body = refused.json()
    assert body["code"] == "deployment_gate"
    assert "was not deployed" in body["message"]
    assert body["gate"]["passed"] is False
    assert body["gate"]["comparisons"][0] == {
        "metric": "judge mean",
        "candidate": 1.0,
        "baseline": 1.0,
        "better": False,
    }
    forbidden = api_client.post(url, {"slot": "", "force_reason": REASON}, format="json")
    assert forbidden.status_code == 403

    api_client.force_authenticate(admin_member)
    forced = api_client.post(url, {"slot": "", "force_reason": REASON}, format="json")
    assert forced.status_code == 200, forced.json()
    assert forced.json()["forced_reason"] == REASON
    live = api_client.get("/api/training/deployments/").json()
    assert [d["forced_reason"] for d in live] == [REASON]


def test_the_api_refuses_a_hostile_force_reason_without_a_500(api_client, approved, admin_member):
    run = approved(good_after=0)
    api_client.force_authenticate(admin_member)

    response = api_client.post(
        f"/api/training/runs/{run.pk}/deploy/", {"force_reason": "x" * 5000}, format="json"
    )

    assert response.status_code == 400
    assert not AdapterDeployment.objects.exists()


def test_a_hostile_slot_on_the_run_page_is_an_error_message_not_a_500(
    client, approved, ml_engineer
):
    run = approved()
    client.force_login(ml_engineer)

    response = client.post(
        reverse("admin:training_trainingrun_act", args=[run.pk]),
        {"action": "deploy", "slot": "x" * 500},
        follow=True,
    )

    assert response.status_code == 200
    assert "at most 100 characters" in response.content.decode()
    assert not AdapterDeployment.objects.exists()
