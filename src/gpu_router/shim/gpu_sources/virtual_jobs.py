"""The job model of the virtual fleet: processor sharing on the event loop.

Each virtual GPU runs its jobs as processor sharing with timers (no threads): a job
carries its modelled work in seconds on the reference GPU; with k jobs co-located each
does ``speed * throughput(k) / k / time_scale`` modelled seconds of work per real second,
so a lone job ends after ``expected_duration_ms / speed`` (times ``time_scale``). Memory
in use (MB) is the GPU's base plus its resident model weights (:mod:`.virtual_models`)
plus each running job's memory and CUDA context. A GPU
notes when it turns busy or idle, for the sampler (:mod:`.virtual_sampling`).
:class:`ProcessorSharing` is the base of :class:`~.virtual.VirtualFleet`.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gpu_router.policy import InvalidValue

from .base import JOB_COMPLETED, JOB_FAILED, JOB_RUNNING, JobStatus
from .virtual_model import VirtualGpuSpec
from .virtual_models import VirtualModels


@dataclass
class _Job:
    job_id: str
    request_id: str
    work_s: float  # modelled seconds at full speed
    memory_mb: float
    submitted: float
    fail: str | None = None
    remaining: float = 0.0
    state: str = JOB_RUNNING
    finished: float | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    peak_k: int = 1
    model_load_s: float | None = None  # modelled seconds it spent loading its model
    waiters: list[asyncio.Future[None]] | None = None  # VirtualWorker.wait callers
    watchers: list[Callable[[JobStatus], None]] | None = None  # VirtualWorker.watch

    def view(self) -> JobStatus:
        total = self.work_s
        progress = (
            1.0
            if self.state == JOB_COMPLETED
            else (0.0 if total <= 0 else min(1.0, max(0.0, 1.0 - self.remaining / total)))
        )
        view: JobStatus = {
            "job_id": self.job_id,
            "request_id": self.request_id,
            "state": self.state,
            "progress": round(progress, 4),
            "result": self.result,
            "error": self.error,
        }
        if self.model_load_s:
            view["model_load_s"] = self.model_load_s
        return view


@dataclass
class _Gpu:
    gpu_id: str
    spec: VirtualGpuSpec
    jobs: OrderedDict[str, _Job] = field(default_factory=OrderedDict)
    running: dict[str, _Job] = field(default_factory=dict)
    busy_changes: list[tuple[float, bool]] = field(default_factory=list)
    last_advance: float = 0.0
    timer: asyncio.TimerHandle | None = None
    crashed: str | None = None
    hung: bool = False
    power_w: float = 0.0
    temp_c: float = 0.0
    filtered_at: float | None = None
    models: VirtualModels | None = None  # resident models (jobs that name one load it)


class ProcessorSharing:
    """Advance, time and finish the jobs of each :class:`_Gpu` (times in s on the loop)."""

    model: Any  # throughput(k), context_mb (MB), floor_s (s)
    time_scale: float  # real seconds per modelled second
    util_lag_s: float
    period_s: float
    _closed: bool
    _max_finished: int  # finished jobs kept per GPU

    def _now(self) -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return time.monotonic()

    def _rate(self, g: _Gpu) -> float:
        """Modelled seconds of work each running job does per real second."""
        k = len(g.running)
        if k == 0 or g.hung:
            return 0.0
        return g.spec.speed * self.model.throughput(k) / k / self.time_scale

    def _advance(self, g: _Gpu, now: float) -> None:
        rate = self._rate(g)
        dt = now - g.last_advance
        if rate > 0 and dt > 0:
            for job in g.running.values():
                job.remaining = max(0.0, job.remaining - dt * rate)
        g.last_advance = now

    def _reschedule(self, g: _Gpu, now: float) -> None:
        if g.timer is not None:
            g.timer.cancel()
            g.timer = None
        rate = self._rate(g)
        if not g.running or rate <= 0 or self._closed:
            return
        k = len(g.running)
        for job in g.running.values():
            job.peak_k = max(job.peak_k, k)
        delay = min(j.remaining for j in g.running.values()) / rate
        g.timer = asyncio.get_running_loop().call_later(max(0.0, delay), self._on_timer, g)

    def _on_timer(self, g: _Gpu) -> None:
        g.timer = None
        now = self._now()
        self._advance(g, now)
        for job in [j for j in g.running.values() if j.remaining <= 1e-9]:
            if job.fail:
                self._finish(g, job, JOB_FAILED, now, str(job.fail))
            else:
                self._finish(g, job, JOB_COMPLETED, now, None)
        self._reschedule(g, now)

    def _finish(self, g: _Gpu, job: _Job, state: str, now: float, error: str | None) -> None:
        job.state, job.finished, job.error = state, now, error
        waiters, job.waiters = job.waiters, None
        for fut in waiters or ():
            _wake(fut)
        watchers, job.watchers = job.watchers, None
        if job.job_id in g.running:
            del g.running[job.job_id]
            if not g.running:
                self._note_busy(g, now, False)
        if state == JOB_COMPLETED:
            job.remaining = 0.0
            job.result = {
                "device": "virtual",
                "mode": "virtual",
                "gpu_id": g.gpu_id,
                "device_name": g.spec.name,
                "wall_time_ms": round((now - job.submitted) * 1000.0, 3),
                "modelled_ms": round(job.work_s * 1000.0 / g.spec.speed, 3),
                "max_colocated": job.peak_k,
            }
        if watchers:
            loop = asyncio.get_running_loop()
            for callback in watchers:
                loop.call_soon(callback, job.view())

    def _note_busy(self, g: _Gpu, now: float, busy: bool) -> None:
        g.busy_changes.append((now, busy))
        if len(g.busy_changes) > 4096:  # nobody sampled for a while: keep what a sample needs
            self._trim(g, now - self.util_lag_s - self.period_s - 1.0)

    @staticmethod
    def _trim(g: _Gpu, horizon: float) -> None:
        """Drop changes before ``horizon``, keeping the last one at or before it."""
        changes = g.busy_changes
        i = 0
        while i + 1 < len(changes) and changes[i + 1][0] <= horizon:
            i += 1
        if i:
            del changes[:i]

    def _evict(self, g: _Gpu) -> None:
        """Forget the oldest finished jobs beyond ``max_finished``: a walk from the oldest
        that stops once enough are found (jobs are kept in submission order)."""
        excess = len(g.jobs) - self._max_finished
        if excess <= 0:
            return
        ended = (j for j, job in g.jobs.items() if job.state != JOB_RUNNING)
        for jid in list(itertools.islice(ended, excess)):
            del g.jobs[jid]

    def _memory_used(self, g: _Gpu) -> float:
        ctx = self.model.context_mb
        weights = g.models.used_mb() if g.models is not None else 0.0
        return g.spec.base_memory_mb + weights + sum(j.memory_mb + ctx for j in g.running.values())


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _check(name: str, value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise InvalidValue(name, value, "must be a finite number >= 0")
