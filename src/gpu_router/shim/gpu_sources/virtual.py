"""A virtual GPU fleet in real time, so the service runs and is tested without GPUs.

Each virtual GPU runs its jobs as processor sharing on the event loop (timers, no
threads): a job carries its modelled work in seconds on the reference GPU; with k jobs
co-located each advances at ``speed * throughput(k) / k`` (total throughput +13% at
k=2, +16% at k=4, as ``fixtures/h100_service_times.json`` measured), so a lone job
ends after ``expected_duration_ms / speed`` (times ``time_scale``). Memory in use is
the GPU's base plus each job's memory and CUDA context; a job that does not fit fails
with ``out of memory``. Samples look like NVML: utilization is the busy share of a
window ending ``util_lag_s`` ago (NVML lags load by 250-300 ms), power and temperature
follow load through first-order lags up to the power cap.

The model is ``CalibratedModel`` (the simulator's calibration constants, without
importing SimPy) unless a ``sim.service_model.ServiceModel`` or another model is passed.
No job takes less than the launch-bound floor (3.36 ms on the reference GPU).

A job's payload may hold ``{"simulate": {"duration_ms": D, "fail": "message"}}`` to
override its modelled duration or make it fail at its end (for tests).
``crash``, ``hang`` and ``recover`` inject faults.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpu_router.policy.errors import InvalidValue
from gpu_router.policy.health import HardSignal
from gpu_router.policy.types import GpuState, GpuStatus

from .base import (
    JOB_CANCELLED,
    JOB_COMPLETED,
    JOB_FAILED,
    JOB_RUNNING,
    ErrorSignal,
    JobNotFound,
    SignalLog,
    WorkerUnavailable,
    positive_period,
)

#: total throughput of k co-located jobs relative to one (304 -> 344 -> 353 it/s); the
#: same numbers as ``sim.service_model.Calibration`` (a test keeps the two equal)
_SHARING = ((1, 1.0), (2, 1.13287), (4, 1.16250))


class CalibratedModel:
    """Service model from the H100 measurements: sharing gain, per-job CUDA context (MB)
    and the launch-bound floor (s) below which no job runs."""

    context_mb = 794.96  # NVML used minus allocated, per co-located process
    floor_s = 0.0033565  # median forward pass of the small transformer runs

    def throughput(self, k: int) -> float:
        if k <= 1:
            return 1.0
        for (k0, v0), (k1, v1) in itertools.pairwise(_SHARING):
            if k <= k1:
                return v0 + (v1 - v0) * (k - k0) / (k1 - k0)
        return _SHARING[-1][1]


class _SimModel:
    """``sim.service_model.ServiceModel`` seen through the interface above."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.context_mb = float(model.cal.context_overhead_mb)
        self.floor_s = float(model.cal.floor_s)

    def throughput(self, k: int) -> float:
        return 1.0 if k <= 1 else float(self._model.gain(k))


def adapt_model(model: Any) -> Any:
    """A model offering ``throughput(k)``, ``context_mb`` and ``floor_s``: ours as it is,
    the simulator's ``ServiceModel`` (``gain``, ``cal``) through an adapter. ``None``:
    ``CalibratedModel``, which keeps ``gpu-router serve`` from importing SimPy."""
    if model is None:
        return CalibratedModel()
    if callable(getattr(model, "throughput", None)) and hasattr(model, "context_mb"):
        return model
    if callable(getattr(model, "gain", None)) and hasattr(model, "cal"):
        return _SimModel(model)
    raise InvalidValue("model", model, "needs throughput(k) and context_mb, or gain(n) and cal")


@dataclass(frozen=True, slots=True)
class VirtualGpuSpec:
    """One virtual GPU model; defaults are the captured H100 80GB HBM3."""

    name: str = "NVIDIA H100 80GB HBM3"
    memory_total_mb: float = 81_559.0
    base_memory_mb: float = 480.0
    compute_capability: tuple[int, int] = (9, 0)
    speed: float = 1.0
    slots: int = 1
    idle_power_w: float = 72.0
    power_limit_w: float = 700.0
    idle_temp_c: float = 37.0
    load_temp_c: float = 58.0


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
    waiters: list[asyncio.Future[None]] | None = None  # VirtualWorker.wait callers
    watchers: list[Callable[[dict[str, Any]], None]] | None = None  # VirtualWorker.watch

    def view(self) -> dict[str, Any]:
        total = self.work_s
        progress = (
            1.0
            if self.state == JOB_COMPLETED
            else (0.0 if total <= 0 else min(1.0, max(0.0, 1.0 - self.remaining / total)))
        )
        return {
            "job_id": self.job_id,
            "request_id": self.request_id,
            "state": self.state,
            "progress": round(progress, 4),
            "result": self.result,
            "error": self.error,
        }


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


