"""A worker joining a router's fleet at run time: register, heartbeat, leave.

``Registration.run()`` registers (``POST /api/v1/workers/register`` with an admin key;
retried every ``retry_s`` until the router answers), then heartbeats every interval
the router asked for, registering again when a heartbeat answers 404 (the router lost
it, e.g. after a restart or a missed timeout); ``leave()`` (at shutdown) asks the
router to take the GPU out (``DELETE /api/v1/workers/{gpu_id}``). Loopback or any URL.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import httpx


class Registration:
    """One worker's membership in one router's fleet."""

    def __init__(
        self,
        router_url: str,
        key: str,
        spec: dict[str, Any],
        readings: Callable[[], dict[str, Any]] = dict,
        *,
        retry_s: float = 1.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base = router_url.rstrip("/")
        self.spec = spec
        self.gpu_id = str(spec["gpu_id"])
        self.readings = readings
        self.retry_s = retry_s
        self.headers = {"authorization": f"Bearer {key}"}
        self._client = client or httpx.AsyncClient(timeout=5.0)
        self.registered = asyncio.Event()
        self.interval = 2.0

    async def _register(self) -> None:
        while True:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                r = await self._client.post(
                    f"{self.base}/api/v1/workers/register", json=self.spec, headers=self.headers
                )
                if r.status_code == 200:
                    self.interval = float(r.json()["data"]["heartbeat_interval"])
                    self.registered.set()
                    return
            await asyncio.sleep(self.retry_s)

    async def run(self) -> None:
        """Register, then heartbeat until cancelled."""
        await self._register()
        url = f"{self.base}/api/v1/workers/{self.gpu_id}/heartbeat"
        while True:
            await asyncio.sleep(self.interval)
            try:
                r = await self._client.post(url, json=self.readings(), headers=self.headers)
            except httpx.HTTPError:
                continue  # the router is away: keep trying; it expires us if it must
            if r.status_code == 404:
                self.registered.clear()
                await self._register()

    async def leave(self) -> None:
        """Take the GPU out of the router's fleet (best effort, 2 s), and close."""
        with contextlib.suppress(httpx.HTTPError):
            await self._client.delete(
                f"{self.base}/api/v1/workers/{self.gpu_id}", headers=self.headers, timeout=2.0
            )
        await self._client.aclose()
