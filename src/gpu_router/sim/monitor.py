"""The simulated NVML sampler: the router sees GPU state only through it, late.

Every ``period_s`` the monitor measures each GPU: utilization is the busy share
over the last period (as NVML averages over its sample window); the snapshot,
stamped ``sampled_at`` = the measurement time, reaches the router ``lag_s`` later
(NVML's reported utilization trails load by about 250-300 ms; the default lag is
275 ms). Memory is read at delivery time, since NVML shows allocations at once.
With ``skip_unchanged`` a GPU whose reading is the same as its last delivered one
is not re-sent (a 6,212-GPU fleet mostly idles or saturates between samples).
During a ``monitor_outage`` nothing is delivered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import simpy

from ..policy.types import GpuState
from .gpus import SampleClock, SimGpu
from .scenario import MonitorSpec


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

    def start(self) -> None:
        if self.spec.enabled:
            self.env.timeout(self.spec.period_s).callbacks.append(self._sample)

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
        if self.spec.lag_s > 0:
            self.env.timeout(self.spec.lag_s, value=(now, batch)).callbacks.append(self._deliver)
        else:
            self._send(now, batch)
        if self.keep_running():
            self.env.timeout(period).callbacks.append(self._sample)

    def _deliver(self, event: Any) -> None:
        sampled_at, batch = event.value
        self._send(sampled_at, batch)

    def _send(self, sampled_at: float, batch: list[tuple[SimGpu, float]]) -> None:
        if self.outages > 0:
            self._resend.update(g.index for g, _u in batch)
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
