"""The assistant's per-process copies of rarely changing data (``chat.assistant.refreshing``):
many turns that find the copy due at once share one database read."""

from __future__ import annotations

import asyncio
import threading

import pytest

from chat.assistant.refreshing import Refreshed

# The reads run on the database threads (``chat.events.db``), which recycle the thread's
# connection around every call: one left open there by an earlier test is touched.
pytestmark = pytest.mark.django_db


class CountingLoad:
    """A database read that takes a while and counts how often it ran."""

    def __init__(self) -> None:
        self.calls = 0
        self.value = "v1"
        self.release = threading.Event()

    def __call__(self, **key: str) -> str:
        self.calls += 1
        value = self.value  # what the database holds when the read starts
        self.release.wait(5)
        return f"{value}:{key.get('kind', '')}"


@pytest.fixture
def load():
    return CountingLoad()


async def test_turns_that_find_the_copy_due_at_once_share_one_read(load):
    refreshed = Refreshed(load, interval=lambda: 60.0)
    turns = [asyncio.ensure_future(refreshed.current(kind="a")) for _ in range(30)]
    await asyncio.sleep(0.05)
    load.release.set()

    assert await asyncio.gather(*turns) == ["v1:a"] * 30
    assert load.calls == 1
    assert await refreshed.current(kind="a") == "v1:a" and load.calls == 1  # kept


async def test_each_key_has_its_own_copy_and_a_due_copy_is_read_again(load):
    load.release.set()
    refreshed = Refreshed(load, interval=lambda: 0.0)

    assert await refreshed.current(kind="a") == "v1:a"
    assert await refreshed.current(kind="b") == "v1:b"
    load.value = "v2"
    assert await refreshed.current(kind="a") == "v2:a"
    assert load.calls == 3


async def test_a_turn_cancelled_while_waiting_leaves_the_read_to_the_others(load):
    refreshed = Refreshed(load, interval=lambda: 60.0)
    impatient = asyncio.ensure_future(refreshed.current())
    patient = asyncio.ensure_future(refreshed.current())
    await asyncio.sleep(0.05)
    impatient.cancel()
    load.release.set()

    assert await patient == "v1:"
    assert load.calls == 1


async def test_forget_makes_the_next_turn_read_again_even_during_a_read(load):
    refreshed = Refreshed(load, interval=lambda: 60.0)
    before = asyncio.ensure_future(refreshed.current())
    await asyncio.sleep(0.05)
    refreshed.forget()  # e.g. a router version made live meanwhile
    load.value = "v2"
    load.release.set()
    after = await refreshed.current()

    assert await before == "v1:"
    assert after == "v2:"
    assert load.calls == 2
    assert await refreshed.current() == "v2:"  # the older read did not overwrite it
