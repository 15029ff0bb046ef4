"""One Django cache client for the whole process.

Django keeps a cache client per context, and every database-thread call (``chat.events.db``)
runs in a fresh copy of its caller's context: through ``django.core.cache.cache`` each
call opened a new Redis connection. This client (and Redis's connection pool) is
thread-safe and reconnects after a fork (redis-py checks the pid)."""

from __future__ import annotations

from django.core.cache import DEFAULT_CACHE_ALIAS, BaseCache, caches

_shared: BaseCache | None = None


def shared_cache() -> BaseCache:
    global _shared
    if _shared is None:
        _shared = caches.create_connection(DEFAULT_CACHE_ALIAS)
    return _shared
