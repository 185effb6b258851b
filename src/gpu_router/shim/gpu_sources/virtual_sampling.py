"""What a sampler sees of a virtual GPU: NVML-like, lagged and filtered.

Utilization is the busy share of a window of ``period_s`` ending ``util_lag_s`` ago (NVML
lags load by 250-300 ms); power (W) and temperature (C) follow load through first-order
lags (time constants ``power_tau_s`` and ``temp_tau_s``, s) up to the power cap; memory
used (MB) is the job model's.
"""

from __future__ import annotations

import math

from gpu_router.policy import GpuState, GpuStatus

from .virtual_jobs import ProcessorSharing, _Gpu


class SampledGpus(ProcessorSharing):
    """The :class:`GpuState` of each virtual GPU, as a sampler reads it."""

    power_tau_s: float
    temp_tau_s: float

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
