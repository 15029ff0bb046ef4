"""The intent-router run kind: a run on the training worker retrains the router from the
shipped data plus agents' labelled rows, is evaluated before (the version routing) and
after (its version) on the evaluation part, and is deployed through the router's rule
(refused when worse unless an admin forces it with a reason) and rolled back."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import PermissionDenied

from chat.assistant.router import router_shipped
from chat.assistant.router_training import (
    FOLDS,
    LabelledText,
    dataset_load,
    router_evaluate,
)
from chat.models import RouterVersion
from chat.services.intents import intent_example_record, texts_embed
from tests.factories import ConversationFactory
from training.models import AdapterDeployment, RunMetric, TrainingRun
from training.services.deployments import (
    DeploymentError,
    DeploymentGateRefused,
    adapter_deploy,
    adapter_rollback,
)
from training.services.runs import run_approve

pytestmark = pytest.mark.slow

# Six shipped rows per class: a router that trains in seconds (and is worse than router-1).
QUICK = {"shipped_rows_per_class": 6}


def _few_per_class(part: str, per_class: int) -> list[LabelledText]:
    taken: dict[str, int] = {}
    rows = []
    for row in dataset_load(part):
        if taken.get(row.label, 0) < per_class:
            taken[row.label] = taken.get(row.label, 0) + 1
            rows.append(row)
    return rows


def _write(path, rows) -> str:
    path.write_text("".join(json.dumps({"text": r.text, "label": r.label}) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def router_settings(settings, tmp_path):
    """Eight messages per class of the shipped evaluation part as the part versions are
    compared on; the live router looked up on every turn."""
    settings.ROUTER_EVAL_PART = _write(tmp_path / "eval.jsonl", _few_per_class("eval", 8))
    settings.ROUTER_REFRESH_SECONDS = 0  # the test's transaction never commits
    return settings


def _routing() -> str:
    return RouterVersion.objects.get(is_live=True).name


def test_an_intent_router_run_trains_a_version_from_agents_rows_and_evaluates_it(
    router_settings, snapshot, ml_engineer, agent, run_in_sync, client
):
    for text in ("get me a real person now", "stop the bot, human please"):
        intent_example_record(
            text=text, label="human_request", source="agent_resolve", recorded_by=agent
        )

    run = run_in_sync(
        snapshot=snapshot, created_by=ml_engineer, preset="intent_router", hyperparameters=QUICK
    )

    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    version = run.router_version
    assert version.name == f"router-run-{run.pk}" and not version.is_live
    assert version.agent_rows == 2 and version.train_rows == 15 * 6
    assert {"router/meta.json", "router/weights.npz", "agent_rows.jsonl"} <= set(
        run.manifest["files"]
    )
    assert run.step == run.total_steps == FOLDS + 4
    assert RunMetric.objects.filter(run=run, name="after/escalate_recall").exists()
    assert RunMetric.objects.filter(run=run, name="calibration/escalate_precision").exists()

    evaluation = run.evaluation
    assert evaluation["kind"] == "intent_router" and evaluation["messages"] == 15 * 8
    assert evaluation["before"]["version"] == "router-1"
    assert evaluation["after"]["version"] == version.name
    assert evaluation["after"]["escalate_recall"] == version.eval_recall
    # "before" is the shipped router measured on the same messages
    rows = _few_per_class("eval", 8)
    shipped = router_evaluate(
        router_shipped(), part="eval", rows=rows, vectors=texts_embed([r.text for r in rows])
    )
    assert evaluation["before"]["escalate_precision"] == shipped.escalate_precision
    assert evaluation["before"]["escalate_recall"] == shipped.escalate_recall
    assert evaluation["before"]["critical_missed"] == len(shipped.critical_missed)
    safety = next(c for c in evaluation["classes"] if c["label"] == "safety")
    assert safety["support"] == 8
    assert safety["before"]["recall"] == shipped.per_class["safety"]["recall"]

    client.force_login(ml_engineer)
    page = client.get(f"/admin/training/trainingrun/{run.pk}/change/").content.decode()
    assert 'data-testid="router-before-after"' in page and version.name in page
    assert f"{shipped.escalate_recall:.3f}" in page
    assert 'data-testid="router-per-class"' in page


def test_the_gate_refuses_a_worse_router_an_admin_forces_it_and_a_rollback_restores_the_live_one(
    router_settings, snapshot, ml_engineer, admin_member, run_in_sync, pipeline
):
    run = run_in_sync(
        snapshot=snapshot, created_by=ml_engineer, preset="intent_router", hyperparameters=QUICK
    )
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    run = run_approve(run=run, by=ml_engineer)
    name = run.router_version.name

    with pytest.raises(DeploymentGateRefused) as refused:
        adapter_deploy(run=run, by=ml_engineer)
    assert "escalate-or-not recall" in str(refused.value)
    assert refused.value.verdict.baseline.startswith("router-1, the live router")
    with pytest.raises(PermissionDenied):
        adapter_deploy(run=run, by=ml_engineer, force_reason="we need it live for the demo")
    with pytest.raises(DeploymentError):
        adapter_deploy(run=run, by=admin_member, force_reason="why not")
    assert _routing() == "router-1"
    assert pipeline.ask(ConversationFactory(), "How do I read my meter?").router_version == (
        "router-1"
    )

    reason = "Agents report router-1 misses the new outage wording; accepting fewer escalations."
    deployment = adapter_deploy(run=run, by=admin_member, force_reason=reason)

    assert deployment.forced_reason == reason and deployment.kind == AdapterDeployment.Kind.ROUTER
    assert "not better" in deployment.gate_summary
    assert _routing() == name
    assert pipeline.ask(ConversationFactory(), "How do I read my meter?").router_version == name

    assert adapter_rollback(by=ml_engineer, kind=AdapterDeployment.Kind.ROUTER) is None

    assert _routing() == "router-1"
    deployment.refresh_from_db()
    assert not deployment.active and deployment.rolled_back_at is not None
    assert pipeline.ask(ConversationFactory(), "How do I read my meter?").router_version == (
        "router-1"
    )
    with pytest.raises(DeploymentError):
        adapter_rollback(by=ml_engineer, kind=AdapterDeployment.Kind.ROUTER)


def test_a_router_at_least_as_good_as_the_live_one_deploys_without_a_reason(
    settings, tmp_path, snapshot, ml_engineer, run_in_sync, pipeline
):
    # messages the shipped router escalates none of: any version is at least as good
    missed = [
        LabelledText("reverse the last DD, it was way more than the bill", "billing_dispute"),
        LabelledText("for the last time, I don't have a smart meter", "frustration"),
        LabelledText("what a shock, the installer didn't show up", "sarcasm"),
    ]
    settings.ROUTER_EVAL_PART = _write(tmp_path / "eval.jsonl", missed)
    settings.ROUTER_REFRESH_SECONDS = 0
    run = run_in_sync(
        snapshot=snapshot, created_by=ml_engineer, preset="intent_router", hyperparameters=QUICK
    )
    run = run_approve(run=run, by=ml_engineer)

    deployment = adapter_deploy(run=run, by=ml_engineer)

    assert deployment.forced_reason == "" and deployment.router_version == run.router_version
    assert deployment.replaced_router_version.name == "router-1"
    turn = pipeline.ask(ConversationFactory(), "How do I read my meter?")
    assert turn.router_version == run.router_version.name


@pytest.mark.django_db(transaction=True)
def test_cancelling_an_intent_router_run_terminates_its_child_and_keeps_no_version(
    snapshot, ml_engineer
):
    import os
    import threading
    import time

    from django.db import connection

    from training.services.runs import run_cancel, run_create
    from training.tasks import training_run_execute_task

    # all the shipped rows: minutes of training, cancelled at its first step
    run = run_create(
        snapshot=snapshot, created_by=ml_engineer, preset="intent_router", enqueue=False
    )
    pids = []

    def cancel_when_started():
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                row = TrainingRun.objects.filter(pk=run.pk).values("child_pid", "step").get()
                if row["child_pid"] and row["step"] >= 1:
                    pids.append(row["child_pid"])
                    run_cancel(run=TrainingRun.objects.get(pk=run.pk), by=ml_engineer)
                    return
                time.sleep(0.1)
        finally:
            connection.close()

    watcher = threading.Thread(target=cancel_when_started)
    watcher.start()
    training_run_execute_task(run.pk)  # the worker, supervising the child
    watcher.join()

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.CANCELLED
    assert run.router_version is None
    assert not RouterVersion.objects.filter(name=f"router-run-{run.pk}").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)  # the child is gone
