"""Online RL after PPO: GRPO and RLOO runs, their reward sources, and the guards that
stop any online run (PPO, GRPO, RLOO) whose policy drifts too far."""

from __future__ import annotations

import sys

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from tests.training.conftest import FAST_ONLINE
from training.models import TrainingRun
from training.selectors import run_guard_limits
from training.services.guards import (
    GUARD_KL,
    GUARD_LENGTH,
    AnswerLengths,
    GuardLimits,
    OnlineRunGuard,
)
from training.services.runs import run_create

# --- GRPO and RLOO end to end ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["grpo", "rloo"])
@pytest.mark.django_db(transaction=True)
def test_an_online_run_trains_against_the_reward_model_end_to_end(
    kind, run_in_sync, snapshot, tiny_model_dir, reward_run
):
    run = run_in_sync(
        snapshot=snapshot,
        preset=f"tiny_cpu_{kind}",
        base_model=str(tiny_model_dir),
        reward_run=reward_run,
        hyperparameters=FAST_ONLINE,
    )

    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    names = set(run.metrics.values_list("name", flat=True))
    # the reward model's score per step, and the guard's measures next to it
    assert {"reward", "rewards/reward_model/mean", GUARD_LENGTH, GUARD_KL} <= names
    assert run.step == run.total_steps == 3
    assert "adapter/adapter_model.safetensors" in run.manifest["files"]
    assert run.manifest["reward_run"] == reward_run.pk
    assert run.evaluation["questions"] == 2  # before/after on held-out questions


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_guard_stops_an_online_run_and_says_why(
    run_in_sync, snapshot, tiny_model_dir, reward_run, client, ml_engineer
):
    run = run_in_sync(
        snapshot=snapshot,
        preset="tiny_cpu_grpo",
        base_model=str(tiny_model_dir),
        reward_run=reward_run,
        # a learning rate that throws the policy far from the base model at once
        hyperparameters={
            **FAST_ONLINE,
            "learning_rate": 0.3,
            "max_steps": 20,
            "guard_max_kl": 0.01,
        },
    )

    assert run.status == TrainingRun.Status.FAILED
    assert run.error.startswith("stopped: KL ")
    assert "exceeded the limit 0.01 at step" in run.error
    stopped_at = int(run.error.rsplit(" ", 1)[1])
    assert stopped_at < 20
    assert run.step == stopped_at  # no step was trained after the guard tripped
    tripping = run.metrics.get(name=GUARD_KL, step=stopped_at).value
    assert tripping > 0.01
    assert not run.artifact_prefix  # nothing to approve or deploy

    # the run page says why
    client.force_login(ml_engineer)
    page = client.get(reverse("admin:training_trainingrun_change", args=[run.pk])).content.decode()
    assert "Stopped by a guard" in page
    assert run.error in page


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_guard_stops_ppo_too_whose_loop_ignores_should_training_stop(
    run_in_sync, snapshot, tiny_model_dir, reward_run
):
    run = run_in_sync(
        snapshot=snapshot,
        preset="tiny_cpu_ppo",
        base_model=str(tiny_model_dir),
        reward_run=reward_run,
        hyperparameters={
            **FAST_ONLINE,
            "total_episodes": 80,  # 20 PPO steps of 4 episodes
            "ppo_epochs": 1,
            "response_length": 8,
            "learning_rate": 0.3,
            "guard_max_kl": 0.01,
        },
    )

    assert run.status == TrainingRun.Status.FAILED
    assert run.error.startswith("stopped: KL ")
    stopped_at = int(run.error.rsplit(" ", 1)[1])
    assert stopped_at < 20
    assert run.step == stopped_at
    # PPO logs no answer length: the guard measured it from the policy's generations
    lengths = run.metrics.filter(name=GUARD_LENGTH).values_list("value", flat=True)
    assert lengths and all(1 <= length <= 8 for length in lengths)


