"""One Django cache client for the whole process.

Django keeps a cache client per context, and every database-thread call (``chat.events.db``)
runs in a fresh copy of its caller's context: through ``django.core.cache.cache`` each
call opened a new Redis connection. This client (and Redis's connection pool) is
thread-safe and reconnects after a fork (redis-py checks the pid)."""

from __future__ import annotations

from typing import Any

from django.core.cache import DEFAULT_CACHE_ALIAS, BaseCache, caches
from django.core.cache.backends.redis import RedisCache

_shared: BaseCache | None = None
_redis: Any = None


def shared_cache() -> BaseCache:
    global _shared
    if _shared is None:
        _shared = caches.create_connection(DEFAULT_CACHE_ALIAS)
    return _shared


def shared_redis() -> tuple[RedisCache, Any] | None:
    """The shared cache and one redis-py client of its primary, kept for the process;
    None when the cache is not Redis. For the per-message round trips that Django's cache
    API has no call for (a pipeline of counters) or makes dear: Django builds a new
    client for every call (about a hundred response callbacks registered each time).
    Keys go through ``cache.make_and_validate_key``; values are Redis's own (counters) or
    compared as stored bytes."""
    global _redis
    cache = shared_cache()
    if not isinstance(cache, RedisCache):
        return None
    if _redis is None:
        _redis = cache._cache.get_client(write=True)
    return cache, _redis
