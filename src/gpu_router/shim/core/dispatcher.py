"""Dispatch: run each placed request on its GPU's worker and report back to the service.

``Dispatcher(source, ...)`` composes the parts: :class:`~.workers.WorkerCalls`
(which worker serves a GPU; HTTP through the one ``WorkerClient``, or in process;
retries, probes, job-state look-ups, cancels), :class:`~.polled_jobs.PolledJobs` (a task
per attempt that submits then polls), :class:`~.local_jobs.LocalJobs` (in-process jobs,
no task) and :class:`~.acks.JobAcks` (finished jobs acknowledged to their workers once
the store has them); it also runs background tasks (``spawn``: callbacks, cancels). The
service implements
:class:`~.job_events.JobEvents`, is attached by :meth:`Dispatcher.connect`, and hears
through it what each attempt does; the attempt number it passes to
:meth:`Dispatcher.start` comes back with every event.

A call that fails for transport reasons (connection refused, timeout, 5xx) is retried
``max_retries`` times ``retry_delay`` s apart; then the worker is reported down. A job
that ends ``failed`` is reported as failed (the router re-queues it elsewhere, bounded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

import httpx

from gpu_router.shim.config import DispatchSection, RequestRouterSection
from gpu_router.shim.core.acks import JobAcks
from gpu_router.shim.core.job_events import JobEvents, JobSpec
from gpu_router.shim.core.local_jobs import LocalJobs, LocalRunner, is_local
from gpu_router.shim.core.polled_jobs import PolledJobs
from gpu_router.shim.core.workers import WorkerCalls
from gpu_router.shim.gpu_sources.base import (
    GpuSource,
    JobStatus,
    SourceError,
    WorkerUnavailable,
)
from gpu_router.shim.store import Store

__all__ = ["Dispatcher", "JobEvents", "JobSpec"]


class _NotConnected:
    """Stands in for the events sink until :meth:`Dispatcher.connect` is called."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"Dispatcher.connect(events) was not called (wanted {name})")


class Dispatcher:
    """The service's one handle on running jobs, probing workers and background tasks."""

    def __init__(
        self,
        source: GpuSource,
        *,
        dispatch: DispatchSection,
        calls: RequestRouterSection,
        http: httpx.AsyncClient,
        monotonic: Callable[[], float],
        logger: logging.Logger,
        on_worker_error: Callable[[str], None] = lambda gpu_id: None,
        worker_urls: dict[str, str] | None = None,
        store: Store | None = None,
        worker_tokens: dict[str, str | None] | None = None,
    ) -> None:
        self.workers = WorkerCalls(
            source,
            http,
            calls,
            worker_urls=worker_urls,
            on_worker_error=on_worker_error,
            tokens=worker_tokens,
        )
        events = cast(JobEvents, _NotConnected())
        self._polled = PolledJobs(
            self.workers, events, dispatch, monotonic=monotonic, logger=logger
        )
        self._local = LocalJobs(events, on_worker_error)
        self.tasks = self._polled.tasks  # polling task by request id
        self.local = self._local.jobs  # in-process job by request id
        self._background: set[asyncio.Task[Any]] = set()
        self.acks = JobAcks(store, self.workers, self.spawn, dispatch.ack_interval)

    def connect(self, events: JobEvents) -> None:
        """Attach the sink of job events (the service's ``Execution``), before any ``start``.
        (The sink also starts jobs here, so one of the two is wired after the other.)"""
        self._polled.events = events
        self._local.events = events

    # -- jobs ---------------------------------------------------------------------------

    def start(
        self, gpu_id: str, attempt: int, spec: JobSpec, attach_job: str | None = None
    ) -> None:
        """Run ``spec`` on ``gpu_id`` as attempt ``attempt`` (re-attach to ``attach_job``
        instead of submitting when given); any earlier attempt is stopped first."""
        self.stop(spec.request_id)
        runner = self.workers.runner(gpu_id, spec.traceparent)
        if is_local(runner):
            self._local.start(cast(LocalRunner, runner), gpu_id, attempt, spec, attach_job)
        else:
            self._polled.start(runner, gpu_id, attempt, spec, attach_job)

    def stop(self, request_id: str) -> None:
        """Stop tracking the job of ``request_id`` (its task is cancelled at its next
        await); the worker is not told."""
        self._local.stop(request_id)
        self._polled.stop(request_id)

    def abort(self, request_id: str, gpu_id: str, job_id: str | None) -> None:
        """Stop tracking and ask the worker to cancel the job (best effort, background)."""
        self.stop(request_id)
        if job_id is not None:
            self.spawn(self.cancel_job(gpu_id, job_id))

    async def cancel_job(self, gpu_id: str, job_id: str) -> None:
        """Ask the worker to cancel a job, at most 5 s; failures are ignored. The job is
        then acknowledged (its result is not wanted)."""
        await self.workers.cancel_job(gpu_id, job_id)
        self.acks.add(gpu_id, job_id)

    def ack(self, gpu_id: str, job_id: str) -> None:
        """Acknowledge a finished job once the store has what it was handed so far."""
        self.acks.add(gpu_id, job_id)

    async def held_jobs(self, gpu_id: str, timeout: float = 5.0) -> list[JobStatus] | None:
        """Every job the GPU's worker holds (running, or finished and not acknowledged),
        or None when it cannot say within ``timeout`` s."""
        try:
            return await asyncio.wait_for(self.workers.runner(gpu_id).jobs(), timeout)
        except (TimeoutError, SourceError, KeyError):
            return None

    def progress(self, request_id: str) -> float | None:
        """The progress (0-1) of an in-process job, read now (None: not one, not started)."""
        return self._local.progress(request_id)

    async def job_state(
        self, gpu_id: str, job_id: str, timeout: float = 5.0
    ) -> dict[str, Any] | None:
        """What the GPU's worker holds for ``job_id`` (``JobStatus`` keys), or None when
        the worker or the job cannot be found within ``timeout`` s."""
        return await self.workers.job_state(gpu_id, job_id, timeout)

    async def restart_worker(self, gpu_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Restart the GPU's worker through its API (HTTP ``POST /restart``; virtual: in
        process): what it answered. SourceError when it cannot within ``timeout`` s."""
        restart = getattr(self.workers.runner(gpu_id), "restart", None)
        if restart is None:
            raise SourceError(f"{gpu_id}: its worker has no restart")
        try:
            answer: dict[str, Any] = await asyncio.wait_for(restart(), timeout)
        except TimeoutError:
            raise WorkerUnavailable(f"{gpu_id}: no restart within {timeout:g} s") from None
        return answer

    async def probe(self, gpu_id: str) -> bool:
        """Whether the GPU's worker answers its health check (virtual: always)."""
        return await self.workers.probe(gpu_id)

    # -- background work -------------------------------------------------

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """A background task the dispatcher keeps a reference to until it ends."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def abandon(self) -> None:
        """(a leader that lost its lease) Cancel every task and forget in-process jobs,
        without another call to a worker or the store (nothing acknowledged)."""
        await self._drop([*self.tasks.values(), *self._background, *self.acks.abandon()])

    async def aclose(self) -> None:
        """Acknowledge the finished jobs gathered (at most 2 s), cancel every task (polling
        and background) and forget in-process jobs."""
        await self.acks.aclose()
        await self._drop([*self.tasks.values(), *self._background])

    async def _drop(self, tasks: list[asyncio.Task[Any]]) -> None:
        """Forget every job (polled and in-process); ``tasks`` cancelled and waited for."""
        self.tasks.clear()
        self.local.clear()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
