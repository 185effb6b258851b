"""The simulated NVML sampler: the router sees GPU state only through it, late.

Every ``period_s`` the monitor measures each GPU: utilization is the busy share
over the last period (as NVML averages over its sample window); the snapshot,
stamped ``sampled_at`` = the measurement time, reaches the router ``lag_s`` later
(NVML's reported utilization trails load by about 250-300 ms; the default lag is
275 ms). Memory is read at delivery time, since NVML shows allocations at once.
With ``skip_unchanged`` a GPU whose reading is the same as its last delivered one
is not re-sent (a 6,212-GPU fleet mostly idles or saturates between samples).
During a ``monitor_outage`` nothing is delivered.

Idle time costs nothing (``sleep_when_idle``, with ``skip_unchanged``): after a
sample that had no GPU to look at, the monitor schedules nothing and waits for the
first GPU change (the fleet's clock calls ``_wake`` on the first GPU it marks touched).
Waking, it finds the sampling grid where ticking would have been, the sequence
``period_s, fl(period_s + period_s), ...`` of float additions (``grid_before``
jumps whole runs of it exactly), and resumes there: the router receives the same
readings at the same times as from a monitor that ticked through the idle time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import simpy
from simpy.events import EventPriority

from ..policy.types import GpuState
from .gpus import SampleClock, SimGpu
from .kernel import later
from .scenario import MonitorSpec


def grid_before(g: float, p: float, now: float) -> float:
    """The last point of the grid ``g, fl(g + p), fl(fl(g + p) + p), ...`` whose successor
    is >= ``now``: what repeated ``t += p`` reaches, without doing every addition.

    Inside one binade (ulp u fixed) adding p to a multiple of u rounds to the same
    increment d = round(p / u) * u as long as the sum stays inside and p / u is not
    a tie, so a run of k steps is the exact sum g + k * d; the rest goes step by step.
    """
    while g + p < now:
        u = math.ulp(g)
        q = p / u
        if g <= 0 or not q < 2.0**52 or q < 1 or q - math.floor(q) == 0.5:
            g = g + p
            continue
        r = round(q)
        d = r * u
        k_binade = math.floor((2.0**53 - 2.0 - q - g / u) / r)  # steps that stay regular
        k = min(k_binade, math.ceil((now - g) / d) - 1)
        while k > 0 and g + k * d >= now:
            k -= 1
        g = g + k * d if k > 0 else g + p
    return g


def delay_to(now: float, at: float) -> float:
    """A delay d with ``now + d == at`` exactly in floats (SimPy adds the delay to now)."""
    d = max(0.0, at - now)
    while now + d < at:
        d = math.nextafter(d, math.inf)
    while d > 0 and now + d > at:
        d = math.nextafter(d, -math.inf)
    return d


#: after SimPy's NORMAL (1) events of the same time
SAMPLE_PRIORITY = EventPriority(2)


class Monitor:
    """Periodic sampler on a SimPy environment; ``deliver`` is the router's observe."""

    def __init__(
        self,
        env: simpy.Environment,
        gpus: list[SimGpu],
        spec: MonitorSpec,
        deliver: Callable[[GpuState], None],
        keep_running: Callable[[], bool],
        clock: SampleClock,
    ) -> None:
        self.env = env
        self.gpus = gpus
        self.spec = spec
        self.deliver = deliver
        self.keep_running = keep_running
        self.clock = clock
        self.outages = 0
        self.samples = 0
        self.delivered = 0
        self._prev_touched: set[int] = set(range(len(gpus)))
        self._resend: set[int] = set()  # readings dropped by an outage
        self._last_sent: list[tuple[float, ...] | None] = [None] * len(gpus)
        self._sleepy = spec.skip_unchanged and spec.sleep_when_idle
        self._asleep = False
        self._last = 0.0  # time of the last sample (the grid point the monitor slept at)

    def start(self) -> None:
        if self.spec.enabled:
            self._at(self.spec.period_s)

    def _sample(self, _event: Any) -> None:
        now = self.env.now
        period = self.spec.period_s
        clock = self.clock
        ids: Iterable[int]
        if self.spec.skip_unchanged:
            # a GPU untouched in this period and the last one reads as it did last time
            ids = sorted(clock.touched | self._prev_touched | self._resend)
            self._resend = set()
        else:
            ids = range(len(self.gpus))
        gpus = self.gpus
        batch = [(gpus[i], gpus[i].period_utilization(now, period)) for i in ids]
        self._prev_touched = clock.touched
        clock.touched = set()
        clock.period_start = now
        self.samples += 1
        if not batch and self._sleepy:
            if self.keep_running():
                self._sleep(now)
            return
        if self.spec.lag_s > 0:
            later(self.env, self.spec.lag_s, (now, batch), self._deliver)
        else:
            self._send(now, batch)
        if self.keep_running():
            self._at(period)

    def _sleep(self, now: float) -> None:
        """Nothing to look at: schedule nothing until a GPU changes (or a reading is
        dropped by an outage and must be re-sent)."""
        self._asleep = True
        self._last = now
        self.clock.wake = self._wake

    def _wake(self, index: int | None = None) -> None:
        """Resume on the grid: the period start is the last grid point before now, the
        next sample the one after, as if the monitor had ticked through."""
        if not self._asleep:
            return
        self._asleep = False
        clock = self.clock
        clock.wake = None
        if not self.keep_running():
            return
        now, period = self.env.now, self.spec.period_s
        stale = clock.period_start
        start = grid_before(self._last, period, now)
        clock.period_start = start
        if index is not None:  # its advance() just marked the period with the stale start
            g = self.gpus[index]
            if g.mark_time == stale and start != stale:
                g.mark_busy = g.busy_acc + (start - g.busy_since if g.busy_since >= 0 else 0.0)
                g.mark_time = start
        self._at(delay_to(now, start + period))

    def _at(self, delay: float) -> None:
        """Schedule the next sample: after every other event of the same instant (SimPy
        orders events by time, then priority, then creation), so that the order of a
        sample and an event at the same time never depends on when either was
        scheduled, and sleeping reproduces ticking even at exact ties."""
        later(self.env, delay, None, self._sample, SAMPLE_PRIORITY)

    def _deliver(self, event: Any) -> None:
        sampled_at, batch = event.value
        self._send(sampled_at, batch)

    def _send(self, sampled_at: float, batch: list[tuple[SimGpu, float]]) -> None:
        if self.outages > 0:
            self._resend.update(g.index for g, _u in batch)
            if batch:
                self._wake()
            return
        skip = self.spec.skip_unchanged
        sent = self._last_sent
        for g, util in batch:
            key = (util, g.mem_used, g.up, g.factor, g.storm_p)
            if skip and sent[g.index] == key:
                continue
            sent[g.index] = key
            self.delivered += 1
            self.deliver(g.snapshot(sampled_at, util))
