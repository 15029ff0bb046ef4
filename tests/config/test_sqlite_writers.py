"""The embedded SQLite backend (config.db.sqlite3): writers queue for the database on a
lock file instead of failing or sleeping in SQLite's busy handler."""

import fcntl
import os
import threading
import time

import pytest
from django.db.utils import ConnectionHandler

# SQLite alone would give up after 50 ms with "database is locked".
SHORT_TIMEOUT_S = 0.05


@pytest.fixture
def handler(tmp_path, django_db_blocker):
    # A database of its own, beside the test database: pytest-django only guards access.
    with django_db_blocker.unblock():
        yield ConnectionHandler(
            {
                "default": {
                    "ENGINE": "config.db.sqlite3",
                    "NAME": str(tmp_path / "writers.sqlite3"),
                    "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": SHORT_TIMEOUT_S},
                }
            }
        )


def begin(connection):
    connection.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)


def commit(connection):
    connection.commit()
    connection.set_autocommit(True)


def test_a_writer_waits_for_the_transaction_before_it_and_then_writes(handler):
    setup = handler["default"]
    setup.cursor().execute("CREATE TABLE note (who TEXT)")
    first_began = threading.Event()
    first_committed_at: list[float] = []

    def first_writer():
        connection = handler["default"]  # this thread's own connection
        begin(connection)
        connection.cursor().execute("INSERT INTO note VALUES ('first')")
        first_began.set()
        time.sleep(10 * SHORT_TIMEOUT_S)  # far longer than SQLite would wait
        first_committed_at.append(time.monotonic())
        commit(connection)
        connection.close()

    thread = threading.Thread(target=first_writer)
    thread.start()
    assert first_began.wait(5)
    second = handler["default"]
    begin(second)  # blocks until the first writer commits, then begins
    began_at = time.monotonic()
    second.cursor().execute("INSERT INTO note VALUES ('second')")
    commit(second)
    thread.join(5)

    assert began_at >= first_committed_at[0]
    rows = second.cursor().execute("SELECT who FROM note ORDER BY rowid").fetchall()
    assert [who for (who,) in rows] == ["first", "second"]
    second.close()


def test_a_forked_child_closing_its_copy_keeps_the_parents_lock(handler, tmp_path):
    connection = handler["default"]
    connection.cursor().execute("CREATE TABLE note (who TEXT)")
    begin(connection)  # the parent writes: it holds the writers' lock
    child = os.fork()
    if child == 0:  # the child closes the connection it inherited, as workers do
        try:
            connection.close()
        finally:
            os._exit(0)
    os.waitpid(child, 0)

    probe = os.open(tmp_path / "writers.sqlite3-writers.lock", os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):  # still the parent's
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        commit(connection)
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free once it committed
    finally:
        os.close(probe)
        connection.close()