class VirtualWorker:
    """The job API of one virtual GPU (same as the HTTP worker's, in process)."""

    def __init__(self, fleet: VirtualFleet, gpu_id: str) -> None:
        self._fleet = fleet
        self.gpu_id = gpu_id

    async def submit(
        self, request_id: str, payload: Any, expected_duration_ms: float, memory_mb: float
    ) -> str:
        return self._fleet.submit(self.gpu_id, request_id, payload, expected_duration_ms, memory_mb)

    async def status(self, job_id: str) -> dict[str, Any]:
        return self._fleet.job_status(self.gpu_id, job_id)

    async def cancel(self, job_id: str) -> None:
        self._fleet.cancel(self.gpu_id, job_id)

    async def wait(self, job_id: str, timeout: float) -> dict[str, Any]:
        """The job's status once it has ended or ``timeout`` s have passed, whichever
        comes first: a poll that answers as soon as the job ends."""
        return await self._fleet.wait(self.gpu_id, job_id, timeout)

    # in-process only (the dispatcher's fast path: no task and no polling per job)

    def start_job(
        self, request_id: str, payload: Any, expected_duration_ms: float, memory_mb: float
    ) -> str:
        """:meth:`submit`, synchronously."""
        return self._fleet.submit(self.gpu_id, request_id, payload, expected_duration_ms, memory_mb)

    def watch(self, job_id: str, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback(status)`` on the event loop once the job has ended."""
        self._fleet.watch(self.gpu_id, job_id, callback)

    def progress(self, job_id: str) -> float | None:
        """The job's progress in [0, 1] now, or None when the job is unknown."""
        try:
            return float(self._fleet.job_status(self.gpu_id, job_id)["progress"])
        except JobNotFound:
            return None


class VirtualFleet:
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
        for g in self._gpus.values():
            g.power_w, g.temp_c = g.spec.idle_power_w, g.spec.idle_temp_c
        self._workers = {gid: VirtualWorker(self, gid) for gid in self._gpus}
        self._ids = itertools.count(1)
        self._signals = SignalLog()
        self._closed = False

    @property
    def gpu_ids(self) -> list[str]:
        return list(self._gpus)

    # -- the source interface ----------------------------------------------------------

    async def sample(self) -> list[GpuState]:
        now = self._now()
        stamp = self._clock()
        return [self._state(g, now, stamp) for g in self._gpus.values()]

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
    ) -> str:
        g = self._gpu(gpu_id)
        if self._closed or g.crashed:
            raise WorkerUnavailable(f"{gpu_id}: {g.crashed or 'closed'}")
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
            f"v{next(self._ids)}-{gpu_id}",
            request_id,
            max(duration_ms / 1000.0, getattr(self.model, "floor_s", 0.0)),
            float(memory_mb),
            now,
            fail=sim.get("fail"),
        )
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

    def job_status(self, gpu_id: str, job_id: str) -> dict[str, Any]:
        g = self._gpu(gpu_id)
        job = g.jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"{gpu_id}: no job {job_id!r}")
        self._advance(g, self._now())
        return job.view()

    async def wait(self, gpu_id: str, job_id: str, timeout: float) -> dict[str, Any]:
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

    def watch(self, gpu_id: str, job_id: str, callback: Callable[[dict[str, Any]], None]) -> None:
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

    # -- processor sharing -------------------------------------------------------------------

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
        excess = len(g.jobs) - self._max_finished
        if excess <= 0:
            return
        for jid in [j for j, job in g.jobs.items() if job.state != JOB_RUNNING][:excess]:
            del g.jobs[jid]

    # -- what a sampler sees -----------------------------------------------------------------

    def _memory_used(self, g: _Gpu) -> float:
        ctx = self.model.context_mb
        return g.spec.base_memory_mb + sum(j.memory_mb + ctx for j in g.running.values())

    def _busy_share(self, g: _Gpu, start: float, end: float) -> float:
        """Share of [start, end] during which the GPU ran at least one job."""
        if end <= start:
            return 1.0 if g.running else 0.0
        busy, t, state = 0.0, start, False
        for at, value in g.busy_changes:
            if at <= start:
                state = value
                continue
            if at >= end:
                break
            if state:
                busy += at - t
            t, state = at, value
        if state:
            busy += end - t
        return busy / (end - start)

    def _state(self, g: _Gpu, now: float, stamp: float) -> GpuState:
        self._advance(g, now)
        end = now - self.util_lag_s
        util = 100.0 * self._busy_share(g, end - self.period_s, end)
        self._trim(g, end - self.period_s - 1.0)
        load = 1.0 if g.running and not g.hung else 0.0
        dt = 0.0 if g.filtered_at is None else now - g.filtered_at
        g.filtered_at = now
        spec = g.spec
        target_p = spec.idle_power_w + (spec.power_limit_w - spec.idle_power_w) * load
        target_t = spec.idle_temp_c + (spec.load_temp_c - spec.idle_temp_c) * load
        g.power_w += (target_p - g.power_w) * (1.0 - math.exp(-dt / self.power_tau_s))
        g.temp_c += (target_t - g.temp_c) * (1.0 - math.exp(-dt / self.temp_tau_s))
        return GpuState(
            gpu_id=g.gpu_id,
            name=spec.name,
            compute_capability=spec.compute_capability,
            memory_total_mb=spec.memory_total_mb,
            memory_used_mb=min(spec.memory_total_mb, self._memory_used(g)),
            utilization_pct=round(min(100.0, util), 3),
            temperature_c=round(g.temp_c, 2),
            power_w=round(min(g.power_w, spec.power_limit_w), 3),
            power_limit_w=spec.power_limit_w,
            error_rate=1.0 if g.crashed else 0.0,
            status=GpuStatus.ERROR if g.crashed else GpuStatus.ACTIVE,
            speed=spec.speed,
            slots=spec.slots,
            sampled_at=stamp,
        )

    def _gpu(self, gpu_id: str) -> _Gpu:
        try:
            return self._gpus[gpu_id]
        except KeyError:
            raise WorkerUnavailable(f"no virtual GPU {gpu_id!r}") from None


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