# --- reward sources ------------------------------------------------------------------------


def test_the_judge_cannot_reward_a_run_before_it_passes_its_calibration_gate(
    snapshot, tiny_model_dir
):
    with pytest.raises(ValidationError, match="calibration gate") as refused:
        run_create(
            snapshot=snapshot,
            preset="tiny_cpu_grpo",
            base_model=str(tiny_model_dir),
            reward_source="judge",
            enqueue=False,
        )
    assert "reward_source" in refused.value.message_dict
    assert not TrainingRun.objects.exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_calibrated_judge_rewards_a_grpo_run(run_in_sync, snapshot, tiny_model_dir, monkeypatch):
    # The labeling app's gate says yes (its own tests cover how agreement is measured).
    monkeypatch.setattr("labeling.judge.judge_usable_as_reward", lambda: True)

    run = run_in_sync(
        snapshot=snapshot,
        preset="tiny_cpu_grpo",
        base_model=str(tiny_model_dir),
        reward_source="judge",
        hyperparameters={**FAST_ONLINE, "max_steps": 2},
    )

    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    scores = list(run.metrics.filter(name="rewards/judge/mean").values_list("value", flat=True))
    assert len(scores) == 2
    assert all(1.0 <= score <= 5.0 for score in scores)  # the judge's 1-5 scale


def test_grpo_and_rloo_need_a_reward_model_or_the_judge(snapshot, tiny_model_dir):
    for kind in ("grpo", "rloo"):
        with pytest.raises(ValidationError, match="needs a reward model"):
            run_create(snapshot=snapshot, preset=f"tiny_cpu_{kind}", base_model=str(tiny_model_dir))


def test_ppo_is_rewarded_by_a_reward_model_only(snapshot, tiny_model_dir, reward_run):
    with pytest.raises(ValidationError, match="reward model only"):
        run_create(
            snapshot=snapshot,
            preset="tiny_cpu_ppo",
            base_model=str(tiny_model_dir),
            reward_run=reward_run,
            reward_source="judge",
        )


def test_without_trl_experimental_ppo_a_ppo_run_is_refused_cleanly(
    snapshot, tiny_model_dir, reward_run, monkeypatch
):
    # TRL 1.13 deleted trl.experimental.ppo; simulate that install.
    monkeypatch.setitem(sys.modules, "trl.experimental.ppo", None)

    with pytest.raises(ValidationError, match=r"removed in 1\.13") as refused:
        run_create(
            snapshot=snapshot,
            preset="tiny_cpu_ppo",
            base_model=str(tiny_model_dir),
            reward_run=reward_run,
        )
    assert "GRPO or RLOO" in str(refused.value)

    # and a worker on such an install fails a queued PPO run with the same reason
    from training.services import trl_backend

    spec = {"algorithm": "ppo", "hyperparameters": {}, "base_model_path": str(tiny_model_dir)}
    with pytest.raises(trl_backend.TrainingConfigError, match=r"removed in 1\.13"):
        trl_backend._train_ppo(spec, lambda event: None, "cpu")


# --- the guard's arithmetic ----------------------------------------------------------------


def test_the_kl_guard_reads_ppo_kl_per_answer_and_stops_with_a_plain_reason():
    guard = OnlineRunGuard(GuardLimits(max_kl=4.0, max_length_drift=None))

    assert guard.observe(step=39, logs={"objective/kl": 3.9}) is None
    reason = guard.observe(step=40, logs={"objective/kl": 6.2})

    assert reason == "stopped: KL 6.2 exceeded the limit 4.0 at step 40"


def test_grpo_kl_per_token_is_scaled_to_the_answer():
    guard = OnlineRunGuard(GuardLimits(max_kl=4.0, max_length_drift=None))
    logs = {"kl": 0.25, "completions/mean_length": 20.0}

    reason = guard.observe(step=7, logs=logs)

    assert logs[GUARD_KL] == pytest.approx(5.0)  # 0.25 nats per token x 20 tokens
    assert logs[GUARD_LENGTH] == 20.0
    assert reason == "stopped: KL 5.0 exceeded the limit 4.0 at step 7"


