"""The reference worker's job table: jobs by id, each run in a thread of a bounded pool.

The router chooses a job's id (``{request_id}.{attempt}``); without one the worker makes
``{job_prefix}{n}-{pid}`` (``job_prefix`` "j" unless told otherwise). A start whose job id
the worker holds answers that job, whatever its state, and runs nothing ("already have
it"); a start for a request whose job is running or completed returns that job too,
whatever id it names. A finished job is kept, state and result, until the router *acknowledges* it
(:meth:`Worker.ack`, once the router's store has its terminal state), or ``job_ttl_s``
after it finished for one never acknowledged; at most ``keep_jobs`` finished jobs are
kept at all (the oldest are forgotten first). ``max_duration_s`` (s) bounds every job.
``job_log``: a file that gets one JSON line per job start and end (audit, tests).
"""

from __future__ import annotations

import asyncio
import itertools
import json
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
from .models import ModelHolder

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
        job_ttl_s: float = 86_400.0,
        job_log: str | None = None,
        models: ModelHolder | None = None,
    ) -> None:
        self.device = device
        #: resident models (CPU mode: a calibrated delay per load, docs/policy.md)
        self.models = models or ModelHolder(40_000.0, 0.0)
        self.max_jobs = max_jobs
        self.max_duration_s = max_duration_s
        self.keep_jobs = keep_jobs
        self.runner = runner or (run_cuda if device.mode == "cuda" else run_cpu)
        self.job_prefix = job_prefix
        self.job_ttl_s = job_ttl_s
        self._log = open(job_log, "a", buffering=1) if job_log else None  # noqa: SIM115
        self._next_expiry = 0.0
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
        if self._log is not None:
            self._log.close()

    def existing(self, request_id: str, job_id: str | None = None) -> Job | None:
        """The job a new start returns instead of running anything: the job ``job_id``
        if held (any state), else the running or completed job of ``request_id`` (a
        later attempt of a request whose work is running or done is not run again)."""
        held = self.jobs.get(job_id) if job_id is not None else None
        if held is not None:
            return held
        old = self.jobs.get(self.by_request.get(request_id, ""))
        return old if old is not None and old.state in (JOB_RUNNING, JOB_COMPLETED) else None

    def submit(
        self,
        request_id: str,
        payload: Any,
        duration_ms: float,
        memory_mb: float,
        job_id: str | None = None,
        model: dict[str, Any] | None = None,
    ) -> tuple[Job, bool]:
        """Start a job, or return the one held (see :meth:`existing`); whether it is new."""
        self.expire()
        old = self.existing(request_id, job_id)
        if old is not None:
            return old, False  # a repeated start does not run the work twice
        job_id = job_id or f"{self.job_prefix}{next(self._ids)}-{os.getpid()}"
        job = Job(job_id, request_id, payload, duration_ms, memory_mb, model=model)
        self.jobs[job.job_id] = job
        self.by_request[request_id] = job.job_id
        self.running += 1
        self._note("start", job)
        task = asyncio.get_running_loop().create_task(self._run(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._evict()
        return job, True

    def ack(self, job_ids: list[str]) -> dict[str, list[str]]:
        """Forget finished jobs the router has recorded: ``{acked, running, unknown}``
        (a running job is kept; acknowledging is idempotent)."""
        out: dict[str, list[str]] = {"acked": [], "running": [], "unknown": []}
        for jid in job_ids:
            job = self.jobs.get(jid)
            if job is None:
                out["unknown"].append(jid)
            elif job.state == JOB_RUNNING:
                out["running"].append(jid)
            else:
                self._forget(jid)
                out["acked"].append(jid)
        return out

    def listing(self, request_id: str | None = None) -> list[Job]:
        """Every job held (running, or finished and not acknowledged), oldest first."""
        self.expire()
        return [j for j in self.jobs.values() if request_id in (None, j.request_id)]

    def expire(self, now: float | None = None) -> int:
        """Forget finished jobs never acknowledged ``job_ttl_s`` after they finished
        (looked at most once a second); how many."""
        now = time.time() if now is None else now
        if now < self._next_expiry:
            return 0
        self._next_expiry = now + 1.0
        cutoff = now - self.job_ttl_s
        old = [
            jid
            for jid, j in self.jobs.items()
            if j.finished_at is not None and j.finished_at < cutoff
        ]
        for jid in old:
            self._forget(jid)
        return len(old)

    def _forget(self, jid: str) -> None:
        job = self.jobs.pop(jid)
        if self.by_request.get(job.request_id) == jid:
            del self.by_request[job.request_id]

    def _note(self, event: str, job: Job) -> None:
        if self._log is not None:
            line: dict[str, Any] = {
                "event": event,
                "job_id": job.job_id,
                "request_id": job.request_id,
            }
            if event == "end":
                line["state"] = job.state
            line["t"] = time.time()
            self._log.write(json.dumps(line) + "\n")

    async def _run(self, job: Job) -> None:
        loop = asyncio.get_running_loop()
        try:
            if job.model is not None:
                m = job.model
                job.model_load_s = await loop.run_in_executor(
                    self._pool,
                    self.models.ensure,
                    m["id"],
                    float(m.get("memory_mb", 0.0)),
                    list(m.get("evict", [])),
                    job.cancel,
                )
            result = await loop.run_in_executor(
                self._pool, self.runner, job, self.device, self.max_duration_s
            )
        except Exception as exc:
            if job.state == JOB_RUNNING:
                job.state, job.error = JOB_FAILED, f"{type(exc).__name__}: {exc}"[:500]
        else:
            if job.state == JOB_RUNNING:  # a cancel already made it terminal
                job.state, job.result, job.progress = JOB_COMPLETED, result, 1.0
        finally:
            self.running -= 1
            if job.finished_at is None:
                job.finished_at = time.time()
            self._note("end", job)

    def cancel(self, job: Job) -> None:
        if job.state == JOB_RUNNING:
            job.cancel.set()
            job.state, job.finished_at = JOB_CANCELLED, time.time()

    def _evict(self) -> None:
        excess = len(self.jobs) - self.keep_jobs
        if excess <= 0:
            return
        for jid in [j for j, job in self.jobs.items() if job.state != JOB_RUNNING][:excess]:
            self._forget(jid)

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
            "models": [m["id"] for m in self.models.held()],
        }
