"""Posting events to webhook receivers, only to public addresses.

An admin types a webhook's URL, and the delivery log reports what the receiver answered:
without a check that would let anyone who manages webhooks probe the platform's own
network (loopback, private ranges, link-local and the cloud metadata service). So:

- a destination must resolve to public addresses only, unless its network is listed in
  ``ESCALATION_WEBHOOK_ALLOWED_NETWORKS`` (e.g. an internal receiver);
- the check runs when the webhook is saved (a literal address or a name that resolves)
  and again at every delivery, on the addresses the connection then uses: the socket
  connects to the very address that was checked, so a DNS answer that changes between
  check and connect (rebinding) cannot reach an internal host;
- redirects are never followed (a 3xx is a failed delivery).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from http.client import HTTPConnection, HTTPSConnection
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DestinationRefused(OSError):
    """The webhook's destination is not a public address (and not allow-listed)."""


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [
        ipaddress.ip_network(network, strict=False)
        for network in settings.ESCALATION_WEBHOOK_ALLOWED_NETWORKS
    ]


def address_allowed(address: IPAddress) -> bool:
    """Public (globally routable) addresses, and those of allow-listed networks."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in _allowed_networks()):
        return True
    return address.is_global and not address.is_multicast


REFUSED_MESSAGE = (
    "Webhooks go to public addresses only; this one is internal (loopback, private, "
    "link-local or reserved). An administrator can allow its network in "
    "ESCALATION_WEBHOOK_ALLOWED_NETWORKS."
)


def _resolve(host: str, port: int) -> list[tuple[Any, ...]]:
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise OSError(f"cannot resolve {host}") from exc


def _checked(infos: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Every resolved address must be allowed (one internal answer refuses all)."""
    infos = list(infos)
    for info in infos:
        if not address_allowed(ipaddress.ip_address(info[4][0].split("%")[0])):
            raise DestinationRefused(REFUSED_MESSAGE)
    return infos


def destination_check(url: str) -> None:
    """Refuse a URL whose host is (or resolves to) an internal address.

    A name that does not resolve now passes (it is checked again at delivery)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DestinationRefused("Use an http(s) URL with a host.")
    host = parts.hostname
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        if not address_allowed(literal):
            raise DestinationRefused(REFUSED_MESSAGE)
        return
    try:
        infos = _resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    except (OSError, ValueError):
        return  # checked again at delivery
    _checked(infos)


def _connect_checked(
    address: tuple[str, int], timeout: float | None = None, source_address: Any = None
) -> socket.socket:
    """``socket.create_connection`` that resolves once, checks every address, and
    connects to a checked one."""
    host, port = address
    last_error: OSError | None = None
    for family, kind, proto, _, sockaddr in _checked(_resolve(host, port)):
        sock = socket.socket(family, kind, proto)
        try:
            if timeout is not None:
                sock.settimeout(timeout)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            last_error = exc
    raise last_error or OSError(f"cannot connect to {host}")


class _CheckedHTTPConnection(HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _connect_checked  # type: ignore[assignment]


class _CheckedHTTPSConnection(HTTPSConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _connect_checked  # type: ignore[assignment]


def webhook_post(*, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST ``body`` to a public ``url``; returns the HTTP status (redirects are not
    followed). Raises ``DestinationRefused`` for an internal destination, ``OSError`` for
    connection problems."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DestinationRefused("Use an http(s) URL with a host.")
    connection_class = (
        _CheckedHTTPSConnection if parts.scheme == "https" else _CheckedHTTPConnection
    )
    connection = connection_class(parts.hostname, parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", path, body=body, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()
