"""Checking a callback the router sent: ``X-GPU-Router-Signature: t=<unix s>,v1=<hex>``,
where ``<hex>`` is HMAC-SHA256(secret, ``"<t>." + body``) over the raw body bytes and the
secret is the router's ``callbacks.signing_secret``.

    from gpu_router.client import verify_callback

    event = verify_callback(secret, request_body_bytes, headers["x-gpu-router-signature"])

Check the raw bytes, before any JSON parsing; a callback older than ``tolerance_s``
(default 300 s) is refused, so a captured one cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

SIGNATURE_HEADER = "X-GPU-Router-Signature"


class InvalidSignature(ValueError):
    """The callback's signature is missing, malformed, wrong or too old."""


def verify_callback(
    secret: str | bytes,
    body: bytes,
    header: str | None,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> dict[str, Any]:
    """The callback's decoded JSON body once its signature checks out (``now``: epoch s,
    default the clock); :class:`InvalidSignature` otherwise."""
    if not header:
        raise InvalidSignature(f"no {SIGNATURE_HEADER} header")
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(key, []).append(value)
    stamps, macs = fields.get("t", []), fields.get("v1", [])
    if len(stamps) != 1 or not stamps[0].isdigit() or not macs:
        raise InvalidSignature(f"malformed {SIGNATURE_HEADER}: {header[:100]!r}")
    timestamp = int(stamps[0])
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise InvalidSignature(f"signed at {timestamp}, more than {tolerance_s} s from now")
    secret_bytes = secret.encode() if isinstance(secret, str) else secret
    expected = hmac.new(secret_bytes, b"%d." % timestamp + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, mac) for mac in macs):
        raise InvalidSignature("signature does not match the body")
    result: dict[str, Any] = json.loads(body)
    return result
