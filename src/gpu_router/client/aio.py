"""The asyncio client: ``AsyncRouterClient(url, key)`` over an ``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from gpu_router.client import _core as c
from gpu_router.client._core import RetryPolicy
from gpu_router.client.errors import ApiError, WaitTimeout
from gpu_router.client.models import (
    AdminResult,
    CancelResult,
    GpuList,
    Health,
    Metrics,
    Quota,
    RequestResult,
    RequestStatus,
    RouteResult,
)


class AsyncRouterClient:
    """A client of one router. ``key`` defaults to ``$GPU_ROUTER_KEY``; ``transport`` and
    ``sleep`` are for tests (an ``httpx`` transport, a replacement for ``asyncio.sleep``)."""

    def __init__(
        self,
        base_url: str,
        key: str | None = None,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        on_retry: c.RetryHook | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        key = key if key is not None else os.environ.get("GPU_ROUTER_KEY")
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=c.headers(key),
            timeout=timeout,
            transport=transport,
            trust_env=False,
        )

    async def __aenter__(self) -> AsyncRouterClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _do(self, call: c.Call) -> Any:
        attempts = c.Attempts(self.retry, self.on_retry)
        while True:
            try:
                resp = await self._http.request(call.method, call.path, **call.request_kwargs())
            except httpx.TransportError as exc:
                await self._sleep(attempts.after_transport_error(exc, call))
                continue
            try:
                return call.read(c.decode(resp))
            except ApiError as err:
                if call.accept_error is not None and call.accept_error(err):
                    return call.read(err.data)
                await self._sleep(attempts.after_api_error(err))

    # ------------------------------------------------------------------ requests
    async def route(
        self,
        user_id: str,
        model_id: str,
        priority: int,
        *,
        request_id: str | None = None,
        type: str = "inference",
        resource_requirements: dict[str, Any] | None = None,
        timeout_ms: int | None = None,
        callback_url: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> RouteResult:
        """Submit (POST /api/v1/route). ``request_id`` is a new UUID when not given; the
        same id is re-sent on every retry, so a retried submission is made once."""
        call = c.route_call(
            user_id,
            model_id,
            priority,
            request_id=request_id,
            type=type,
            resource_requirements=resource_requirements,
            timeout_ms=timeout_ms,
            callback_url=callback_url,
            payload=payload,
        )
        result: RouteResult = await self._do(call)
        return result

    submit = route

    async def status(self, request_id: str, user_id: str | None = None) -> RequestStatus:
        """``user_id``: whose (admin and trusted-network callers; request ids are per user)."""
        result: RequestStatus = await self._do(c.status_call(request_id, user_id))
        return result

    async def wait(
        self, request_id: str, timeout: float = 60.0, poll: float = 0.05, max_poll: float = 1.0
    ) -> RequestStatus:
        """Poll the status until completed, failed or cancelled; :class:`WaitTimeout`
        after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            st = await self.status(request_id)
            if st.terminal:
                return st
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(
                    f"request {request_id} is still {st.status} after {timeout:g} s",
                    data=st.raw,
                )
            await self._sleep(min(poll, left))
            poll = min(max_poll, poll * 1.5)

    async def cancel(self, request_id: str, user_id: str | None = None) -> CancelResult:
        result: CancelResult = await self._do(c.cancel_call(request_id, user_id))
        return result

    async def result(self, request_id: str, user_id: str | None = None) -> RequestResult:
        out: RequestResult = await self._do(c.result_call(request_id, user_id))
        return out

    # ------------------------------------------------------------------ reads
    async def quota(self, user_id: str) -> Quota:
        result: Quota = await self._do(c.quota_call(user_id))
        return result

    async def gpus(self) -> GpuList:
        result: GpuList = await self._do(c.gpus_call())
        return result

    async def metrics(self) -> Metrics:
        result: Metrics = await self._do(c.metrics_call())
        return result

    async def health(self) -> Health:
        """Health, ready or not (a 503 not_ready answers ``Health(ready=False)``)."""
        result: Health = await self._do(c.health_call())
        return result

    async def prometheus(self) -> str:
        resp = await self._http.get("/metrics")
        resp.raise_for_status()
        return resp.text

    # ------------------------------------------------------------------ admin
    async def maintenance(
        self, gpu_id: str, reason: str = "", minutes: int | None = None
    ) -> AdminResult:
        result: AdminResult = await self._do(c.maintenance_call(gpu_id, reason, minutes))
        return result

    async def restart(self, gpu_id: str, force: bool = False) -> AdminResult:
        result: AdminResult = await self._do(c.restart_call(gpu_id, force))
        return result

    async def admin_cancel(
        self, request_id: str, reason: str = "", user_id: str | None = None
    ) -> CancelResult:
        result: CancelResult = await self._do(c.admin_cancel_call(request_id, reason, user_id))
        return result

    async def set_quota(self, user_id: str, **limits: int | None) -> Quota:
        """Keywords: ``gpu_time_minutes``, ``concurrent_requests``, ``priority_requests``,
        ``requests_per_minute``, ``requests_per_day``."""
        result: Quota = await self._do(c.set_quota_call(user_id, limits))
        return result
