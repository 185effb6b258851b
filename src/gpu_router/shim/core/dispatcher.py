"""Dispatch: run each placed request on its GPU's worker and report back.

For every ``Dispatch`` the service starts one task here: it POSTs the payload to the
GPU's worker (HTTP, or the in-process virtual worker; both speak the job API of
``gpu_sources.base.JobRunner``), then polls the job (first after ``poll_interval``,
then every 10% of the time it has run, at most ``max_poll_interval``) until it ends. A
runner with ``wait(job_id, timeout)`` is asked that instead of sleeping then polling: it
answers at the same times, or as soon as the job ends. An in-process runner with
``start_job`` and ``watch`` (the virtual worker) needs neither a task nor polling: the
job is started on the next turn of the event loop and reports its end through a
callback, which is what lets one core serve a thousand virtual jobs a second.
What happens is reported through the :class:`DispatchEvents` callbacks, each tagged with
the attempt number, so the service can ignore a task it has already given up on.

A call that fails for transport reasons (connection refused, timeout, 5xx) is retried
``max_retries`` times ``retry_delay`` apart; then the worker is reported down. A job
that ends ``failed`` is reported as failed (the router re-queues it elsewhere, bounded).

Callbacks: terminal states are POSTed to the request's ``callback_url`` with retries and
exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from gpu_router.shim.config import DispatchSection, RequestRouterSection
from gpu_router.shim.gpu_sources.base import (
    JOB_COMPLETED,
    JOB_FAILED,
    JOB_RUNNING,
    GpuSource,
    JobNotFound,
    JobRunner,
    SourceError,
    WorkerUnavailable,
)
from gpu_router.shim.logs import log


@dataclass(frozen=True, slots=True)
class JobSpec:
    request_id: str
    payload: Any
    expected_duration_ms: float
    memory_mb: float
    traceparent: str | None = None


@dataclass(slots=True)
class LocalJob:
    """An in-process job being tracked: which attempt, its runner, its id once started."""

    attempt: int
    runner: Any  # a VirtualWorker: start_job, watch, progress
    job_id: str | None = None


class DispatchEvents(Protocol):
    def job_started(self, request_id: str, attempt: int, gpu_id: str, job_id: str) -> None: ...

    def job_progress(self, request_id: str, attempt: int, progress: float) -> None: ...

    def job_completed(self, request_id: str, attempt: int, result: Any) -> None: ...

    def job_failed(self, request_id: str, attempt: int, error: str, gpu_fault: bool) -> None: ...

    def worker_down(self, gpu_id: str, reason: str) -> None: ...


def _unwrap(body: Any) -> Any:
    """Accept a bare answer or one in the ALT_LAS envelope."""
    if isinstance(body, dict) and "data" in body and "status" in body:
        return body["data"]
    return body


class HttpRunner:
    """The job API over HTTP (worker endpoints: POST /jobs, GET/DELETE /jobs/{id})."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        timeout: float,
        traceparent: str | None = None,
    ) -> None:
        self.client = client
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = {"traceparent": traceparent} if traceparent else {}

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            r = await self.client.request(
                method, self.base + path, json=body, timeout=self.timeout, headers=self.headers
            )
        except httpx.HTTPError as exc:
            raise WorkerUnavailable(f"{self.base}: {type(exc).__name__}: {exc}") from None
        if r.status_code == 404:
            raise JobNotFound(f"{self.base}{path}: not found")
        if r.status_code >= 500:
            raise WorkerUnavailable(f"{self.base}{path}: HTTP {r.status_code}")
        if r.status_code >= 400:
            raise SourceError(f"{self.base}{path}: HTTP {r.status_code}: {r.text[:200]}")
        try:
            return _unwrap(r.json()) if r.content else None
        except ValueError:
            raise WorkerUnavailable(f"{self.base}{path}: answer is not JSON") from None

    async def submit(
        self, request_id: str, payload: Any, expected_duration_ms: float, memory_mb: float
    ) -> str:
        body = await self._call(
            "POST",
            "/jobs",
            {
                "request_id": request_id,
                "payload": payload,
                "expected_duration_ms": expected_duration_ms,
                "memory_mb": memory_mb,
            },
        )
        if not isinstance(body, dict) or not isinstance(body.get("job_id"), str):
            raise WorkerUnavailable(f"{self.base}/jobs: answer has no job_id")
        return body["job_id"]

    async def status(self, job_id: str) -> dict[str, Any]:
        body = await self._call("GET", f"/jobs/{job_id}")
        if not isinstance(body, dict) or "state" not in body:
            raise WorkerUnavailable(f"{self.base}/jobs/{job_id}: answer has no state")
        return body

    async def cancel(self, job_id: str) -> None:
        await self._call("DELETE", f"/jobs/{job_id}")

    async def healthy(self) -> bool:
        try:
            r = await self.client.get(self.base + "/health", timeout=min(self.timeout, 2.0))
        except httpx.HTTPError:
            return False
        return r.status_code == 200


