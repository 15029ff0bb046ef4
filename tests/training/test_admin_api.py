from __future__ import annotations

import io
import json
import zipfile

import pytest
from botocore.stub import Stubber
from django.urls import reverse

from training.models import AdapterDeployment, TrainingRun
from training.services.runs import run_metrics_record


@pytest.fixture
def staff_client(client, ml_engineer):
    client.force_login(ml_engineer)
    return client


def test_run_page_shows_progress_chart_evaluation_and_actions(staff_client, succeeded_run):
    run = succeeded_run()
    run_metrics_record(run=run, step=1, total=2, metrics={"rewards/margins": 0.1, "loss": 0.6})
    run_metrics_record(run=run, step=2, total=2, metrics={"rewards/margins": 0.4, "loss": 0.5})

    page = staff_client.get(reverse("admin:training_trainingrun_change", args=[run.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="training-chart"' in html
    assert reverse("admin:training_trainingrun_live", args=[run.pk]) in html
    assert 'value="approve"' in html  # ML engineers hold approve_trainingrun
    assert "Toy starter model (mechanics only)" in html  # trained on the tiny starter

    live = staff_client.get(reverse("admin:training_trainingrun_live", args=[run.pk])).json()
    assert live["status"] == "succeeded"
    assert live["metrics"]["rewards/margins"] == [[1, 0.1], [2, 0.4]]
    assert live["step"] == live["total_steps"] == 2


def test_artifacts_download_as_a_zip_with_manifest(staff_client, succeeded_run):
    run = succeeded_run()
    response = staff_client.get(reverse("admin:training_trainingrun_download", args=[run.pk]))
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    names = set(archive.namelist())
    assert f"run-{run.pk}/adapter/adapter_config.json" in names
    manifest = json.loads(archive.read(f"run-{run.pk}/manifest.json"))
    assert manifest["base_model"] == run.base_model


def test_approve_deploy_and_rollback_from_the_run_page(staff_client, succeeded_run, ml_engineer):
    run = succeeded_run()
    act = reverse("admin:training_trainingrun_act", args=[run.pk])

    staff_client.post(act, {"action": "approve"})
    staff_client.post(act, {"action": "deploy", "slot": ""})
    run.refresh_from_db()
    assert run.approved_by == ml_engineer
    assert AdapterDeployment.objects.get(active=True).run == run

    staff_client.post(act, {"action": "rollback", "slot": ""})
    assert not AdapterDeployment.objects.filter(active=True).exists()


def test_a_reviewer_cannot_approve_from_the_run_page(client, reviewer, succeeded_run):
    run = succeeded_run()
    reviewer.is_staff = True
    client.force_login(reviewer)
    client.post(reverse("admin:training_trainingrun_act", args=[run.pk]), {"action": "approve"})
    run.refresh_from_db()
    assert run.approved_at is None


def test_admin_add_form_creates_and_queues_a_run(
    staff_client, snapshot, tiny_model_dir, monkeypatch
):
    queued = []
    monkeypatch.setattr(
        "training.services.runs.run_enqueue", lambda *, run_id: queued.append(run_id)
    )
    response = staff_client.post(
        reverse("admin:training_trainingrun_add"),
        {
            "name": "demo",
            "preset": "tiny_cpu_kto",
            "snapshot": snapshot.pk,
            "algorithm": "kto",
            "base_model": str(tiny_model_dir),
            "seed": 0,
            "device": "auto",
            "lora_r": 8,
            "lora_alpha": 16,
            "lora_dropout": 0.0,
            "lora_target_modules": "[]",
            "hyperparameters": json.dumps({"learning_rate": 0.001}),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    run = TrainingRun.objects.get()
    assert (run.name, run.algorithm, run.preset, run.status) == (
        "demo",
        "kto",
        "tiny_cpu_kto",
        "queued",
    )
    assert run.created_by.username == "morgan"


def test_admin_add_form_refuses_a_hub_id(staff_client, snapshot):
    response = staff_client.post(
        reverse("admin:training_trainingrun_add"),
        {
            "snapshot": snapshot.pk,
            "algorithm": "dpo",
            "base_model": "mistralai/Mistral-7B-v0.1",
            "seed": 0,
            "device": "auto",
            "lora_r": 8,
            "lora_alpha": 16,
            "lora_dropout": 0.0,
            "lora_target_modules": "[]",
            "hyperparameters": "{}",
        },
    )
    assert response.status_code == 200
    assert "hub ids are never downloaded" in response.content.decode()
    assert not TrainingRun.objects.exists()


def test_api_creates_a_run_from_a_preset_and_reports_progress(
    api_client, ml_engineer, snapshot, tiny_model_dir, monkeypatch
):
    monkeypatch.setattr("training.services.runs.run_enqueue", lambda *, run_id: None)
    api_client.force_authenticate(ml_engineer)
    response = api_client.post(
        "/api/training/runs/",
        {
            "snapshot": snapshot.pk,
            "preset": "rlaif_blog_reward_model",
            "base_model": str(tiny_model_dir),
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["algorithm"], body["lora_r"], body["lora_alpha"]) == ("reward_model", 32, 64)
    assert body["hyperparameters"]["learning_rate"] == 1e-5
    live = api_client.get(f"/api/training/runs/{body['id']}/live/").json()
    assert live["status"] == "queued"


def test_api_refuses_runs_to_users_without_training_permissions(api_client, agent, snapshot):
    api_client.force_authenticate(agent)
    response = api_client.post(
        "/api/training/runs/", {"snapshot": snapshot.pk, "algorithm": "dpo"}, format="json"
    )
    assert response.status_code == 403


def test_an_s3_base_model_is_downloaded_once_through_boto3(settings, tmp_path):
    import boto3

    from training.services.base_models import base_model_local_path

    settings.TRAINING_OUTPUT_DIR = tmp_path
    client = boto3.client("s3", region_name="us-east-1")
    stubber = Stubber(client)
    stubber.add_response(
        "list_objects_v2",
        {
            "Contents": [
                {"Key": "models/starter/config.json", "Size": 2},
                {"Key": "models/starter/model.safetensors", "Size": 4},
            ],
            "IsTruncated": False,
        },
        {"Bucket": "loopdesk-models", "Prefix": "models/starter/"},
    )
    downloads = []

    def download_file(bucket, key, filename):
        downloads.append((bucket, key))
        with open(filename, "w") as handle:
            handle.write("{}")

    client.download_file = download_file  # the transfer manager is not stubbable
    with stubber:
        path = base_model_local_path(uri="s3://loopdesk-models/models/starter", client=client)
    assert (path / "config.json").exists()
    assert downloads == [
        ("loopdesk-models", "models/starter/config.json"),
        ("loopdesk-models", "models/starter/model.safetensors"),
    ]
    # cached: a second resolution does not call S3 at all
    assert base_model_local_path(uri="s3://loopdesk-models/models/starter", client=None) == path


def test_build_starter_model_command_writes_a_reloadable_model(settings, tmp_path):
    from django.core.management import call_command
    from transformers import AutoModelForCausalLM, AutoTokenizer

    call_command("build_starter_model", output=str(tmp_path / "starter"), steps=2)
    assert AutoTokenizer.from_pretrained(tmp_path / "starter").chat_template
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "starter").config.num_hidden_layers == 2


@pytest.mark.parametrize("role", ["customer", "agent", "reviewer"])
def test_runs_and_deployments_are_hidden_from_everyone_but_training_staff(
    api_client, succeeded_run, request, role
):
    """Issue 11 item 1: a run's evaluation quotes other people's conversations and
    reviewers' reference answers; only ML engineers and admins read runs."""
    run = succeeded_run()
    api_client.force_authenticate(request.getfixturevalue(role))

    for url in (
        "/api/training/runs/",
        f"/api/training/runs/{run.pk}/",
        f"/api/training/runs/{run.pk}/live/",
        "/api/training/deployments/",
    ):
        response = api_client.get(url)
        assert response.status_code == 403, url
        assert response.json()["code"] == "permission_denied"
        assert "evaluation" not in response.content.decode()


def test_training_staff_list_runs_newest_first(api_client, succeeded_run, admin_member):
    """Issue 11 item 8: the run list answered 500 for everyone (its pagination ordered
    by a field runs do not have)."""
    older, newer = succeeded_run(), succeeded_run()
    api_client.force_authenticate(admin_member)

    response = api_client.get("/api/training/runs/")

    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [newer.pk, older.pk]


def test_a_refused_training_move_has_the_one_error_shape(api_client, succeeded_run, ml_engineer):
    run = succeeded_run()
    api_client.force_authenticate(ml_engineer)

    response = api_client.post(f"/api/training/runs/{run.pk}/deploy/", {}, format="json")

    assert response.status_code == 409
    assert response.json() == {
        "code": "deployment_refused",
        "message": "Approve the run before deploying its adapter.",
    }


def test_a_run_on_a_real_base_model_carries_no_toy_label(staff_client, succeeded_run, tmp_path):
    from training.selectors import run_base_model_is_toy

    real = tmp_path / "llama-3-8b"
    real.mkdir()
    (real / "config.json").write_text("{}")
    toy, not_toy = succeeded_run(), succeeded_run(base_model=str(real))

    page = staff_client.get(reverse("admin:training_trainingrun_change", args=[not_toy.pk]))

    assert run_base_model_is_toy(run=toy)  # the tiny starter folder holds TOY_MODEL.txt
    assert not run_base_model_is_toy(run=not_toy)
    assert "Toy starter model" not in page.content.decode()
