"""Jobs on workers that are polled: one task per attempt, submit then poll until the end.

The task POSTs the job to the GPU's worker (or re-attaches to ``attach_job``), then polls
it: first after ``poll_interval`` s, then every 10% of the time it has run, at most
``max_poll_interval`` s apart, until it ends. A runner with ``wait(job_id, timeout)`` is
asked that instead of sleeping then polling: it answers at the same times, or as soon as
the job ends. Transport failures are retried (:class:`~.workers.WorkerCalls`); what
happens is reported through :class:`~.job_events.JobEvents`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable

from gpu_router.shim.config import DispatchSection
from gpu_router.shim.core.job_events import JobEvents, JobSpec, report_end, report_error
from gpu_router.shim.core.workers import WorkerCalls
from gpu_router.shim.gpu_sources.base import JobRunner, SourceError
from gpu_router.shim.logs import log


class PolledJobs:
    """The polling task of each request's current attempt, by request id."""

    def __init__(
        self,
        workers: WorkerCalls,
        events: JobEvents,
        cfg: DispatchSection,
        *,
        monotonic: Callable[[], float],
        logger: logging.Logger,
    ) -> None:
        self.workers = workers
        self.events = events
        self.cfg = cfg
        self.monotonic = monotonic
        self.logger = logger
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def start(
        self,
        runner: JobRunner,
        gpu_id: str,
        attempt: int,
        spec: JobSpec,
        attach_job: str | None,
    ) -> None:
        """Start the attempt's task (the caller has stopped any earlier one)."""
        rid = spec.request_id
        task = asyncio.ensure_future(self._run(runner, gpu_id, attempt, spec, attach_job))
        self.tasks[rid] = task
        task.add_done_callback(functools.partial(self._done, rid))

    def stop(self, request_id: str) -> None:
        """Forget the task of ``request_id`` (it is cancelled at its next await)."""
        task = self.tasks.pop(request_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

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

    async def _run(
        self,
        runner: JobRunner,
        gpu_id: str,
        attempt: int,
        spec: JobSpec,
        attach_job: str | None,
    ) -> None:
        rid, ev, call = spec.request_id, self.events, self.workers.call
        try:
            if attach_job is None:
                job_id = await call(
                    gpu_id,
                    lambda: runner.submit(
                        rid,
                        spec.payload,
                        spec.expected_duration_ms,
                        spec.memory_mb,
                        spec.job_id,
                        **({"model": spec.model} if spec.model is not None else {}),
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
                    st = await call(gpu_id, functools.partial(wait, job_id, delay))
                else:
                    await asyncio.sleep(delay)
                    st = await call(gpu_id, lambda: runner.status(job_id))
                progress = st.get("progress")
                if isinstance(progress, int | float) and 0 <= progress <= 1:
                    ev.job_progress(rid, attempt, float(progress))
                if report_end(ev, rid, attempt, st):
                    return
                ran = self.monotonic() - started
                delay = min(self.cfg.max_poll_interval, max(self.cfg.poll_interval, 0.1 * ran))
        except SourceError as exc:
            report_error(ev, rid, attempt, gpu_id, exc)
