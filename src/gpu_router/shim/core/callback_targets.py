"""Where a callback may go (``callbacks`` config; issue 14: no server-side request forgery).

A ``callback_url`` is allowed when its scheme is in ``allowed_schemes``, its host matches
``allowed_hosts`` (when that list is not empty) and *every* address its host resolves to
is global (not loopback, link-local, private, shared, reserved, multicast or unspecified;
an IPv4-mapped IPv6 address is judged as the IPv4 one) or inside ``allowed_networks``.
:meth:`CallbackTargets.refusal` checks what the URL alone says (at submission: 422);
:meth:`CallbackTargets.resolve` resolves the host at each delivery and checks the
addresses, and the POST then goes to the address that was checked (``Host`` header and
TLS server name kept), so a name that resolves elsewhere later (DNS rebinding) is never
connected to unchecked. Redirects are not followed: a 3xx is a failed try.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from gpu_router.shim.config import CallbacksSection

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedTarget(Exception):
    """The callback's destination is not allowed; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    """A checked destination: the URL with the checked address in place of the host,
    the ``Host`` header to send, and the TLS server name (https) to verify."""

    url: str
    host_header: str
    sni_hostname: str | None


class CallbackTargets:
    """The allow-list of ``callbacks``: static checks, and resolution with address checks."""

    def __init__(self, cfg: CallbacksSection) -> None:
        self.schemes = frozenset(cfg.allowed_schemes)
        self.hosts = tuple(cfg.allowed_hosts)
        self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in cfg.allowed_networks)

    def refusal(self, url: str) -> str | None:
        """Why ``url`` may not be a callback destination by what it says alone (scheme,
        host, a literal address), or None."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").rstrip(".").lower()
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            return "not a valid URL"
        if parts.scheme not in self.schemes:
            return f"scheme {parts.scheme!r} is not allowed (allowed: {sorted(self.schemes)})"
        if not host:
            return "the URL has no host"
        if parts.username is not None or parts.password is not None:
            return "credentials in the URL are not allowed"
        literal = _literal_address(host)
        if literal is not None:
            return self.address_refusal(literal)
        if self.hosts and not any(_host_matches(host, pattern) for pattern in self.hosts):
            return f"host {host!r} is not in callbacks.allowed_hosts"
        return None

    def address_refusal(self, address: IpAddress) -> str | None:
        """Why a callback may not connect to ``address``, or None."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in net for net in self.networks):
            return None
        if address.is_global and not address.is_multicast:
            return None
        return f"address {address} is not public and not in callbacks.allowed_networks"

    async def resolve(self, url: str) -> Target:
        """The checked destination of ``url``; :class:`RefusedTarget` if the URL or any
        address its host resolves to is not allowed, or the host does not resolve."""
        reason = self.refusal(url)
        if reason is not None:
            raise RefusedTarget(reason)
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        literal = _literal_address(host.lower())
        if literal is not None:
            addresses = [literal]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
            except OSError as exc:
                raise RefusedTarget(f"host {host!r} does not resolve: {exc}") from None
            addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
            if not addresses:
                raise RefusedTarget(f"host {host!r} has no address")
        for address in addresses:  # every one: a name may not mix public and private
            reason = self.address_refusal(address)
            if reason is not None:
                raise RefusedTarget(f"{host}: {reason}")
        chosen = addresses[0]
        shown = f"[{chosen}]" if chosen.version == 6 else str(chosen)
        netloc = f"{shown}:{port}"
        pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        host_header = parts.netloc.rsplit("@", 1)[-1]
        return Target(pinned, host_header, host if parts.scheme == "https" else None)


def _literal_address(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _host_matches(host: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern
