"""Jobs on in-process workers (the virtual fleet): no task and no polling per job.

A runner with ``start_job`` and ``watch`` is started on the next turn of the event loop
and reports its end through a callback, which is what lets one core serve a thousand
virtual jobs a second. What happens is reported through :class:`~.job_events.JobEvents`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gpu_router.shim.core.job_events import JobEvents, JobSpec, report_end, report_error
from gpu_router.shim.gpu_sources.base import JobStatus, SourceError, WorkerUnavailable


class LocalRunner(Protocol):
    """An in-process worker's synchronous job API (``VirtualWorker``)."""

    def start_job(
        self,
        request_id: str,
        payload: Any,
        expected_duration_ms: float,
        memory_mb: float,
        job_id: str | None = None,
        model: dict[str, Any] | None = None,
    ) -> str: ...

    def watch(self, job_id: str, callback: Callable[[JobStatus], None]) -> None: ...

    def progress(self, job_id: str) -> float | None: ...


def is_local(runner: object) -> bool:
    """Whether ``runner`` is an in-process worker (has ``watch``)."""
    return hasattr(runner, "watch")


@dataclass(slots=True)
class LocalJob:
    """An in-process job being tracked: which attempt, its runner, its id once started."""

    attempt: int
    runner: LocalRunner
    job_id: str | None = None


class LocalJobs:
    """The in-process job of each request's current attempt, by request id."""

    def __init__(
        self, events: JobEvents, on_worker_error: Callable[[str], None] = lambda g: None
    ) -> None:
        self.events = events
        self.on_worker_error = on_worker_error
        self.jobs: dict[str, LocalJob] = {}

    def start(
        self, runner: LocalRunner, gpu_id: str, attempt: int, spec: JobSpec, attach: str | None
    ) -> None:
        """Start the job on the loop's next turn (the caller has stopped any earlier one)."""
        self.jobs[spec.request_id] = LocalJob(attempt, runner)
        asyncio.get_running_loop().call_soon(self._begin, gpu_id, attempt, spec, attach)

    def stop(self, request_id: str) -> None:
        """Forget the job of ``request_id``: its end goes unreported."""
        self.jobs.pop(request_id, None)

    def progress(self, request_id: str) -> float | None:
        """The progress of an in-process job, read now (None: not one, or not started)."""
        entry = self.jobs.get(request_id)
        if entry is None or entry.job_id is None:
            return None
        return entry.runner.progress(entry.job_id)

    def _begin(self, gpu_id: str, attempt: int, spec: JobSpec, attach: str | None) -> None:
        rid = spec.request_id
        entry = self.jobs.get(rid)
        if entry is None or entry.attempt != attempt:
            return  # stopped meanwhile
        runner = entry.runner
        try:
            job_id = attach or runner.start_job(
                rid,
                spec.payload,
                spec.expected_duration_ms,
                spec.memory_mb,
                spec.job_id,
                spec.model,
            )
            entry.job_id = job_id
            runner.watch(job_id, lambda st: self._ended(rid, attempt, st))
        except SourceError as exc:
            del self.jobs[rid]
            if isinstance(exc, WorkerUnavailable):
                self.on_worker_error(gpu_id)
            report_error(self.events, rid, attempt, gpu_id, exc)
            return
        self.events.job_started(rid, attempt, gpu_id, job_id)

    def _ended(self, rid: str, attempt: int, st: JobStatus) -> None:
        entry = self.jobs.get(rid)
        if entry is None or entry.attempt != attempt:
            return  # given up on meanwhile
        del self.jobs[rid]
        report_end(self.events, rid, attempt, st)
