"""Where a webhook may be sent: ``http(s)://`` hosts whose every address is public, unless private ones are allowed.

A webhook URL points the controller's HTTP client somewhere. Pointed at loopback, a private network, link-local
(a cloud metadata service at 169.254.169.254) or multicast, it would make the controller POST into its own network
on behalf of whoever registered the URL. The host is resolved and every address it resolves to is checked, at
registration and again before every delivery (DNS may change in between). Redirects are never followed.
"""

import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

Resolver = Callable[[str, int], Sequence[Any]]
"""``socket.getaddrinfo``-like: ``(host, port)`` to ``(family, type, proto, canonname, sockaddr)`` tuples."""

_PORTS = {"http": 80, "https": 443}


class WebhookTargetError(ValueError):
    """The webhook URL is not one the controller sends to (scheme, host, or a non-public address)."""


def check_webhook_url(url: str, *, allow_private: bool, resolve: Resolver | None = None) -> None:
    """Raise :class:`WebhookTargetError` saying what to change unless ``url`` may receive webhooks.

    With ``allow_private`` any address goes (a partner's endpoint inside the operator's own network, tests).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookTargetError(f"the webhook URL does not parse: {exc}") from None
    if parts.scheme not in _PORTS:
        raise WebhookTargetError(f"webhook URL scheme {parts.scheme!r} is not supported: use https:// (or http://)")
    host = parts.hostname
    if not host:
        raise WebhookTargetError("the webhook URL has no host")
    if allow_private:
        return
    try:
        found = (resolve or _getaddrinfo)(host, port or _PORTS[parts.scheme])
    except OSError as exc:
        raise WebhookTargetError(f"webhook host {host} does not resolve ({exc}): check the URL") from None
    addresses = {ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in found}
    refused = sorted(str(a) for a in addresses if not is_public(a))
    if refused or not addresses:
        raise WebhookTargetError(
            f"webhook host {host} resolves to {', '.join(refused) or 'nothing'}, not a public address: "
            "use the partner's public endpoint, or allow private targets with --webhook-allow-private"
        )


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``address`` is globally routable unicast (an IPv4-mapped IPv6 address counts as its IPv4 one)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _getaddrinfo(host: str, port: int) -> Sequence[Any]:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
