"""Rate limits in the Django cache, so every Daphne process shares them: per account or
visitor, and per client address."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.core.cache.backends.redis import RedisCache

from chat.shared_cache import shared_cache, shared_redis

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


def _window_key(*, scope: str, subject: str, period: int) -> str:
    return f"chat:rate:{scope}:{subject}:{int(time.time() // period)}"


def _counts_redis(
    cache: RedisCache, client: Any, windows: list[tuple[str, int]], delta: int
) -> list[int]:
    """Add ``delta`` to each ``(key, period)`` window's count in a single Redis round trip
    (``INCRBY`` creates the counter atomically, ``EXPIRE NX`` sets its lifetime once)."""
    pipe = client.pipeline(transaction=False)
    for key, period in windows:
        full = cache.make_and_validate_key(key)
        pipe.incrby(full, delta)
        pipe.expire(full, period + 5, nx=True)
    return [int(n) for n in pipe.execute()[::2]]


def _counts(windows: list[tuple[str, int]], delta: int = 1) -> list[int]:
    if (redis := shared_redis()) is not None:
        return _counts_redis(*redis, windows, delta)
    cache = shared_cache()
    counts = []
    for key, period in windows:
        # ``add`` creates the window's counter atomically and ``incr`` is atomic on
        # locmem too, so concurrent callers never both slip under the limit.
        cache.add(key, 0, timeout=period + 5)
        try:
            counts.append(cache.incr(key, delta))
        except ValueError:  # expired between add and incr
            cache.add(key, delta, timeout=period + 5)
            counts.append(delta)
    return counts


def rate_limit_consume(*, scope: str, subject: str, rate: str) -> bool:
    """Count one action of ``subject`` in a fixed window; False when over the limit."""
    limit, period = rate_parse(rate)
    [used] = _counts([(_window_key(scope=scope, subject=subject, period=period), period)])
    return used <= limit


@dataclass(frozen=True)
class Requester:
    """Whom the chat's rate limits count: the account when signed in, else the visitor
    cookie (``identity``), and also the client address (``chat.clients``), so that
    clearing cookies gives no fresh budget of conversations and assistant turns."""

    identity: str
    address: str = ""


def _limits(
    requester: Requester | str, rate: str, address_rate: str
) -> list[tuple[str, tuple[int, int]]]:
    if isinstance(requester, str):
        requester = Requester(identity=requester)
    limits = [(requester.identity, rate_parse(rate))]
    if requester.address:
        limits.append((f"address:{requester.address}", rate_parse(address_rate)))
    return limits


def rate_limits_consume(
    *, scope: str, requester: Requester | str, rate: str, address_rate: str
) -> bool:
    """Count one action against the requester's identity (``rate``) and its client
    address (``address_rate``, more generous: people share addresses); False when either
    is over its limit."""
    limits = _limits(requester, rate, address_rate)
    counts = _counts(
        [
            (_window_key(scope=scope, subject=subject, period=period), period)
            for subject, (_, period) in limits
        ]
    )
    return all(used <= limit for used, (_, (limit, _)) in zip(counts, limits, strict=True))


def rate_limits_refund(
    *, scope: str, requester: Requester | str, rate: str, address_rate: str
) -> None:
    """Take back one action counted by ``rate_limits_consume`` with the same arguments
    (it turned out not to be a new one, e.g. a retried message). A refund that lands in
    the next window gives that window one action more: never fewer than the limit."""
    limits = _limits(requester, rate, address_rate)
    _counts(
        [
            (_window_key(scope=scope, subject=subject, period=period), period)
            for subject, (_, period) in limits
        ],
        delta=-1,
    )
