"""Deploying an approved adapter changes what the assistant's hf provider answers."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from chat.assistant import Passage, Prepared, assistant_draft
from chat.assistant import hf as hf_provider
from chat.assistant.contract import Retrieval, Sentiment
from training.services.deployments import adapter_deploy, adapter_rollback
from training.services.runs import run_approve

pytestmark = pytest.mark.django_db(transaction=True)

PREPARED = Prepared(
    passages=[Passage(slug="security", title="Security", text="Settings > Security.", score=0.7)],
    sentiment=Sentiment(label="neutral", score=0.0, method="vader"),
    retrieval=Retrieval(top_score=0.7, min_score=0.3, no_answer=False),
)
QUESTION = "How do I reset my password?"


@pytest.fixture
def hf_assistant(settings, tiny_model_dir):
    settings.ASSISTANT_PROVIDER = "hf"
    settings.HF_BASE_MODEL_PATH = str(tiny_model_dir)
    settings.HF_MAX_NEW_TOKENS = 10
    settings.HF_ALLOW_TOY_MODEL = True  # the tiny starter is a toy: this checks mechanics
    hf_provider._runtimes.clear()
    yield
    hf_provider._runtimes.clear()


@pytest.fixture(autouse=True)
async def _close_worker_thread_connections():
    """sync_to_async's worker thread keeps its connection (CONN_MAX_AGE): close it, so
    the test database can be dropped."""
    yield
    from django.db import connections

    await sync_to_async(connections.close_all)()


async def _answer(adapter_name: str = "") -> tuple[str, str]:
    text, info = await assistant_draft(
        question=QUESTION, history=[], prepared=PREPARED, adapter_name=adapter_name
    )
    return text, info.adapter


async def test_deploy_changes_the_answer_without_restart_and_rollback_restores_it(
    hf_assistant, succeeded_run, ml_engineer
):
    run = await sync_to_async(succeeded_run)()
    await sync_to_async(run_approve)(run=run, by=ml_engineer)
    before, adapter_before = await _answer()

    await sync_to_async(adapter_deploy)(run=run, by=ml_engineer)
    after, adapter_after = await _answer()

    await sync_to_async(adapter_rollback)(by=ml_engineer)
    restored, adapter_restored = await _answer()

    assert (adapter_before, adapter_after, adapter_restored) == ("", run.adapter_name, "")
    assert after != before
    assert restored == before


async def test_a_conversation_can_pick_a_tenant_adapter(hf_assistant, succeeded_run, ml_engineer):
    run = await sync_to_async(succeeded_run)()
    await sync_to_async(run_approve)(run=run, by=ml_engineer)
    await sync_to_async(adapter_deploy)(run=run, by=ml_engineer, slot="acme")

    _, default_adapter = await _answer()
    _, tenant_adapter = await _answer("acme")

    assert default_adapter == ""
    assert tenant_adapter == run.adapter_name
