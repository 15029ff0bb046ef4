"""Per-visitor rate limits in the Django cache, so every Daphne process shares them."""

from __future__ import annotations

import time

from django.core.cache import DEFAULT_CACHE_ALIAS, BaseCache, caches

_shared: BaseCache | None = None


def _cache() -> BaseCache:
    """One cache client for the whole process. Django keeps a client per context, and
    every database-thread call runs in a fresh copy of its caller's context: through
    ``django.core.cache.cache`` each rate-limit check opened a new Redis connection.
    The client (and Redis's connection pool) is thread-safe."""
    global _shared
    if _shared is None:
        _shared = caches.create_connection(DEFAULT_CACHE_ALIAS)
    return _shared


_PERIODS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}


def rate_parse(rate: str) -> tuple[int, int]:
    """``"20/min"`` -> (20, 60). Raises ValueError for anything else."""
    count, _, period = rate.partition("/")
    return int(count), _PERIODS[period.strip().lower()]


def rate_limit_consume(*, scope: str, subject: str, rate: str) -> bool:
    """Count one action of ``subject`` in a fixed window; False when over the limit.

    ``cache.add`` creates the window's counter atomically and ``incr`` is atomic on
    Redis and locmem, so concurrent processes never both slip under the limit.
    """
    limit, period = rate_parse(rate)
    window = int(time.time() // period)
    key = f"chat:rate:{scope}:{subject}:{window}"
    cache = _cache()
    cache.add(key, 0, timeout=period + 5)
    try:
        used = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=period + 5)
        used = 1
    return used <= limit
