"""Callback delivery: a request's terminal state POSTed to its ``callback_url``.

A POST that fails (no answer, or not 2xx) is retried ``callback_retries`` times, the first
after ``callback_backoff`` s, each wait twice the one before; each try waits at most
``callback_timeout`` s. Failed tries are logged; the caller hears whether one succeeded.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from gpu_router.shim.config import DispatchSection
from gpu_router.shim.logs import log


class CallbackSender:
    """POSTs callbacks with retries and exponential backoff on a shared HTTP client."""

    def __init__(self, http: httpx.AsyncClient, cfg: DispatchSection, logger: logging.Logger):
        self.http = http
        self.cfg = cfg
        self.logger = logger

    async def deliver(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> bool:
        """POST ``body`` to ``url``; retried with backoff; True once a 2xx came back."""
        delay = self.cfg.callback_backoff
        for n in range(self.cfg.callback_retries + 1):
            try:
                r = await self.http.post(
                    url, json=body, headers=headers, timeout=self.cfg.callback_timeout
                )
                if 200 <= r.status_code < 300:
                    return True
                reason = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}"
            log(
                self.logger,
                logging.WARNING,
                "callback failed",
                url=url,
                attempt=n + 1,
                reason=reason,
                request_id=body.get("data", {}).get("request_id"),
            )
            if n < self.cfg.callback_retries:
                await asyncio.sleep(delay)
                delay *= 2
        return False