def test_the_length_guard_compares_with_the_first_steps():
    guard = OnlineRunGuard(GuardLimits(max_kl=None, max_length_drift=0.5, warmup_steps=2))

    for step, length in ((1, 14.0), (2, 16.0), (3, 22.0)):  # start 15, then +47%
        assert guard.observe(step=step, logs={"completions/mean_length": length}) is None
    reason = guard.observe(step=4, logs={"completions/mean_length": 3.0})

    assert reason == (
        "stopped: mean answer length 3.0 tokens drifted 80% from 15.0 (limit 50%) at step 4"
    )


def test_a_switched_off_guard_never_stops():
    guard = OnlineRunGuard(GuardLimits(max_kl=None, max_length_drift=None))
    for step in range(1, 6):
        logs = {"objective/kl": 100.0 * step, "completions/mean_length": 1.0 + 50 * step}
        assert guard.observe(step=step, logs=logs) is None


def test_guard_limits_come_from_settings_and_a_run_can_override_them(
    settings, snapshot, tiny_model_dir, reward_run
):
    settings.TRAINING_GUARD_MAX_KL = 4.0
    settings.TRAINING_GUARD_MAX_LENGTH_DRIFT = 0.5
    default = run_create(
        snapshot=snapshot,
        preset="tiny_cpu_rloo",
        base_model=str(tiny_model_dir),
        reward_run=reward_run,
        enqueue=False,
    )
    custom = run_create(
        snapshot=snapshot,
        preset="tiny_cpu_rloo",
        base_model=str(tiny_model_dir),
        reward_run=reward_run,
        enqueue=False,
        hyperparameters={"guard_max_kl": 8, "guard_max_length_drift": None},
    )
    offline = run_create(
        snapshot=snapshot, preset="tiny_cpu_dpo", base_model=str(tiny_model_dir), enqueue=False
    )

    assert run_guard_limits(run=default) == GuardLimits(
        max_kl=4.0, max_length_drift=0.5, warmup_steps=settings.TRAINING_GUARD_WARMUP_STEPS
    )
    assert run_guard_limits(run=custom).max_kl == 8.0
    assert run_guard_limits(run=custom).max_length_drift is None  # switched off
    assert run_guard_limits(run=offline) is None  # DPO samples nothing: nothing to guard


def test_answer_lengths_are_recorded_from_a_policy_that_logs_none(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lengths = AnswerLengths(eos_token_id=tokenizer.eos_token_id)
    lengths.wrap(model)

    prompt = torch.tensor([tokenizer("User: Hi\nAssistant:")["input_ids"]])
    model.generate(input_ids=prompt, max_new_tokens=5, do_sample=False)

    assert 1 <= lengths.take() <= 5
    assert lengths.take() is None  # taken once per logged step


@pytest.mark.parametrize(
    "override",
    [
        {"guard_max_kl": "high"},
        {"guard_max_kl": -1},
        {"guard_max_length_drift": True},
        {"guard_warmup_steps": 0},
    ],
)
def test_a_guard_override_that_is_not_a_number_is_refused_with_a_400(
    override, api_client, ml_engineer, snapshot, tiny_model_dir, reward_run
):
    api_client.force_authenticate(ml_engineer)

    response = api_client.post(
        "/api/training/runs/",
        {
            "snapshot": snapshot.pk,
            "preset": "tiny_cpu_grpo",
            "base_model": str(tiny_model_dir),
            "reward_run": reward_run.pk,
            "hyperparameters": override,
        },
        format="json",
    )

    assert response.status_code == 400
    assert "guard" in str(response.json()["fields"]["hyperparameters"])
    assert not TrainingRun.objects.filter(algorithm="grpo").exists()
