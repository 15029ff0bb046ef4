"""The hf provider with a tiny local Llama and two tiny LoRA adapters (all built here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chat.assistant import Passage, Prepared, adapters, assistant_draft, assistant_stream
from chat.assistant import hf as hf_provider
from chat.assistant.adapters import AdapterRef
from chat.assistant.contract import Retrieval, Sentiment
from training.services.starter import qa_text, starter_model_build

pytestmark = pytest.mark.django_db(transaction=True)

TEXTS = [
    qa_text(question="Does the hub work on 5 GHz wifi?", answer="No, the Hub uses 2.4 GHz."),
    qa_text(question="How do I pay my bill?", answer="Use SEPA direct debit in the app."),
    qa_text(question="How do I turn on 2FA?", answer="Go to Settings > Security."),
] * 4


def _lora_adapter(base_dir: Path, out_dir: Path, seed: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(str(base_dir), local_files_only=True)
    config = LoraConfig(
        r=8, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    model = get_peft_model(base, config)
    with torch.no_grad():  # a strong, distinct update so greedy answers visibly change
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    model.save_pretrained(str(out_dir))
    return out_dir


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    base = starter_model_build(output_dir=root / "base", texts=TEXTS, steps=30, vocab_size=300)
    return {
        "base": base,
        "support-a": _lora_adapter(base, root / "support-a", seed=1),
        "support-b": _lora_adapter(base, root / "support-b", seed=2),
        "support-c": _lora_adapter(base, root / "support-c", seed=3),
    }


@pytest.fixture
def hf_settings(settings, tiny_models, monkeypatch):
    settings.ASSISTANT_PROVIDER = "hf"
    settings.HF_BASE_MODEL_PATH = str(tiny_models["base"])
    settings.HF_MAX_NEW_TOKENS = 12
    settings.HF_MAX_LOADED_ADAPTERS = 2
    settings.HF_ALLOW_TOY_MODEL = True  # a starter-built toy: these tests check mechanics
    hf_provider._runtimes.clear()

    def resolve(*, kind: str, slot: str = ""):
        # The training app's deployments decide this; here each name is "deployed".
        if kind == adapters.GENERATOR and slot in tiny_models and slot != "base":
            return AdapterRef(name=slot, path=tiny_models[slot])
        return None

    monkeypatch.setattr(adapters, "_resolver", resolve)
    yield
    hf_provider._runtimes.clear()


PREPARED = Prepared(
    passages=[
        Passage(
            slug="connecting-the-hub-to-wifi",
            title="Connecting the Hub to Wi-Fi",
            text="The Hub only connects on the 2.4 GHz band.",
            score=0.7,
        )
    ],
    sentiment=Sentiment(label="neutral", score=0.0, method="vader"),
    retrieval=Retrieval(top_score=0.7, min_score=0.3, no_answer=False),
)
QUESTION = "Does the hub work on 5 GHz wifi?"


async def _answer(adapter_name: str) -> tuple[str, str]:
    text, info = await assistant_draft(
        question=QUESTION, history=[], prepared=PREPARED, adapter_name=adapter_name
    )
    assert info.provider == "hf"
    return text, info.adapter


async def test_answers_stream_from_the_base_model_in_chunks(hf_settings):
    stream, info = assistant_stream(question=QUESTION, history=[], prepared=PREPARED)
    chunks = [chunk async for chunk in stream]

    assert len(chunks) > 1
    assert "".join(chunks).strip()
    assert info.adapter == ""
    assert info.model_name.endswith("base")


async def test_each_call_uses_its_adapter_and_answers_differ(hf_settings):
    base_text, base_adapter = await _answer("")
    a_text, a_adapter = await _answer("support-a")
    b_text, b_adapter = await _answer("support-b")
    a_again, _ = await _answer("support-a")

    assert (base_adapter, a_adapter, b_adapter) == ("", "support-a", "support-b")
    assert len({base_text, a_text, b_text}) == 3
    assert a_again == a_text  # greedy and the same adapter: the same answer


async def test_loaded_adapters_are_bounded_least_recently_used_first(hf_settings):
    await _answer("support-a")
    await _answer("support-b")
    await _answer("support-a")  # b is now the least recently used
    await _answer("support-c")

    runtime = hf_provider.hf_runtime()
    assert [ref.name for ref in runtime.loaded.values()] == ["support-a", "support-c"]
    assert runtime.evicted == ["support-b"]
    assert set(runtime.model.peft_config) == set(runtime.loaded)


async def test_a_missing_base_model_surfaces_as_assistant_error(settings, tmp_path):
    from chat.assistant import AssistantError

    settings.ASSISTANT_PROVIDER = "hf"
    settings.HF_BASE_MODEL_PATH = str(tmp_path / "no-model-here")

    with pytest.raises(AssistantError, match="not a local folder"):
        await assistant_draft(question=QUESTION, history=[], prepared=PREPARED)


async def test_a_timeout_stops_the_generation_and_frees_the_model(hf_settings, settings):
    import asyncio

    settings.HF_MAX_NEW_TOKENS = 5000  # minutes of generation if nothing stopped it
    runtime = await asyncio.to_thread(hf_provider.hf_runtime)
    runtime.model.generation_config.eos_token_id = None  # a model that never stops by itself
    stream, _ = assistant_stream(question=QUESTION, history=[], prepared=PREPARED)

    async def read_all() -> None:
        async for _ in stream:
            pass

    task = asyncio.create_task(read_all())
    while not runtime.lock.locked():  # generation has started
        await asyncio.sleep(0.01)
    task.cancel()  # what the caller's timeout does
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await asyncio.to_thread(runtime.lock.acquire, True, 60)  # generation ended
    runtime.lock.release()
    assert runtime.cancelled_generations == 1
    settings.HF_MAX_NEW_TOKENS = 12
    text, _ = await assistant_draft(question=QUESTION, history=[], prepared=PREPARED)
    assert text  # the next customer is served
