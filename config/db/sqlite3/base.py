"""Django's SQLite backend, with writers that queue on a lock file beside the database.

SQLite lets one connection write at a time. A connection that finds the write lock taken
gets ``SQLITE_BUSY`` and its busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ms ... before
each retry; with transactions of a few milliseconds, writers of two web processes (or of
two threads of one) spend most of their time asleep after the lock has long been free,
and newcomers overtake them. Here a transaction (``BEGIN IMMEDIATE``, set through
``OPTIONS["transaction_mode"]``) first takes an exclusive ``flock`` on
``<database>-writers.lock``: a writer that waits is woken by the kernel the moment the
previous one commits, and a process that dies lets go of the lock with its files.
(Polling the lock instead, to bound the wait, cost 7-9% of the saturation benchmark's
throughput: each retry has to win the GIL back.)

Only transactions take the lock; a single statement in autocommit mode (rare here: the
ORM's multi-statement writes run in transactions) still meets SQLite's busy handler.
In-memory databases have no other process to queue with and take no lock.
"""

from __future__ import annotations

import fcntl
import os

from django.db.backends.sqlite3 import base


class DatabaseWrapper(base.DatabaseWrapper):
    _writers_lock_fd: int | None = None
    _writers_lock_pid = 0  # the process that opened the file: a forked child opens its own
    _writers_lock_held = False

    def _writers_lock_file(self) -> int:
        if self._writers_lock_fd is None or self._writers_lock_pid != os.getpid():
            # A child inherits its parent's descriptor, and so its flock: never unlock
            # that one (it would release the parent's lock); open a descriptor of its own.
            path = f"{self.settings_dict['NAME']}-writers.lock"
            self._writers_lock_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._writers_lock_pid = os.getpid()
            self._writers_lock_held = False
        return self._writers_lock_fd

    def _writers_lock_acquire(self) -> None:
        if self.is_in_memory_db():
            return
        # Blocks (without the GIL) until the writer before it commits or rolls back; no
        # timeout: a transaction is waited for however long it takes, as a row lock is on
        # PostgreSQL.
        fcntl.flock(self._writers_lock_file(), fcntl.LOCK_EX)
        self._writers_lock_held = True

    def _writers_lock_release(self) -> None:
        if self._writers_lock_held and self._writers_lock_pid == os.getpid():
            self._writers_lock_held = False
            assert self._writers_lock_fd is not None
            fcntl.flock(self._writers_lock_fd, fcntl.LOCK_UN)

    def _start_transaction_under_autocommit(self) -> None:
        self._writers_lock_acquire()
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]  # private in django-stubs
        except BaseException:
            self._writers_lock_release()
            raise

    def _commit(self) -> None:
        try:
            super()._commit()  # type: ignore[misc]  # private in django-stubs
        finally:
            # A failed COMMIT leaves the transaction open: the rollback that follows
            # lets go of the lock.
            if self.connection is None or not self.connection.in_transaction:
                self._writers_lock_release()

    def _rollback(self) -> None:
        try:
            super()._rollback()  # type: ignore[misc]  # private in django-stubs
        finally:
            self._writers_lock_release()

    def _close(self) -> None:
        try:
            super()._close()  # type: ignore[misc]  # private in django-stubs
        finally:
            self._writers_lock_release()
            if self._writers_lock_fd is not None and self._writers_lock_pid == os.getpid():
                os.close(self._writers_lock_fd)
            self._writers_lock_fd = None
