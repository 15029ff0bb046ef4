"""Per-visitor rate limits in the Django cache, so every Daphne process shares them."""

from __future__ import annotations

import time

from django.core.cache import cache

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
    cache.add(key, 0, timeout=period + 5)
    try:
        used = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=period + 5)
        used = 1
    return used <= limit
