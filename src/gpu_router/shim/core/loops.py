"""The background loops: GPU sampling, the router's timers, and health probes.

``_sampler`` reads the GPU source every ``period_s`` and feeds the samples to the router
(:meth:`LoopsMixin.observe`, ``OBSERVE_CHUNK`` GPUs at a time, ``OBSERVE_GAP_S`` apart),
taking out GPUs with a hard signal or an error rate over the threshold; ``_ticker`` runs the
router's timeouts and backoffs when due (at least every 0.25 s); ``_health`` probes the
GPUs we took out every ``health_probe_interval`` seconds and brings back those that
answer (after ``gpu_cooldown_period`` seconds for a signal).
"""

from __future__ import annotations

import asyncio
import logging

from gpu_router.policy.types import GpuState
from gpu_router.shim.core.live import ServiceBase
from gpu_router.shim.logs import log


class LoopsMixin(ServiceBase):
    """The sampler, ticker and health loops, and the GPU status they report."""

    async def _sampler(self) -> None:
        period = max(0.01, float(getattr(self.source, "period_s", 1.0)))
        threshold = self.config.error_handler.error_threshold
        while True:
            await asyncio.sleep(period)
            try:
                states = await self.source.sample()
            except Exception as exc:  # a source that fails must not stop the service
                log(self.logger, logging.WARNING, "GPU sampling failed", error=repr(exc))
                continue
            chunks = range(0, len(states), self.OBSERVE_CHUNK)
            gap = min(self.OBSERVE_GAP_S, period / (4 * len(chunks) or 1))
            for i in chunks:
                if i:  # spread out: a large fleet is a few ms of work, and a burst of
                    await asyncio.sleep(gap)  # it delays every request queued behind
                self.observe(states[i : i + self.OBSERVE_CHUNK])
            for sig in self.source.drain_signals():
                log(
                    self.logger,
                    logging.WARNING if sig.hard else logging.INFO,
                    "GPU signal",
                    gpu_id=sig.gpu_id,
                    kind=sig.kind,
                    detail=sig.detail,
                    hard=sig.hard,
                )
                if sig.hard:
                    self.take_out(sig.gpu_id, "signal", f"{sig.kind}: {sig.detail}")
            for s in states:
                if s.error_rate > threshold and s.gpu_id not in self.down:
                    self.take_out(s.gpu_id, "signal", f"error rate {s.error_rate:.3f}")

    def observe(self, states: list[GpuState]) -> None:
        now = self.clock.now()
        index = self.r.fleet.index
        for s in states:
            if s.gpu_id in index:
                self._apply(self.r.observe(s, now))
                p = self.prom
                p.child(p.gpu_util, s.gpu_id).set(s.utilization_pct)
                p.child(p.gpu_mem, s.gpu_id).set(s.memory_used_mb)
                p.child(p.gpu_temp, s.gpu_id).set(s.temperature_c)
                p.set_gpu_state(s.gpu_id, self.gpu_status(s.gpu_id))

    async def _ticker(self) -> None:
        while True:
            now = self.clock.now()
            self._apply(self.r.tick(now))
            self.prom.queue_length.set(self.r.queue_length)
            self.prom.active.set(int(self.r.fleet.running.sum()))
            nxt = self.r.next_wakeup()
            delay = 0.25 if nxt is None else min(0.25, max(0.002, nxt - now))
            await asyncio.sleep(delay)

    async def _health(self) -> None:
        interval = self.config.dispatch.health_probe_interval
        cooldown = self.config.error_handler.gpu_cooldown_period
        while True:
            await asyncio.sleep(interval)
            for gpu_id, (why, since) in list(self.down.items()):
                i = self.r.fleet.index[gpu_id]
                sampled_ok = bool(self.r.fleet.status_ok[i])
                if why == "signal" and self.clock.now() - since < cooldown:
                    continue
                if not (sampled_ok and await self.dispatcher.probe(gpu_id)):
                    continue
                if self.down.pop(gpu_id, None) is not None:
                    now = self.clock.now()
                    self.gpu_since[gpu_id] = now
                    log(self.logger, logging.INFO, "GPU back in service", gpu_id=gpu_id)
                    self._apply(self.r.gpu_up(gpu_id, now))
                    self.prom.set_gpu_state(gpu_id, self.gpu_status(gpu_id))

    def gpu_status(self, gpu_id: str) -> str:
        i = self.r.fleet.index[gpu_id]
        out = self.r.out_reasons[i]
        if "maintenance" in out:
            return "maintenance"
        if out or gpu_id in self.down:
            return "error"
        return str(self.r.fleet.states[i].status.value)
