"""What the assistant reads from the database on every turn but changes rarely (the
knowledge index, the answer memory, the live router, the live adapters): kept per
process and re-read on a database thread at most every few seconds.

Under load many turns find the copy due at once; they wait for one re-read instead of
each running its own (the saturation benchmark's profile showed dozens of identical
signature queries per refresh, about 4% of the server's CPU).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from chat.events import db

T = TypeVar("T")


class Refreshed(Generic[T]):
    """``load(**key)`` (sync, run by ``chat.events.db``), remembered per key and loaded
    again once ``interval()`` seconds have passed since the last load started.

    Concurrent callers while a load runs share it; a caller cancelled meanwhile (a turn
    past its deadline) does not cancel it for the others. ``forget()`` makes the next
    caller load again, even if a load started before is still running.
    """

    def __init__(self, load: Callable[..., T], *, interval: Callable[[], float]) -> None:
        self._load = load
        self._interval = interval
        self._values: dict[Hashable, tuple[float, T]] = {}
        self._generation = 0
        self._loading: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[Hashable, asyncio.Task[T]]
        ] = weakref.WeakKeyDictionary()

    async def current(self, **key: Any) -> T:
        name = tuple(sorted(key.items()))
        cached = self._values.get(name)
        if cached is not None and time.monotonic() - cached[0] < self._interval():
            return cached[1]
        loading = self._loading.setdefault(asyncio.get_running_loop(), {})
        task = loading.get(name)
        if task is None:
            task = asyncio.ensure_future(self._refresh(name, key))
            loading[name] = task

            def done(finished: asyncio.Task[T], name: Hashable = name) -> None:
                if loading.get(name) is finished:
                    del loading[name]

            task.add_done_callback(done)
        return await asyncio.shield(task)

    async def _refresh(self, name: Hashable, key: dict[str, Any]) -> T:
        generation, started = self._generation, time.monotonic()
        value = await db(self._load)(**key)
        if generation == self._generation:  # not forgotten meanwhile
            self._values[name] = (started, value)
        return value

    def forget(self) -> None:
        self._generation += 1
        self._values.clear()
        for loading in self._loading.values():
            loading.clear()
