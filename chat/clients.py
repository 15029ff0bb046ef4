"""Where a request comes from: the client's address, the one definition every rate limit,
throttle and login lock-out uses.

``X-Forwarded-For`` is only believed when the connection comes from a proxy listed in
``TRUSTED_PROXIES`` (addresses or networks): then the client is the right-most address
in the header that is not itself a trusted proxy. Anyone else could write the header,
so without trusted proxies the address is the connection's peer. (django-ipware, the
usual library, reads the forwarding headers from any peer unless it is told not to; the
rule here is the one reverse proxies document, and short.)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from django.conf import settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

UNKNOWN = "unknown"


@lru_cache(maxsize=8)
def _networks(
    proxies: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(proxy.strip(), strict=False) for proxy in proxies)


def _parse(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip().strip('"')
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _trusted(address: Any) -> bool:
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    return any(address in network for network in networks)


def client_address_from(*, peer: str | None, forwarded_for: Iterable[str] = ()) -> str:
    """The client's address given the connection's peer and the ``X-Forwarded-For``
    values (in order); ``"unknown"`` when the peer is not an address."""
    current = _parse(peer or "")
    if current is None:
        return UNKNOWN
    if not _trusted(current):
        return str(current)
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            break  # a garbled entry: trust nothing left of it
        current = address
        if not _trusted(address):
            break
    return str(current)


def client_address(meta: Mapping[str, Any]) -> str:
    """The client's address of a Django request (``request.META``)."""
    forwarded = meta.get("HTTP_X_FORWARDED_FOR")
    return client_address_from(
        peer=meta.get("REMOTE_ADDR"), forwarded_for=[forwarded] if forwarded else []
    )


def client_address_of_request(request: Any) -> str | None:
    """``AXES_CLIENT_IP_CALLABLE``: the same address for the login lock-out (None when
    there is none: django-axes stores it in an address column)."""
    address = client_address(request.META)
    return None if address == UNKNOWN else address


def client_address_of_scope(scope: Mapping[str, Any]) -> str:
    """The client's address of an ASGI scope (the WebSockets)."""
    client = scope.get("client") or (None, None)
    forwarded = [
        value.decode("latin-1")
        for name, value in scope.get("headers", [])
        if name.lower() == b"x-forwarded-for"
    ]
    return client_address_from(peer=client[0], forwarded_for=forwarded)


class AddressAnonThrottle(AnonRateThrottle):
    """DRF's anonymous throttle, by the client address above (DRF's own reads
    ``X-Forwarded-For`` from anyone when ``NUM_PROXIES`` is unset)."""

    def get_ident(self, request: Any) -> str:
        return client_address(request.META)


class AddressUserThrottle(UserRateThrottle):
    """DRF's per-account throttle (anonymous callers by client address)."""

    def get_ident(self, request: Any) -> str:
        return client_address(request.META)