class Dispatcher:
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
    ) -> None:
        self.source = source
        self._events: DispatchEvents | None = None
        self.cfg = dispatch
        self.calls = calls
        self.http = http
        self.monotonic = monotonic
        self.logger = logger
        self.on_worker_error = on_worker_error
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.local: dict[str, LocalJob] = {}  # in-process jobs by request_id
        self._background: set[asyncio.Task[Any]] = set()
        self.worker_urls = {g: u.rstrip("/") for g, u in (worker_urls or {}).items()}

    def connect(self, events: DispatchEvents) -> None:
        """Attach the sink of job events (the service's execution), before any ``start``."""
        self._events = events

    @property
    def events(self) -> DispatchEvents:
        if self._events is None:
            raise RuntimeError("no DispatchEvents connected")
        return self._events

    def url(self, gpu_id: str) -> str | None:
        """The GPU's HTTP worker: configured ``worker_urls`` first, then the source's."""
        return self.worker_urls.get(gpu_id) or self.source.worker_url(gpu_id)

    def runner(self, gpu_id: str, traceparent: str | None = None) -> JobRunner:
        url = self.url(gpu_id)
        if url is None:
            return self.source.virtual_worker(gpu_id)
        return HttpRunner(self.http, url, self.calls.request_timeout, traceparent)

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """A background task the dispatcher keeps a reference to until it ends."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # -- jobs -------------------------------------------------------------------------

    def start(
        self, gpu_id: str, attempt: int, spec: JobSpec, attach_job: str | None = None
    ) -> None:
        rid = spec.request_id
        self.stop(rid)
        runner = self.runner(gpu_id, spec.traceparent)
        if hasattr(runner, "watch"):
            self.local[rid] = LocalJob(attempt, runner)
            asyncio.get_running_loop().call_soon(
                self._start_local, gpu_id, attempt, spec, attach_job
            )
            return
        task = asyncio.ensure_future(self._run(gpu_id, attempt, spec, attach_job))
        self.tasks[rid] = task
        task.add_done_callback(functools.partial(self._done, rid))

    def _start_local(
        self, gpu_id: str, attempt: int, spec: JobSpec, attach_job: str | None
    ) -> None:
        rid, ev = spec.request_id, self.events
        entry = self.local.get(rid)
        if entry is None or entry.attempt != attempt:
            return  # stopped meanwhile
        runner = entry.runner
        try:
            job_id = attach_job or runner.start_job(
                rid, spec.payload, spec.expected_duration_ms, spec.memory_mb
            )
            entry.job_id = job_id
            runner.watch(job_id, lambda st: self._local_ended(rid, attempt, st))
        except WorkerUnavailable as exc:
            del self.local[rid]
            self.on_worker_error(gpu_id)
            ev.worker_down(gpu_id, f"worker unreachable: {exc}")
            return
        except JobNotFound:
            del self.local[rid]
            ev.job_failed(rid, attempt, f"job lost by the worker of {gpu_id}", True)
            return
        except SourceError as exc:
            del self.local[rid]
            ev.job_failed(rid, attempt, f"worker refused the job: {exc}", False)
            return
        ev.job_started(rid, attempt, gpu_id, job_id)

    def _local_ended(self, rid: str, attempt: int, st: dict[str, Any]) -> None:
        entry = self.local.get(rid)
        if entry is None or entry.attempt != attempt:
            return  # given up on meanwhile
        del self.local[rid]
        self._report_end(rid, attempt, st)

    def _report_end(self, rid: str, attempt: int, st: dict[str, Any]) -> bool:
        """Report a job's status if it has ended; whether it had."""
        state, ev = st.get("state"), self.events
        if state == JOB_COMPLETED:
            ev.job_completed(rid, attempt, st.get("result"))
        elif state == JOB_FAILED:
            ev.job_failed(rid, attempt, str(st.get("error") or "job failed"), True)
        elif state != JOB_RUNNING:  # cancelled behind our back, or nonsense
            ev.job_failed(rid, attempt, f"job ended {state!r} on the worker", False)
        else:
            return False
        return True

    def progress(self, request_id: str) -> float | None:
        """The progress of an in-process job, read now (None: not one, or not started)."""
        entry = self.local.get(request_id)
        if entry is None or entry.job_id is None:
            return None
        return entry.runner.progress(entry.job_id)

    def _done(self, request_id: str, task: asyncio.Task[None]) -> None:
        if self.tasks.get(request_id) is task:
            del self.tasks[request_id]
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log(
                self.logger,
                logging.ERROR,
                "dispatch task crashed",
                request_id=request_id,
                error=repr(exc),
            )

    def stop(self, request_id: str) -> None:
        """Forget the task of ``request_id`` (it is cancelled at its next await)."""
        self.local.pop(request_id, None)
        task = self.tasks.pop(request_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def abort(self, request_id: str, gpu_id: str, job_id: str | None) -> None:
        """Stop tracking and ask the worker to cancel the job (best effort, background)."""
        self.stop(request_id)
        if job_id is not None:
            self.spawn(self.cancel_job(gpu_id, job_id))

    async def cancel_job(self, gpu_id: str, job_id: str) -> None:
        with contextlib.suppress(SourceError, asyncio.TimeoutError, KeyError):
            await asyncio.wait_for(self.runner(gpu_id).cancel(job_id), 5.0)

    async def _call(self, gpu_id: str, fn: Callable[[], Awaitable[Any]]) -> Any:
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

    async def _run(self, gpu_id: str, attempt: int, spec: JobSpec, attach_job: str | None) -> None:
        rid, ev = spec.request_id, self.events
        runner = self.runner(gpu_id, spec.traceparent)
        try:
            if attach_job is None:
                job_id = await self._call(
                    gpu_id,
                    lambda: runner.submit(
                        rid, spec.payload, spec.expected_duration_ms, spec.memory_mb
                    ),
                )
            else:
                job_id = attach_job
            ev.job_started(rid, attempt, gpu_id, job_id)
            started = self.monotonic()
            delay = self.cfg.poll_interval
            wait = getattr(runner, "wait", None)
            while True:
                if wait is not None:
                    st = await self._call(gpu_id, functools.partial(wait, job_id, delay))
                else:
                    await asyncio.sleep(delay)
                    st = await self._call(gpu_id, lambda: runner.status(job_id))
                progress = st.get("progress")
                if isinstance(progress, int | float) and 0 <= progress <= 1:
                    ev.job_progress(rid, attempt, float(progress))
                if self._report_end(rid, attempt, st):
                    return
                ran = self.monotonic() - started
                delay = min(self.cfg.max_poll_interval, max(self.cfg.poll_interval, 0.1 * ran))
        except WorkerUnavailable as exc:
            ev.worker_down(gpu_id, f"worker unreachable: {exc}")
        except JobNotFound:
            ev.job_failed(rid, attempt, f"job lost by the worker of {gpu_id}", True)
        except SourceError as exc:
            ev.job_failed(rid, attempt, f"worker refused the job: {exc}", False)

    async def job_state(
        self, gpu_id: str, job_id: str, timeout: float = 5.0
    ) -> dict[str, Any] | None:
        """A job's state, or None when the worker or the job cannot be found."""
        try:
            return await asyncio.wait_for(self.runner(gpu_id).status(job_id), timeout)
        except (TimeoutError, SourceError, KeyError):
            return None

    async def probe(self, gpu_id: str) -> bool:
        """Whether the GPU's worker answers its health check (virtual: always)."""
        url = self.url(gpu_id)
        if url is None:
            return True
        return await HttpRunner(self.http, url, self.calls.request_timeout).healthy()

    # -- callbacks -----------------------------------------------------------------------

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

    async def aclose(self) -> None:
        tasks = [*self.tasks.values(), *self._background]
        self.tasks.clear()
        self.local.clear()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
