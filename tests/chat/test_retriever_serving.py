"""Serving a retriever adapter: one adapted on the encoder's top layers only shares the
question's pass through the lower layers with the intent router's base vector; one
adapted on every layer is still served, by its own merged copy of the encoder."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from chat.assistant import adapters, assistant_prepare
from chat.assistant.adapters import RETRIEVER, AdapterRef
from chat.assistant.embeddings import (
    _model,
    adapter_fork_layer,
    encode_requests,
    encode_texts,
    query_batcher,
)
from tests.chat.knowledge_fixtures import knowledge_base

__all__ = ["knowledge_base"]

QUESTIONS = [
    "How do I pay by direct debit?",
    "E22 on the screen after I typed the password",
    "What is away mode?",
    "My hub keeps losing the wifi every night at about midnight, then it comes back "
    "on its own in the morning. Is it broken?",
]


def _scrambled_adapter(out: Path, *, layers: list[int] | None) -> Path:
    """A LoRA adapter of MiniLM with large random weights (so it visibly moves the
    vectors), on ``layers`` only (None: every layer), saved as a run saves one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from sentence_transformers import SentenceTransformer

    from training.services.retriever_backend import minilm_path

    torch.manual_seed(5)
    encoder = SentenceTransformer(minilm_path(), device="cpu")
    model = get_peft_model(
        encoder[0].model,
        LoraConfig(
            r=8,
            lora_alpha=64,
            target_modules=["query", "key", "value", "dense"],
            init_lora_weights=False,
            layers_to_transform=layers,
            layers_pattern="layer" if layers else None,
        ),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def top_adapter(tmp_path_factory) -> Path:
    return _scrambled_adapter(tmp_path_factory.mktemp("top2") / "adapter", layers=[4, 5])


@pytest.fixture(scope="session")
def every_layer_adapter(tmp_path_factory) -> Path:
    return _scrambled_adapter(tmp_path_factory.mktemp("all") / "adapter", layers=None)


def _whole_adapted_encoder(adapter: Path):
    """MiniLM with the adapter applied by PEFT itself (not merged, nothing shared)."""
    from peft import PeftModel
    from sentence_transformers import SentenceTransformer

    from training.services.retriever_backend import minilm_path

    encoder = SentenceTransformer(minilm_path(), device="cpu")
    encoder[0].model = PeftModel.from_pretrained(encoder[0].model, str(adapter))
    return encoder.eval()


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_the_adapter_config_tells_a_top_layer_adapter_from_an_every_layer_one(
    top_adapter, every_layer_adapter
):
    assert adapter_fork_layer(str(top_adapter)) == 4
    assert adapter_fork_layer(str(every_layer_adapter)) is None


def test_the_base_vectors_are_unchanged_when_a_top_layer_adapter_shares_the_pass(top_adapter):
    path = str(top_adapter)
    alone = encode_texts(QUESTIONS)

    shared = encode_requests([("", q) for q in QUESTIONS] + [(path, q) for q in QUESTIONS])

    for before, after in zip(alone, shared[: len(QUESTIONS)], strict=True):
        assert np.array_equal(before.vector, after.vector)  # bit for bit
        assert np.array_equal(before.tokens, after.tokens)
        assert np.array_equal(before.content, after.content)
    # ... and they are sentence-transformers' own: mean pooling, normalised.
    reference = _model().encode(QUESTIONS, normalize_embeddings=True)
    np.testing.assert_allclose(np.stack([e.vector for e in alone]), reference, rtol=0, atol=1e-6)
    adapted = shared[len(QUESTIONS) :]
    assert all(float(a.vector @ b.vector) < 0.9 for a, b in zip(alone, adapted, strict=True))


def test_the_forked_adapted_vectors_are_the_whole_adapted_encoders(top_adapter):
    whole = _whole_adapted_encoder(top_adapter)
    vectors = whole.encode(QUESTIONS, normalize_embeddings=True)
    tokens = whole.encode(QUESTIONS, output_value="token_embeddings")

    served = encode_requests([(str(top_adapter), q) for q in QUESTIONS])

    for encoding, vector, token_rows in zip(served, vectors, tokens, strict=True):
        np.testing.assert_allclose(encoding.vector, vector, rtol=0, atol=1e-5)
        # Token rows as encode_texts gives them: without [CLS] and [SEP], unit length.
        np.testing.assert_allclose(
            encoding.tokens, _unit_rows(token_rows.numpy()[1:-1]), rtol=0, atol=1e-5
        )


class _Passes:
    """Counts passes through MiniLM's embedding layer (each batch the encoder runs)."""

    def __init__(self, encoder) -> None:
        self.count = 0
        self._encoder = encoder

    def __enter__(self) -> _Passes:
        def hook(*_args) -> None:
            self.count += 1

        self._handle = self._encoder[0].model.embeddings.register_forward_hook(hook)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


@pytest.fixture
def live_retriever(monkeypatch, settings):
    """A retriever adapter live for every conversation (as the training app's resolver
    would answer after a deployment); ``live_retriever(None)`` for none."""
    settings.ASSISTANT_PROVIDER = "local"
    settings.ASSISTANT_ADAPTER_REFRESH_SECONDS = 0
    live: dict[str, AdapterRef | None] = {"ref": None}

    def resolver(*, kind: str, slot: str) -> AdapterRef | None:
        return live["ref"] if kind == RETRIEVER else None

    monkeypatch.setattr(adapters, "_resolver", resolver)
    adapters.adapter_forget()

    def make_live(path: Path | None) -> None:
        live["ref"] = AdapterRef(name="retriever-test", path=path) if path else None
        adapters.adapter_forget()

    yield make_live
    adapters.adapter_forget()


def _forget_recent() -> None:
    from chat.assistant import embeddings

    embeddings._recent.clear()


@pytest.mark.django_db(transaction=True)
async def test_with_a_top_layer_adapter_the_router_and_retrieval_share_one_pass(
    knowledge_base, live_retriever, top_adapter
):
    question = "There's smoke coming out of the Hub on my wall, what do I do?"
    encoder = _model()
    live_retriever(None)
    _forget_recent()
    base = await assistant_prepare(question=question, history=[])

    live_retriever(top_adapter)
    _forget_recent()
    with _Passes(encoder) as passes:
        adapted = await assistant_prepare(question=question, history=[])

    assert passes.count == 1
    # The router saw the base vector (the same intent, the same scores) ...
    assert adapted.intent is not None and base.intent is not None
    assert adapted.intent.label == base.intent.label == "safety"
    assert adapted.intent.scores == base.intent.scores
    # ... and retrieval the adapted one.
    assert adapted.retrieval.top_score != base.retrieval.top_score


@pytest.mark.django_db(transaction=True)
async def test_an_every_layer_adapter_is_still_served_by_its_own_encoder_copy(
    knowledge_base, live_retriever, every_layer_adapter
):
    question = "There's smoke coming out of the Hub on my wall, what do I do?"
    live_retriever(None)
    _forget_recent()
    base = await assistant_prepare(question=question, history=[])

    live_retriever(every_layer_adapter)
    _forget_recent()
    adapted = await assistant_prepare(question=question, history=[])

    assert adapted.intent is not None and base.intent is not None
    assert adapted.intent.scores == base.intent.scores
    assert adapted.retrieval.top_score != base.retrieval.top_score
    assert query_batcher(str(every_layer_adapter)) is not query_batcher()


@pytest.mark.django_db(transaction=True)
async def test_concurrent_customers_with_a_top_layer_adapter_are_encoded_in_shared_batches(
    knowledge_base, live_retriever, top_adapter
):
    live_retriever(top_adapter)
    _forget_recent()
    batcher = query_batcher(str(top_adapter))
    assert batcher is query_batcher()  # one batcher for the base and the adapted vectors
    batcher.batch_sizes.clear()

    with _Passes(_model()) as passes:
        results = await asyncio.gather(
            *(assistant_prepare(question=q, history=[]) for q in QUESTIONS)
        )

    assert all(r.intent is not None for r in results)
    # Each question twice (router, retrieval), in batches of several customers, each
    # batch one pass through the encoder.
    assert sum(batcher.batch_sizes) == 2 * len(QUESTIONS)
    assert max(batcher.batch_sizes) > 2
    assert passes.count == len(batcher.batch_sizes) < len(QUESTIONS)
