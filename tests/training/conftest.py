"""The tiny starter model every training test reuses, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.services.starter import qa_text, starter_model_build

SUPPORT_QA = [
    ("How do I reset my password?", "Open Settings > Security and tap Reset password."),
    ("When is my bill due?", "Your bill is due on the date shown under Billing > Overview."),
    ("How do I install the Hub?", "Follow Settings > Devices > Add device in the app."),
    ("Can I cancel my plan?", "Yes, within 14 days at no cost under Plans > My plan."),
    ("How do I pay by direct debit?", "Add SEPA direct debit under Billing > Payment methods."),
    ("Why is my bill high?", "Check your usage under Billing > Usage and compare months."),
    ("How do I turn on two-factor?", "Turn it on under Settings > Security > Two-factor."),
    ("When does my supply start?", "Your supply normally starts 21 days after you sign up."),
]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tokenizer + 2-layer Llama trained for a few steps on support Q&A (offline)."""
    texts = [qa_text(question=q, answer=a) for q, a in SUPPORT_QA] * 4
    return starter_model_build(
        output_dir=tmp_path_factory.mktemp("starter"), texts=texts, steps=8, seed=0
    )


def _pairs() -> list[dict]:
    rows = [
        {"prompt": q, "chosen": a, "rejected": "I don't know.", "split": "train"}
        for q, a in SUPPORT_QA
    ]
    rows[-1]["split"] = rows[-2]["split"] = "test"
    return rows


def _kto() -> list[dict]:
    good = [{"prompt": q, "completion": a, "label": True} for q, a in SUPPORT_QA]
    bad = [{"prompt": q, "completion": "No idea.", "label": False} for q, _ in SUPPORT_QA]
    rows = good + bad
    rows[len(SUPPORT_QA) - 1]["split"] = "test"
    return rows


@pytest.fixture
def snapshot(db):
    from labeling.services import snapshot_create_from_rows

    return snapshot_create_from_rows(name="support", rows={"pair": _pairs(), "kto": _kto()})


@pytest.fixture
def run_in_sync(django_capture_on_commit_callbacks):
    """Create a run and execute it inline (django-q2 sync mode) through the queue."""
    from training.services.runs import run_create

    def create_and_run(**kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            run = run_create(**kwargs)
        run.refresh_from_db()
        return run

    return create_and_run


FAST = {"max_steps": 3, "batch_size": 4, "eval_prompts": 2, "eval_max_new_tokens": 6}


@pytest.fixture(scope="session")
def tiny_adapter_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A LoRA adapter on the tiny model with a strong random update (so greedy answers
    visibly change), saved where a run saves its adapter."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    out = tmp_path_factory.mktemp("work") / "adapter"
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(
            r=8,
            lora_alpha=64,
            target_modules=["q_proj", "v_proj"],
            task_type="CAUSAL_LM",
            init_lora_weights=False,
        ),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    model.save_pretrained(out)
    return out


def evaluation_with(*, good_after: int, good_before: int = 0, questions: int = 4) -> dict:
    """A run's evaluation as the platform measures it (``evaluation_build``, the judge):
    on ``questions`` held-out questions, ``good_before`` / ``good_after`` answers repeat
    the reference answer (the judge gives 5) and the others are empty (1)."""
    from training.services.evaluation import evaluation_build

    answers = [
        {
            "prompt": question,
            "reference": reference,
            "before": reference if i < good_before else "",
            "after": reference if i < good_after else "",
        }
        for i, (question, reference) in enumerate(SUPPORT_QA[:questions])
    ]
    return evaluation_build(result={"summary": {}, "answers": answers})


@pytest.fixture
def succeeded_run(snapshot, tiny_model_dir, tiny_adapter_dir, ml_engineer):
    """A DPO run brought to "succeeded" through the services, with a stored adapter and
    an evaluation: by default 2 of 4 held-out answers good after, none before (so it
    passes the deployment gate against the base model)."""
    from training.services.artifacts import artifacts_store
    from training.services.runs import run_create, run_start, run_succeed

    def make(*, good_after: int = 2, good_before: int = 0, base_model: str = "", **kwargs):
        run = run_create(
            snapshot=snapshot,
            created_by=ml_engineer,
            preset="tiny_cpu_dpo",
            base_model=base_model or str(tiny_model_dir),
            enqueue=False,
            **kwargs,
        )
        run_start(run_id=run.pk)
        prefix, manifest = artifacts_store(
            run=run, local_dir=tiny_adapter_dir.parent, manifest={"base_model": run.base_model}
        )
        evaluation = evaluation_with(good_after=good_after, good_before=good_before)
        return run_succeed(
            run_id=run.pk, artifact_prefix=prefix, manifest=manifest, evaluation=evaluation
        )

    return make


@pytest.fixture(scope="session")
def tiny_reward_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A reward model on the tiny model (score head, random init), saved where a
    reward_model run saves its artifact."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(2)
    out = tmp_path_factory.mktemp("reward-work") / "reward_model"
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def reward_run(snapshot, tiny_model_dir, tiny_reward_model_dir, ml_engineer):
    """A reward_model run brought to "succeeded" through the services, with its model."""
    from training.services.artifacts import artifacts_store
    from training.services.runs import run_create, run_start, run_succeed

    run = run_create(
        snapshot=snapshot,
        created_by=ml_engineer,
        preset="tiny_cpu_reward_model",
        base_model=str(tiny_model_dir),
        enqueue=False,
    )
    run_start(run_id=run.pk)
    prefix, manifest = artifacts_store(
        run=run, local_dir=tiny_reward_model_dir.parent, manifest={"base_model": run.base_model}
    )
    return run_succeed(run_id=run.pk, artifact_prefix=prefix, manifest=manifest, evaluation={})


# GRPO / RLOO on the tiny model: 3 steps of 4 answers (2 questions x 2), 8 new tokens.
FAST_ONLINE = {
    **FAST,
    "num_generations": 2,
    "max_completion_length": 8,
    "threads": 1,
}
