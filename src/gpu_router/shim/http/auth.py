"""Who is calling: Bearer API keys bound to a user and a role, and trusted networks.

Keys are kept only as SHA-256 digests and every presented key is compared against every
configured digest with :func:`hmac.compare_digest`, without stopping at a match, so the
time an answer takes does not depend on which key (or how much of it) was right. A key
that matched is remembered (a dict from the presented key to its identity, bounded), so a
client that sends the same key on every request costs one hash-table lookup, not a
SHA-256 and a pass over every digest; wrong keys are never remembered.

Roles: ``user`` acts only as its own user_id; ``service`` (the orchestrator) acts for any
user on the non-admin API; ``admin`` may do everything. A caller without an
``Authorization`` header whose address lies in a configured trusted network gets that
network's identity (deployment guide 7.2); none is trusted by default. A header that is
present but wrong is refused even from a trusted network.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from gpu_router.shim.config import AuthSection
from gpu_router.shim.keys import all_keys


class Role(StrEnum):
    USER = "user"
    SERVICE = "service"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    role: Role
    via: str  # "key" or "network"

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def may_act_for(self, user_id: str) -> bool:
        """Whether this caller may submit for, see or cancel the requests of ``user_id``."""
        return self.role is not Role.USER or hmac.compare_digest(
            self.user_id.encode(), user_id.encode()
        )


class AuthError(Exception):
    """401: no usable credentials. ``reason`` is safe to show to the caller."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class Authenticator:
    MAX_REMEMBERED = 1024  # keys that matched, remembered (only configured keys can match)

    def __init__(self, config: AuthSection) -> None:
        self._known: dict[str, Identity] = {}
        self._keys: list[tuple[bytes, Identity]] = []
        for k in all_keys(config):  # inline keys, then auth.keys_file's
            digest = key_digest(k.key) if k.key is not None else bytes.fromhex(k.key_sha256 or "")
            self._keys.append((digest, Identity(k.user_id, Role(k.role), "key")))
        self._networks = [
            (
                ipaddress.ip_network(n.cidr, strict=False),
                Identity(n.user_id, Role(n.role), "network"),
            )
            for n in config.trusted_networks
        ]

    @property
    def configured(self) -> bool:
        return bool(self._keys or self._networks)

    def authenticate(self, authorization: str | None, client_host: str | None) -> Identity:
        """The caller's identity, or :class:`AuthError`."""
        if authorization is not None:
            cached = self._known.get(authorization)
            if cached is not None:
                return cached
            scheme, _, token = authorization.strip().partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise AuthError("the Authorization header must be 'Bearer <api key>'")
            try:
                digest = key_digest(token)
            except UnicodeEncodeError:
                raise AuthError("invalid API key") from None
            found: Identity | None = None
            for known, identity in self._keys:  # no early exit: constant in the key's content
                if hmac.compare_digest(known, digest):
                    found = identity
            if found is None:
                raise AuthError("invalid API key")
            if len(self._known) < self.MAX_REMEMBERED:
                self._known[authorization] = found
            return found
        if client_host:
            try:
                addr = ipaddress.ip_address(client_host)
            except ValueError:
                addr = None
            if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped
            if addr is not None:
                for net, identity in self._networks:
                    if addr in net:
                        return identity
        raise AuthError("missing API key: send 'Authorization: Bearer <api key>'")
