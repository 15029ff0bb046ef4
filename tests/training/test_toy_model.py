"""The offline starter model is a mechanics-only toy: marked, and never served to
customers by the hf provider unless an operator opts in."""

from __future__ import annotations

import io

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from chat.assistant import AssistantError, Passage, Prepared, assistant_draft
from chat.assistant import hf as hf_provider
from chat.assistant.contract import TOY_MODEL_MARKER, Retrieval, Sentiment
from training.services.starter import is_toy_model

PREPARED = Prepared(
    passages=[Passage(slug="security", title="Security", text="Settings > Security.", score=0.7)],
    sentiment=Sentiment(label="neutral", score=0.3, method="vader"),
    retrieval=Retrieval(top_score=0.8, min_score=0.35, no_answer=False),
)


@pytest.fixture(autouse=True)
async def _close_worker_thread_connections():
    """sync_to_async's worker thread keeps its connection: close it, so the test database
    can be dropped."""
    yield
    from django.db import connections

    await sync_to_async(connections.close_all)()


@pytest.fixture
def hf_on_the_toy(settings, tiny_model_dir):
    settings.ASSISTANT_PROVIDER = "hf"
    settings.HF_BASE_MODEL_PATH = str(tiny_model_dir)
    settings.HF_MAX_NEW_TOKENS = 6
    hf_provider._runtimes.clear()
    yield settings
    hf_provider._runtimes.clear()


def test_the_starter_model_is_marked_as_a_toy_and_its_build_prints_progress(tmp_path):
    from django.core.management import call_command

    out = io.StringIO()
    call_command("build_starter_model", output=str(tmp_path / "starter"), steps=10, stdout=out)

    printed = out.getvalue()
    assert "step 10/10" in printed and "loss" in printed
    assert "mechanics-only toy" in printed
    assert is_toy_model(tmp_path / "starter")
    marker = (tmp_path / "starter" / TOY_MODEL_MARKER).read_text()
    assert "MECHANICS-ONLY TOY" in marker and "HF_ALLOW_TOY_MODEL" in marker


@pytest.mark.django_db(transaction=True)
async def test_the_hf_provider_refuses_the_toy_at_warm_up_and_first_use(hf_on_the_toy):
    from chat.assistant import assistant_warm_up

    hf_on_the_toy.HF_ALLOW_TOY_MODEL = False

    with pytest.raises(AssistantError, match="HF_ALLOW_TOY_MODEL"):
        await assistant_warm_up()
    with pytest.raises(AssistantError, match="mechanics-only toy"):
        await assistant_draft(question="How do I reset my password?", history=[], prepared=PREPARED)
    assert hf_provider._runtimes == {}  # nothing loaded that a later turn could use


@pytest.mark.django_db(transaction=True)
async def test_a_customer_turn_on_the_toy_fails_honestly_instead_of_answering(
    hf_on_the_toy, monkeypatch
):
    from chat import assistant, turns
    from chat.models import Conversation, Message
    from chat.services import customer_message_receive
    from tests.factories import ConversationFactory

    hf_on_the_toy.HF_ALLOW_TOY_MODEL = False

    async def prepare(**kwargs):
        return PREPARED

    monkeypatch.setattr(assistant, "assistant_prepare", prepare)  # retrieval found an article
    conversation = await database_sync_to_async(ConversationFactory)()
    received = await database_sync_to_async(customer_message_receive)(
        conversation=conversation,
        text="How do I reset my password?",
        client_id="toy-1",
        author=None,
        rate_subject="toy-test",
    )

    turn = await turns.turn_await(turn_id=received.turn.pk, conversation_id=conversation.pk)

    assert turn.status == "failed"
    assert "mechanics-only toy" in turn.error
    roles = await sync_to_async(
        lambda: list(conversation.messages.values_list("role", flat=True))
    )()
    assert Message.Role.ASSISTANT not in roles  # no toy output reached the customer
    assert Message.Role.SYSTEM in roles  # the customer was told the turn failed
    refreshed = await sync_to_async(Conversation.objects.get)(pk=conversation.pk)
    assert refreshed.needs_attention


@pytest.mark.django_db(transaction=True)
async def test_an_operator_can_opt_in_to_serve_the_toy(hf_on_the_toy):
    hf_on_the_toy.HF_ALLOW_TOY_MODEL = True

    text, info = await assistant_draft(
        question="How do I reset my password?", history=[], prepared=PREPARED
    )

    assert info.provider == "hf"
    assert text
