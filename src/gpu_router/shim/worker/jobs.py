"""The reference worker's job table: jobs by id, each run in a thread of a bounded pool.

A job id is ``{job_prefix}{n}-{pid}`` (``job_prefix`` "j" unless told otherwise), so ids
from two runs of a worker differ. A POST for a request whose job is running or completed
returns that job (a retried POST does not run the work twice); a failed or cancelled one
is run again. At most ``keep_jobs`` jobs are kept; the oldest finished ones are forgotten
first. ``max_duration_s`` (s) bounds every job.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gpu_router.shim.gpu_sources.base import (
    JOB_CANCELLED,
    JOB_COMPLETED,
    JOB_FAILED,
    JOB_RUNNING,
    WorkerHealth,
)

from .device import DeviceInfo, warm_up_cuda
from .loops import Job, run_cpu, run_cuda

JobFn = Callable[[Job, DeviceInfo, float], dict[str, Any]]


class Worker:
    """Jobs of one worker process: each runs in a thread of a bounded pool."""

    def __init__(
        self,
        device: DeviceInfo,
        *,
        max_jobs: int = 16,
        max_duration_s: float = 3600.0,
        keep_jobs: int = 10_000,
        runner: JobFn | None = None,
        job_prefix: str = "j",
    ) -> None:
        self.device = device
        self.max_jobs = max_jobs
        self.max_duration_s = max_duration_s
        self.keep_jobs = keep_jobs
        self.runner = runner or (run_cuda if device.mode == "cuda" else run_cpu)
        self.job_prefix = job_prefix
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.by_request: dict[str, str] = {}
        self.running = 0
        self.ready = device.mode == "cpu"
        self._ids = itertools.count(1)
        self._pool = ThreadPoolExecutor(max_workers=max_jobs, thread_name_prefix="job")
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self.device.mode == "cuda":
            await asyncio.get_running_loop().run_in_executor(self._pool, warm_up_cuda, self.device)
        self.ready = True

    async def stop(self) -> None:
        for job in self.jobs.values():
            job.cancel.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def existing(self, request_id: str) -> Job | None:
        """The job a new POST for ``request_id`` returns instead of running it again."""
        old = self.jobs.get(self.by_request.get(request_id, ""))
        return old if old is not None and old.state in (JOB_RUNNING, JOB_COMPLETED) else None

    def submit(self, request_id: str, payload: Any, duration_ms: float, memory_mb: float) -> Job:
        old = self.existing(request_id)
        if old is not None:
            return old  # a retried POST does not run the work twice
        job_id = f"{self.job_prefix}{next(self._ids)}-{os.getpid()}"
        job = Job(job_id, request_id, payload, duration_ms, memory_mb)
        self.jobs[job.job_id] = job
        self.by_request[request_id] = job.job_id
        self.running += 1
        task = asyncio.get_running_loop().create_task(self._run(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._evict()
        return job

    async def _run(self, job: Job) -> None:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(
                self._pool, self.runner, job, self.device, self.max_duration_s
            )
        except Exception as exc:  # noqa: BLE001 - the job failed; report why, keep serving
            if job.state == JOB_RUNNING:
                job.state, job.error = JOB_FAILED, f"{type(exc).__name__}: {exc}"[:500]
        else:
            if job.state == JOB_RUNNING:  # a cancel already made it terminal
                job.state, job.result, job.progress = JOB_COMPLETED, result, 1.0
        finally:
            self.running -= 1
            if job.finished_at is None:
                job.finished_at = time.time()

    def cancel(self, job: Job) -> None:
        if job.state == JOB_RUNNING:
            job.cancel.set()
            job.state, job.finished_at = JOB_CANCELLED, time.time()

    def _evict(self) -> None:
        excess = len(self.jobs) - self.keep_jobs
        if excess <= 0:
            return
        for jid in [j for j, job in self.jobs.items() if job.state != JOB_RUNNING][:excess]:
            job = self.jobs.pop(jid)
            if self.by_request.get(job.request_id) == jid:
                del self.by_request[job.request_id]

    def health(self) -> WorkerHealth:
        d = self.device
        return {
            "status": "ok" if self.ready else "starting",
            "gpu": d.index,
            "device_name": d.name,
            "mode": d.mode,
            "device": d.label,
            "torch": d.torch_version,
            "running": self.running,
            "max_jobs": self.max_jobs,
        }
