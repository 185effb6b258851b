"""A virtual GPU fleet in real time, so the service runs and is tested without GPUs.

:class:`VirtualFleet` is a ``GpuSource`` of N virtual GPUs with in-process workers
(:class:`VirtualWorker`). Its parts: the GPU spec and service model
(:mod:`.virtual_model`), processor sharing of the jobs on the event loop
(:mod:`.virtual_jobs`), and the NVML-like samples (:mod:`.virtual_sampling`). A job that
does not fit in memory fails with ``out of memory``.

A job that names a model loads it first unless the GPU holds it
(:mod:`.virtual_models`: load times drawn from ``model_load_times`` with the seeded
``model_rng``, or ``model_load_s``; LRU by memory in ``model_cache_share`` of the
GPU's memory); the load is added to the job's work and reported in its status
(``model_load_s``), ``held_models`` says what each GPU holds.

A job's payload may hold ``{"simulate": {"duration_ms": D, "fail": "message"}}`` to
override its modelled duration or make it fail at its end (for tests).
``crash``, ``hang`` and ``recover`` inject faults.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gpu_router.policy import GpuState, HardSignal, InvalidValue

from .base import (
    JOB_CANCELLED,
    JOB_FAILED,
    JOB_RUNNING,
    ErrorSignal,
    JobNotFound,
    JobStatus,
    SignalLog,
    WorkerUnavailable,
    positive_period,
)
from .virtual_jobs import _check, _Gpu, _Job, _wake
from .virtual_model import CalibratedModel, VirtualGpuSpec, adapt_model
from .virtual_models import LoadSampler, VirtualModels
from .virtual_sampling import SampledGpus

__all__ = ["CalibratedModel", "VirtualFleet", "VirtualGpuSpec", "VirtualWorker", "adapt_model"]


class VirtualWorker:
    """The job API of one virtual GPU (same as the HTTP worker's, in process)."""

    def __init__(self, fleet: VirtualFleet, gpu_id: str) -> None:
        self._fleet = fleet
        self.gpu_id = gpu_id

    async def submit(
        self,
        request_id: str,
        payload: Any,
        expected_duration_ms: float,
        memory_mb: float,
        job_id: str | None = None,
        model: dict[str, Any] | None = None,
    ) -> str:
        return self._fleet.submit(
            self.gpu_id, request_id, payload, expected_duration_ms, memory_mb, job_id, model
        )

    async def status(self, job_id: str) -> JobStatus:
        return self._fleet.job_status(self.gpu_id, job_id)

    async def cancel(self, job_id: str) -> None:
        self._fleet.cancel(self.gpu_id, job_id)

    async def jobs(self, request_id: str | None = None) -> list[JobStatus]:
        return self._fleet.job_list(self.gpu_id, request_id)

    async def ack(self, job_ids: list[str]) -> None:
        self._fleet.ack(self.gpu_id, job_ids)

    async def restart(self) -> dict[str, Any]:
        """The HTTP worker's ``POST /restart``, in process (``VirtualFleet.restart``)."""
        return self._fleet.restart(self.gpu_id)

    async def wait(self, job_id: str, timeout: float) -> JobStatus:
        """The job's status once it has ended or ``timeout`` s have passed, whichever
        comes first: a poll that answers as soon as the job ends."""
        return await self._fleet.wait(self.gpu_id, job_id, timeout)

    # in-process only (the dispatcher's fast path: no task and no polling per job)

    def start_job(
        self,
        request_id: str,
        payload: Any,
        expected_duration_ms: float,
        memory_mb: float,
        job_id: str | None = None,
        model: dict[str, Any] | None = None,
    ) -> str:
        """:meth:`submit`, synchronously."""
        return self._fleet.submit(
            self.gpu_id, request_id, payload, expected_duration_ms, memory_mb, job_id, model
        )

    def watch(self, job_id: str, callback: Callable[[JobStatus], None]) -> None:
        """Call ``callback(status)`` on the event loop once the job has ended."""
        self._fleet.watch(self.gpu_id, job_id, callback)

    def progress(self, job_id: str) -> float | None:
        """The job's progress in [0, 1] now, or None when the job is unknown."""
        try:
            return float(self._fleet.job_status(self.gpu_id, job_id)["progress"])
        except JobNotFound:
            return None


class VirtualFleet(SampledGpus):
    """N virtual GPUs with in-process workers; a ``GpuSource``."""

    def __init__(
        self,
        n_gpus: int = 4,
        *,
        specs: Sequence[VirtualGpuSpec] | None = None,
        model: Any = None,
        period_s: float = 0.1,
        util_lag_s: float = 0.25,
        power_tau_s: float = 0.4,
        temp_tau_s: float = 3.0,
        time_scale: float = 1.0,
        id_prefix: str = "gpu-",
        clock: Callable[[], float] = time.monotonic,
        max_finished: int = 10_000,
        model_cache_share: float = 0.5,
        model_load_s: float = 0.0,
        model_load_times: LoadSampler | None = None,
        model_rng: np.random.Generator | None = None,
    ) -> None:
        specs = list(specs) if specs is not None else [VirtualGpuSpec()] * n_gpus
        if not specs:
            raise InvalidValue("virtual_gpus", len(specs), "must be >= 1")
        if not (isinstance(time_scale, int | float) and time_scale > 0):
            raise InvalidValue("time_scale", time_scale, "must be a number > 0")
        self.period_s = positive_period("period_s", period_s)
        self.model = adapt_model(model)
        self.util_lag_s = util_lag_s
        self.power_tau_s = power_tau_s
        self.temp_tau_s = temp_tau_s
        self.time_scale = float(time_scale)
        self._clock = clock
        self._max_finished = max_finished
        self._gpus = {f"{id_prefix}{i}": _Gpu(f"{id_prefix}{i}", s) for i, s in enumerate(specs)}
        rng = model_rng if model_rng is not None else np.random.default_rng(0)
        for g in self._gpus.values():
            g.power_w, g.temp_c = g.spec.idle_power_w, g.spec.idle_temp_c
            cap = g.spec.memory_total_mb * model_cache_share
            g.models = VirtualModels(cap, model_load_times, rng, model_load_s)
        self._workers = {gid: VirtualWorker(self, gid) for gid in self._gpus}
        self._ids = itertools.count(1)
        self._signals = SignalLog()
        self._closed = False
        self.restarts: dict[str, int] = {}  # gpu_id -> restarts through the worker API

    @property
    def gpu_ids(self) -> list[str]:
        return list(self._gpus)

    # -- the source interface ----------------------------------------------------------

    #: GPUs read per turn of the event loop (one read is about 35 us: 64 GPUs in one go
    #: held the loop for 2.3-3.5 ms, measured at 1,000 requests/s)
    SAMPLE_CHUNK = 8

    async def sample(self) -> list[GpuState]:
        gpus = list(self._gpus.values())
        out: list[GpuState] = []
        for at in range(0, len(gpus), self.SAMPLE_CHUNK):
            if at:
                await asyncio.sleep(0)  # let requests in between
            now, stamp = self._now(), self._clock()
            out.extend(self._state(g, now, stamp) for g in gpus[at : at + self.SAMPLE_CHUNK])
        return out

    def held_models(self, gpu_id: str) -> list[str]:
        """The ids of the models the GPU holds (loads ended), least recently used first:
        the reference worker's ``/health`` ``models``."""
        models = self._gpu(gpu_id).models
        return [] if models is None else [m["id"] for m in models.held(self._now())]

    def drain_signals(self) -> list[ErrorSignal]:
        return self._signals.drain()

    def worker_url(self, gpu_id: str) -> str | None:
        self._gpu(gpu_id)
        return None

    def virtual_worker(self, gpu_id: str) -> VirtualWorker:
        self._gpu(gpu_id)
        return self._workers[gpu_id]

    async def aclose(self) -> None:
        self._closed = True
        for g in self._gpus.values():
            if g.timer is not None:
                g.timer.cancel()
                g.timer = None
            for job in list(g.running.values()):
                self._finish(g, job, JOB_CANCELLED, self._now(), "fleet closed")

    # -- faults ----------------------------------------------------------------------------

    def crash(self, gpu_id: str, reason: str = "crashed") -> None:
        """The GPU dies: its running jobs fail, it reports ``error``, submissions are refused."""
        g = self._gpu(gpu_id)
        now = self._now()
        self._advance(g, now)
        g.crashed = reason
        for job in list(g.running.values()):
            self._finish(g, job, JOB_FAILED, now, f"gpu {gpu_id} {reason}")
        self._reschedule(g, now)
        self._signals.add(
            ErrorSignal(gpu_id, HardSignal.CRASHED.value, True, reason, self._clock())
        )

    def hang(self, gpu_id: str, hung: bool = True) -> None:
        """The worker stops making progress but still answers (a hung worker)."""
        g = self._gpu(gpu_id)
        now = self._now()
        self._advance(g, now)
        g.hung = hung
        self._reschedule(g, now)

    def clear(self, gpu_id: str) -> None:
        """Nothing is latched here: a crashed virtual GPU stays down until ``recover``."""
        self._gpu(gpu_id)

    def restart(self, gpu_id: str) -> dict[str, Any]:
        """The worker restarts: running jobs are cancelled, a crash or hang is over.
        ``{restarted, cancelled (job ids), restarts}`` as the HTTP worker answers."""
        g = self._gpu(gpu_id)
        now = self._now()
        self._advance(g, now)
        cancelled = list(g.running)
        for job in list(g.running.values()):
            self._finish(g, job, JOB_CANCELLED, now, "worker restart")
        if g.models is not None:
            g.models.clear()  # the device reset gives its memory back
        g.crashed, g.hung = None, False
        self._reschedule(g, now)
        self.restarts[gpu_id] = self.restarts.get(gpu_id, 0) + 1
        return {"restarted": True, "cancelled": cancelled, "restarts": self.restarts[gpu_id]}

    def recover(self, gpu_id: str) -> None:
        g = self._gpu(gpu_id)
        g.crashed = None
        self.hang(gpu_id, False)

    # -- jobs --------------------------------------------------------------------------------

    def submit(
        self,
        gpu_id: str,
        request_id: str,
        payload: Any,
        expected_duration_ms: float,
        memory_mb: float,
        job_id: str | None = None,
        model: dict[str, Any] | None = None,
    ) -> str:
        """Start a job (as ``job_id`` when given: a job held under that id is answered,
        nothing runs again), loading ``model`` first when the GPU lacks it; its id."""
        g = self._gpu(gpu_id)
        if self._closed or g.crashed:
            raise WorkerUnavailable(f"{gpu_id}: {g.crashed or 'closed'}")
        if job_id is not None and job_id in g.jobs:
            return job_id
        _check("expected_duration_ms", expected_duration_ms)
        _check("memory_mb", memory_mb)
        sim = payload.get("simulate") if isinstance(payload, dict) else None
        sim = sim if isinstance(sim, dict) else {}
        duration_ms = sim.get("duration_ms", expected_duration_ms)
        _check("simulate.duration_ms", duration_ms)
        now = self._now()
        self._advance(g, now)
        for job in g.running.values():  # idempotent re-submission while it runs
            if job.request_id == request_id:
                return job.job_id
        job = _Job(
            job_id or f"v{next(self._ids)}-{gpu_id}",
            request_id,
            max(duration_ms / 1000.0, getattr(self.model, "floor_s", 0.0)),
            float(memory_mb),
            now,
            fail=sim.get("fail"),
        )
        if model is not None and g.models is not None:
            wait, job.model_load_s = g.models.ensure(model, now, self.time_scale)
            job.work_s += wait * g.spec.speed * self.model.throughput(1)
        job.remaining = job.work_s
        g.jobs[job.job_id] = job
        self._evict(g)
        needed = memory_mb + self.model.context_mb
        if self._memory_used(g) + needed > g.spec.memory_total_mb:
            self._finish(g, job, JOB_FAILED, now, "out of memory")
            return job.job_id
        was_busy = bool(g.running)
        g.running[job.job_id] = job
        if not was_busy:
            self._note_busy(g, now, True)
        self._reschedule(g, now)
        return job.job_id

    def job_list(self, gpu_id: str, request_id: str | None = None) -> list[JobStatus]:
        """Every job the GPU holds (running, or finished and not acknowledged)."""
        g = self._gpu(gpu_id)
        self._advance(g, self._now())
        return [j.view() for j in g.jobs.values() if request_id in (None, j.request_id)]

    def ack(self, gpu_id: str, job_ids: list[str]) -> None:
        """Forget finished jobs the router has recorded (running ones are kept)."""
        g = self._gpu(gpu_id)
        for jid in job_ids:
            job = g.jobs.get(jid)
            if job is not None and job.state != JOB_RUNNING:
                del g.jobs[jid]

    def job_status(self, gpu_id: str, job_id: str) -> JobStatus:
        g = self._gpu(gpu_id)
        job = g.jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"{gpu_id}: no job {job_id!r}")
        self._advance(g, self._now())
        return job.view()

    async def wait(self, gpu_id: str, job_id: str, timeout: float) -> JobStatus:
        g = self._gpu(gpu_id)
        job = g.jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"{gpu_id}: no job {job_id!r}")
        if job.state == JOB_RUNNING and timeout > 0:
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[None] = loop.create_future()
            if job.waiters is None:
                job.waiters = []
            job.waiters.append(fut)
            timer = loop.call_later(timeout, _wake, fut)
            try:
                await fut
            finally:
                timer.cancel()
                if job.waiters is not None and fut in job.waiters:
                    job.waiters.remove(fut)
        return self.job_status(gpu_id, job_id)

    def watch(self, gpu_id: str, job_id: str, callback: Callable[[JobStatus], None]) -> None:
        """Call ``callback(status)`` on the event loop's next turn once the job has ended
        (at once if it already has)."""
        job = self._gpu(gpu_id).jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"{gpu_id}: no job {job_id!r}")
        if job.state != JOB_RUNNING:
            asyncio.get_running_loop().call_soon(callback, job.view())
        elif job.watchers is None:
            job.watchers = [callback]
        else:
            job.watchers.append(callback)

    def cancel(self, gpu_id: str, job_id: str) -> None:
        g = self._gpu(gpu_id)
        job = g.jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"{gpu_id}: no job {job_id!r}")
        if job.state == JOB_RUNNING:
            now = self._now()
            self._advance(g, now)
            self._finish(g, job, JOB_CANCELLED, now, None)
            self._reschedule(g, now)

    def _gpu(self, gpu_id: str) -> _Gpu:
        try:
            return self._gpus[gpu_id]
        except KeyError:
            raise WorkerUnavailable(f"no virtual GPU {gpu_id!r}") from None
