"""Callbacks: a request's terminal state POSTed to its ``callback_url``, one concept.

:class:`Callbacks` decides what is sent (the status answer in the ALT_LAS envelope; the
request's trace id in ``traceparent``) and journals the outcome as ``callback_state``
(delivered, failed), so a restart resends the pending ones. :class:`CallbackSender`
delivers it:

- only to an allowed destination (:mod:`.callback_targets`: scheme and host allow-list;
  the host resolved at each try and every address checked; the POST goes to the checked
  address; redirects are not followed). A refused destination is not retried;
- signed, when ``callbacks.signing_secret`` (or ``_file``) is set: the header
  ``X-GPU-Router-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
  HMAC-SHA256(secret, ``"<t>." + body``) over the exact body bytes sent
  (``gpu_router.client.verify_callback`` checks it);
- retried: a try that fails (no answer, or not 2xx, a 3xx included) is retried
  ``dispatch.callback_retries`` times, the first after ``dispatch.callback_backoff`` s,
  each wait twice the one before up to ``callbacks.max_backoff_s``; each try waits at
  most ``dispatch.callback_timeout`` s and the answer's body is never read;
- bounded: at most ``callbacks.max_concurrent`` tries in flight at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from gpu_router.shim.config import CallbacksSection, DispatchSection, read_token_file
from gpu_router.shim.core.callback_targets import CallbackTargets, RefusedTarget
from gpu_router.shim.core.live import LiveRequests
from gpu_router.shim.core.metrics import PromMetrics
from gpu_router.shim.core.status import StatusViews
from gpu_router.shim.fastjson import dumps_bytes
from gpu_router.shim.logs import log
from gpu_router.shim.store import JournalRecord

SIGNATURE_HEADER = "x-gpu-router-signature"


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-GPU-Router-Signature`` value of ``body`` sent at ``timestamp`` (s)."""
    mac = hmac.new(secret, b"%d." % timestamp + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def signing_secret(cfg: CallbacksSection) -> bytes | None:
    """The configured signing key (``signing_secret_file`` read now), or None."""
    if cfg.signing_secret_file is not None:
        return read_token_file(cfg.signing_secret_file, "callbacks.signing_secret_file").encode()
    return None if cfg.signing_secret is None else cfg.signing_secret.encode()


class CallbackSender:
    """POSTs callbacks to checked destinations, signed, with bounded retries."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        dispatch: DispatchSection,
        cfg: CallbacksSection,
        logger: logging.Logger,
        wall: Callable[[], float],
    ) -> None:
        self.http = http
        self.dispatch = dispatch
        self.cfg = cfg
        self.logger = logger
        self.wall = wall
        self.targets = CallbackTargets(cfg)
        self.secret = signing_secret(cfg)
        self._slots = asyncio.Semaphore(cfg.max_concurrent)

    async def deliver(self, url: str, body: bytes, headers: dict[str, str]) -> bool:
        """POST ``body`` (JSON bytes) to ``url``; True once a 2xx came back."""
        delay = self.dispatch.callback_backoff
        tries = self.dispatch.callback_retries + 1
        for n in range(tries):
            try:
                async with self._slots:
                    code = await self._try(url, body, headers)
                if 200 <= code < 300:
                    return True
                reason = f"HTTP {code}"
            except RefusedTarget as exc:
                self._failed(url, n, f"destination refused: {exc}")
                return False
            except httpx.HTTPError as exc:
                reason = type(exc).__name__
            self._failed(url, n, reason)
            if n + 1 < tries:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.cfg.max_backoff_s)
        return False

    async def _try(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        target = await self.targets.resolve(url)
        sent = {**headers, "content-type": "application/json", "host": target.host_header}
        if self.secret is not None:
            sent[SIGNATURE_HEADER] = signature(self.secret, int(self.wall()), body)
        extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else None
        request = self.http.build_request(
            "POST",
            target.url,
            content=body,
            headers=sent,
            timeout=self.dispatch.callback_timeout,
            extensions=extensions,
        )
        response = await self.http.send(request, stream=True, follow_redirects=False)
        await response.aclose()  # the status is all we need: the body is never read
        return response.status_code

    def _failed(self, url: str, n: int, reason: str) -> None:
        log(self.logger, logging.WARNING, "callback failed", url=url, attempt=n + 1, reason=reason)


class Callbacks:
    """Sends terminal states to the clients' callback URLs and journals the outcome."""

    def __init__(
        self,
        views: StatusViews,
        requests: LiveRequests,
        sender: CallbackSender,
        spawn: Callable[[Awaitable[Any]], Any],
        prom: PromMetrics,
    ) -> None:
        self.views = views
        self.requests = requests
        self.sender = sender
        self.spawn = spawn
        self.prom = prom

    def send(self, rec: JournalRecord) -> None:
        """Deliver ``rec``'s state to its callback URL in the background (if it has one)."""
        url = rec.callback_url
        if not url:
            return
        data = self.views.status_data(rec)
        body = dumps_bytes({"status": "success", "data": data, "error": None, "meta": None})
        headers = {}
        if rec.trace_id:
            headers["traceparent"] = f"00-{rec.trace_id}-{uuid.uuid4().hex[:16]}-01"

        async def run() -> None:
            ok = await self.sender.deliver(url, body, headers)
            state = "delivered" if ok else "failed"
            self.prom.child(self.prom.callbacks, state).inc()
            self.requests.change(rec, callback_state=state)

        self.spawn(run())
