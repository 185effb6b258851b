"""The workers as the dispatcher reaches them: which serves a GPU, and calls to it.

A GPU's worker is HTTP when ``worker_urls`` (config) or the source names a URL for it:
then a :class:`~gpu_router.shim.worker.client.WorkerClient` on the service's shared
``httpx.AsyncClient`` (one connection pool); otherwise the source's in-process virtual
worker; the GPU's ``worker_auth`` token goes with every call, and ``guard`` (a leader's
lease still held) is asked before every HTTP call. :meth:`WorkerCalls.call` retries a
call that fails for transport reasons (``WorkerUnavailable``: no answer, 5xx)
``max_retries`` times ``retry_delay`` s apart; ``on_worker_error(gpu_id)`` hears of every
such failure. Health probes, job-state look-ups (restart recovery) and best-effort
cancels never raise.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from gpu_router.shim.config import RequestRouterSection
from gpu_router.shim.gpu_sources.base import GpuSource, JobRunner, SourceError, WorkerUnavailable
from gpu_router.shim.worker.client import WorkerClient

T = TypeVar("T")

CANCEL_TIMEOUT_S = 5.0  # a best-effort cancel waits at most this long


class WorkerCalls:
    """Runners for GPUs, and the retried, probing and best-effort calls made on them."""

    def __init__(
        self,
        source: GpuSource,
        http: httpx.AsyncClient,
        calls: RequestRouterSection,
        *,
        worker_urls: dict[str, str] | None = None,
        on_worker_error: Callable[[str], None] = lambda gpu_id: None,
        tokens: dict[str, str | None] | None = None,
    ) -> None:
        self.source = source
        self.tokens = tokens or {}  # gpu_id -> token; "" -> the shared one
        self.http = http
        self.calls = calls
        self.worker_urls = {g: u.rstrip("/") for g, u in (worker_urls or {}).items()}
        self.on_worker_error = on_worker_error
        #: the leader lease's epoch, sent with every call (workers refuse older ones)
        self.epoch: int | None = None
        #: asked before every HTTP call (``Leadership.holds``: the lease still held)
        self.guard: Callable[[], bool] | None = None

    def url(self, gpu_id: str) -> str | None:
        """The GPU's HTTP worker: configured ``worker_urls`` first, then the source's."""
        return self.worker_urls.get(gpu_id) or self.source.worker_url(gpu_id)

    def runner(self, gpu_id: str, traceparent: str | None = None) -> JobRunner:
        """The job API of the GPU's worker (HTTP, or the source's virtual worker)."""
        url = self.url(gpu_id)
        if url is None:
            return self.source.virtual_worker(gpu_id)
        return WorkerClient(
            url,
            self.http,
            timeout_s=self.calls.request_timeout,
            traceparent=traceparent,
            token=self.token(gpu_id),
            epoch=self.epoch,
            guard=self.guard,
        )

    def token(self, gpu_id: str) -> str | None:
        """The bearer token of the GPU's worker (``worker_auth``), None when none is set."""
        return self.tokens.get(gpu_id) or self.tokens.get("")

    async def call(self, gpu_id: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Call the worker, retrying transport failures; WorkerUnavailable when spent."""
        tries = self.calls.max_retries + 1
        for n in range(tries):
            try:
                return await fn()
            except WorkerUnavailable:
                self.on_worker_error(gpu_id)
                if n + 1 >= tries:
                    raise
                await asyncio.sleep(self.calls.retry_delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def job_state(
        self, gpu_id: str, job_id: str, timeout: float = 5.0
    ) -> dict[str, Any] | None:
        """A job's status (``JobStatus`` keys), or None when the worker or the job cannot
        be found within ``timeout`` s."""
        try:
            st = await asyncio.wait_for(self.runner(gpu_id).status(job_id), timeout)
        except (TimeoutError, SourceError, KeyError):
            return None
        return dict(st)

    async def cancel_job(self, gpu_id: str, job_id: str) -> None:
        """Ask the GPU's worker to cancel a job; failures and timeouts are ignored."""
        with contextlib.suppress(SourceError, asyncio.TimeoutError, KeyError):
            await asyncio.wait_for(self.runner(gpu_id).cancel(job_id), CANCEL_TIMEOUT_S)

    async def probe(self, gpu_id: str) -> bool:
        """Whether the GPU's worker answers its health check (virtual: always)."""
        url = self.url(gpu_id)
        if url is None:
            return True
        client = WorkerClient(
            url,
            self.http,
            timeout_s=self.calls.request_timeout,
            token=self.token(gpu_id),
            guard=self.guard,
        )
        return await client.healthy()
