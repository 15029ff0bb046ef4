from __future__ import annotations

import pytest
from peft import PeftModel
from transformers import AutoModelForCausalLM

from tests.training.conftest import FAST
from training.models import TrainingRun
from training.services.artifacts import artifact_local_dir

pytestmark = pytest.mark.slow


def test_dpo_run_trains_stores_metrics_adapter_and_evaluation(
    run_in_sync, snapshot, tiny_model_dir, ml_engineer
):
    # Given a snapshot of preference pairs, when an ML engineer queues a DPO run
    run = run_in_sync(
        snapshot=snapshot,
        created_by=ml_engineer,
        preset="tiny_cpu_dpo",
        base_model=str(tiny_model_dir),
        hyperparameters=FAST,
    )

    # then the training worker ran it to success
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error + run.log_tail
    # with per-step DPO metrics stored
    names = set(run.metrics.values_list("name", flat=True))
    assert {"loss", "rewards/margins", "rewards/accuracies"} <= names
    assert run.step == run.total_steps == 3
    # an adapter PEFT can load on top of the base model
    adapter = artifact_local_dir(run=run, kind="adapter")
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter)
    assert model.peft_config["default"].r == 8
    # a manifest naming the base model, snapshot and code version
    assert run.manifest["base_model"] == str(tiny_model_dir)
    assert run.manifest["snapshot"]["id"] == snapshot.pk
    assert run.manifest["code_version"]
    assert "adapter/adapter_config.json" in run.manifest["files"]
    # and a before/after evaluation on the held-out questions
    assert run.evaluation["questions"] == 2
    assert {"mean", "share_above_3"} <= set(run.evaluation["before"])
    assert {"before", "after", "prompt"} <= set(run.evaluation["rows"][0])


def test_reward_model_then_ppo_learns_and_deployed_adapter_goes_live(
    run_in_sync, snapshot, tiny_model_dir, ml_engineer, admin_member
):
    # Given a reward model trained on the snapshot's pairs
    reward = run_in_sync(
        snapshot=snapshot,
        created_by=ml_engineer,
        preset="tiny_cpu_reward_model",
        base_model=str(tiny_model_dir),
        hyperparameters={"max_steps": 4, "batch_size": 4},
    )
    assert reward.status == TrainingRun.Status.SUCCEEDED, reward.error + reward.log_tail
    assert "reward_model/config.json" in reward.manifest["files"]
    assert 0.0 <= reward.evaluation["pair_accuracy"] <= 1.0

    # when a PPO run uses it
    ppo = run_in_sync(
        snapshot=snapshot,
        created_by=ml_engineer,
        preset="tiny_cpu_ppo",
        base_model=str(tiny_model_dir),
        reward_run=reward,
        hyperparameters={
            "total_episodes": 8,
            "batch_size": 4,
            "ppo_epochs": 1,
            "response_length": 8,
            "eval_prompts": 1,
            "eval_max_new_tokens": 4,
        },
    )

    # then the PPO metrics (the blog's reward/mean is objective/scores) are stored per step
    assert ppo.status == TrainingRun.Status.SUCCEEDED, ppo.error + ppo.log_tail
    scores = ppo.metrics.filter(name="objective/scores").order_by("step")
    assert [m.step for m in scores] == [1, 2]
    assert ppo.metrics.filter(name="objective/kl").count() == 2
    # and its LoRA policy adapter can be approved and deployed (two PPO steps on the toy
    # usually show no gain: an admin deploys it past the deployment gate with a reason)
    from training.selectors import adapter_live
    from training.services.deployments import adapter_deploy
    from training.services.runs import run_approve

    run_approve(run=ppo, by=ml_engineer)
    adapter_deploy(run=ppo, by=admin_member, force_reason="Checking the PPO adapter loads.")
    live = adapter_live()
    assert live.name == ppo.adapter_name
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), live.path
    )
    assert model.peft_config["default"].task_type == "CAUSAL_LM"


def test_kto_run_learns_from_desirable_and_undesirable_ratings(
    run_in_sync, snapshot, tiny_model_dir
):
    run = run_in_sync(
        snapshot=snapshot,
        preset="tiny_cpu_kto",
        base_model=str(tiny_model_dir),
        hyperparameters=FAST,
    )
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error + run.log_tail
    names = set(run.metrics.values_list("name", flat=True))
    assert "loss" in names
    assert any(name.startswith("rewards/") for name in names)
    assert "adapter/adapter_model.safetensors" in run.manifest["files"]


def test_a_bad_config_fails_the_run_with_the_reason_and_the_worker_goes_on(
    run_in_sync, snapshot, tiny_model_dir, tmp_path
):
    # Given a base model folder that does not exist
    missing = tmp_path / "no-such-model"
    broken = run_in_sync(snapshot=snapshot, preset="tiny_cpu_dpo", base_model=str(missing))

    # then the run failed and says why
    assert broken.status == TrainingRun.Status.FAILED
    assert str(missing) in broken.error
    assert "config.json" in broken.error
    assert broken.finished_at is not None

    # and the same worker process trains the next run
    ok = run_in_sync(
        snapshot=snapshot,
        preset="tiny_cpu_dpo",
        base_model=str(tiny_model_dir),
        hyperparameters={**FAST, "eval_prompts": 0},
    )
    assert ok.status == TrainingRun.Status.SUCCEEDED, ok.error + ok.log_tail


def test_an_error_inside_the_child_fails_the_run_with_the_message(
    run_in_sync, snapshot, tiny_model_dir
):
    # LoRA on a module the model does not have: PEFT raises inside the child process
    run = run_in_sync(
        snapshot=snapshot,
        preset="tiny_cpu_dpo",
        base_model=str(tiny_model_dir),
        lora_target_modules=["no_such_module"],
        hyperparameters=FAST,
    )
    assert run.status == TrainingRun.Status.FAILED
    assert "no_such_module" in run.error
