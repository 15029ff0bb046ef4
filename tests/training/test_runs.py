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
