"""The true state of one simulated GPU: processor sharing of its running requests.

Each running request holds its remaining work in H100-seconds; all progress at the
service model's per-request rate ``speed * factor * gain(n) / n`` (0 while the GPU is
hung or crashed). ``advance(now)`` brings the remaining work up to date before any
change; ``next_completion()`` says how long until the first request finishes at the
current rate. The engine bumps ``version`` on every reschedule, so a completion
event scheduled before a change is recognised as stale and ignored.
"""

from __future__ import annotations

from collections.abc import Callable

from ..policy.types import GpuState, GpuStatus
from .fleet import GpuSpec
from .service_model import ServiceModel

IDLE_POWER_W = 70.0
IDLE_TEMP_C = 30.0
HOT_TEMP_C = 88.0


class SampleClock:
    """Shared by a fleet's GPUs and the monitor: the current sampling period's start and
    the GPUs changed since then, so a sample only has to look at those; ``wake`` (set
    while the monitor sleeps) is called with the index of every GPU touched."""

    __slots__ = ("period_start", "touched", "wake")

    def __init__(self) -> None:
        self.period_start = 0.0
        self.touched: set[int] = set()
        self.wake: Callable[[int], None] | None = None

    def touch(self, index: int) -> None:
        """GPU ``index`` changed (a plain call: compiled code would bypass an
        overridden ``set.add``, so the monitor's wake-up is not hooked into the set)."""
        self.touched.add(index)
        if self.wake is not None:
            self.wake(index)


class SimGpu:
    """Mutable true state of one GPU (the router never sees this object)."""

    __slots__ = (
        "busy_acc",
        "busy_since",
        "clock",
        "completed",
        "factor",
        "failures",
        "gid",
        "hung",
        "index",
        "jobs",
        "last",
        "mark_busy",
        "mark_time",
        "mem",
        "mem_used",
        "model",
        "rate",
        "resident",
        "spec",
        "speed",
        "storm_p",
        "up",
        "version",
    )

    def __init__(
        self, index: int, spec: GpuSpec, model: ServiceModel, clock: SampleClock | None = None
    ) -> None:
        self.index = index
        self.clock = clock or SampleClock()
        self.mark_time = -1.0
        self.mark_busy = 0.0
        self.spec = spec
        self.gid = spec.gpu_id
        self.speed = spec.speed
        self.model = model
        self.jobs: dict[int, float] = {}
        self.mem: dict[int, float] = {}
        self.last = 0.0
        self.rate = 0.0
        self.version = 0
        self.factor = 1.0
        self.hung = False
        self.up = True
        self.busy_acc = 0.0
        self.busy_since = -1.0
        self.mem_used = 0.0
        self.completed = 0
        self.failures = 0
        self.storm_p = 0.0
        self.resident: list[int] = []  # model indices, most recently used last

    def advance(self, now: float) -> None:
        """Charge the work done since the last change (call before every change)."""
        clock = self.clock
        if self.mark_time != clock.period_start:  # first change this sampling period
            start = clock.period_start
            self.mark_busy = self.busy_acc + (
                start - self.busy_since if self.busy_since >= 0 else 0.0
            )
            self.mark_time = start
            clock.touched.add(self.index)
            if clock.wake is not None:
                clock.wake(self.index)
        if self.jobs and self.rate > 0.0:
            done = (now - self.last) * self.rate
            jobs = self.jobs
            for j in jobs:
                jobs[j] -= done
        self.last = now

    def add(self, job: int, work: float, memory_mb: float, now: float) -> None:
        self.advance(now)
        if not self.jobs:
            self.busy_since = now
        self.jobs[job] = work
        self.mem[job] = memory_mb
        self.mem_used += memory_mb

    def remove(self, job: int, now: float) -> float | None:
        """Take a job off; returns its remaining work (None when it was not here)."""
        if job not in self.jobs:
            return None
        self.advance(now)
        rem = self.jobs.pop(job)
        self.mem_used -= self.mem.pop(job)
        if not self.jobs:
            self.busy_acc += now - self.busy_since
            self.busy_since = -1.0
            self.mem_used = 0.0
        return rem

    def load_s(self, model: int, weights_mb: float, keep: int) -> float:
        """Seconds to copy ``model``'s weights in (0 when resident); updates the LRU list."""
        if weights_mb <= 0:
            return 0.0
        res = self.resident
        if model in res:
            res.remove(model)
            res.append(model)
            return 0.0
        res.append(model)
        if len(res) > keep:
            del res[0]
        return self.model.load_time_s(weights_mb * 1e6)

    def reschedule(self) -> float | None:
        """New rate after a change; seconds until the first completion (None: never)."""
        self.version += 1
        clock = self.clock
        clock.touched.add(self.index)
        if clock.wake is not None:
            clock.wake(self.index)
        n = len(self.jobs)
        if n == 0 or self.hung or not self.up:
            self.rate = 0.0
            return None
        self.rate = rate = self.model.rate(self.speed, n, self.factor)
        first = min(self.jobs.values())
        return first / rate if first > 0.0 else 0.0

    def first_job(self) -> int:
        jobs = self.jobs
        return min(jobs, key=jobs.__getitem__)

    def period_utilization(self, now: float, period: float) -> float:
        """Busy share over [clock.period_start, now] (period = its length)."""
        if self.mark_time == self.clock.period_start:
            return (self.busy_at(now) - self.mark_busy) / period
        return 1.0 if self.jobs else 0.0

    def busy_at(self, now: float) -> float:
        """Seconds this GPU has had at least one request running, up to ``now``."""
        return self.busy_acc + (now - self.busy_since if self.busy_since >= 0 else 0.0)

    def snapshot(self, now: float, utilization: float) -> GpuState:
        """What NVML would report: ``utilization`` in [0, 1] measured over the last period."""
        spec = self.spec
        util = min(100.0, max(0.0, utilization * 100.0))
        throttled = self.factor < 1.0
        limit = 700.0
        power = limit if throttled else IDLE_POWER_W + (limit - IDLE_POWER_W) * util / 100.0
        temp = HOT_TEMP_C if throttled else IDLE_TEMP_C + 45.0 * util / 100.0
        status = GpuStatus.ACTIVE if self.up else GpuStatus.ERROR
        return GpuState(
            gpu_id=self.gid,
            name=spec.model,
            compute_capability=spec.compute_capability,
            memory_total_mb=spec.memory_mb,
            memory_used_mb=min(spec.memory_mb, self.mem_used),
            utilization_pct=util,
            temperature_c=temp,
            power_w=power,
            power_limit_w=limit,
            error_rate=self.storm_p,
            performance_index=min(1.0, self.speed),
            status=status,
            speed=self.speed,
            slots=spec.slots,
            sampled_at=now,
        )
