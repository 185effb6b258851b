"""The background loops: GPU sampling, the Router's timers, and health probes.

``sampler`` reads the GPU source every ``period_s`` and feeds the samples to the Router
(:meth:`Loops.observe`, ``OBSERVE_CHUNK`` GPUs at a time, ``OBSERVE_GAP_S`` apart),
taking out GPUs with a hard signal or an error rate over the threshold; with an
``elastic`` source (NVML: its samples list the GPUs present) a GPU new in a sample joins
the fleet and one of the source's GPUs missing from it leaves (its work re-routed,
:meth:`Execution.gpu_left`); ``ticker`` runs
the Router's timeouts and backoffs when due (at least every 0.25 s); ``health`` probes
the GPUs the service took out every ``health_probe_interval`` seconds and brings back
those that answer (after ``gpu_cooldown_period`` seconds for a signal).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from gpu_router.policy import OVERHEATED, REMOVED, GpuState, Router
from gpu_router.shim.config import ServiceConfig
from gpu_router.shim.core.clock import Clock
from gpu_router.shim.core.dispatcher import Dispatcher
from gpu_router.shim.core.execution import Execution
from gpu_router.shim.core.gpus import GpuBook
from gpu_router.shim.core.metrics import PromMetrics
from gpu_router.shim.gpu_sources.base import GpuSource
from gpu_router.shim.logs import log

OBSERVE_CHUNK = 8  # GPU samples applied per turn of the event loop ...
OBSERVE_GAP_S = 0.002  # ... at most this often (s): a sample's work spread out
TICK_MAX_S = 0.25  # the ticker runs at least this often (s)


class Loops:
    """The sampler, ticker and health loops."""

    def __init__(
        self,
        config: ServiceConfig,
        source: GpuSource,
        router: Router,
        execution: Execution,
        gpus: GpuBook,
        jobs: Dispatcher,
        clock: Clock,
        prom: PromMetrics,
        logger: logging.Logger,
    ) -> None:
        self.config = config
        self.source = source
        self.router = router
        self.execution = execution
        self.gpus = gpus
        self.jobs = jobs
        self.clock = clock
        self.prom = prom
        self.logger = logger
        #: called after each Router tick (maintenance windows ended, silent workers)
        self.after_tick: list[Callable[[], object]] = []
        #: the source's GPUs in the fleet now (registered workers' GPUs are not)
        self.sourced = {v.gpu_id for v in router.gpus()}

    def coroutines(self) -> list[Coroutine[Any, Any, None]]:
        """The three loops, to be run as tasks for the service's lifetime."""
        return [self.sampler(), self.ticker(), self.health()]

    async def sampler(self) -> None:
        period = max(0.01, float(getattr(self.source, "period_s", 1.0)))
        threshold = self.config.error_handler.error_threshold
        take_out = self.execution.take_out
        while True:
            await asyncio.sleep(period)
            try:
                states = await self.source.sample()
            except Exception as exc:  # a source that fails must not stop the service
                log(self.logger, logging.WARNING, "GPU sampling failed", error=repr(exc))
                continue
            elastic = bool(getattr(self.source, "elastic", False))
            if elastic:
                self.joined(states)
            chunks = range(0, len(states), OBSERVE_CHUNK)
            gap = min(OBSERVE_GAP_S, period / (4 * len(chunks) or 1))
            for i in chunks:
                if i:  # spread out: a large fleet is a few ms of work, and a burst of
                    await asyncio.sleep(gap)  # it delays every request queued behind
                self.observe(states[i : i + OBSERVE_CHUNK])
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
                    take_out(sig.gpu_id, "signal", f"{sig.kind}: {sig.detail}")
            for s in states:
                if s.error_rate > threshold and s.gpu_id not in self.gpus.down:
                    take_out(s.gpu_id, "signal", f"error rate {s.error_rate:.3f}")
            if elastic:
                self.left({s.gpu_id for s in states})

    def joined(self, states: list[GpuState]) -> None:
        """GPUs of an elastic source's sample the fleet lacks join it (one that left and
        is back too); an id a registered worker holds is left to it."""
        for s in states:
            if s.gpu_id in self.sourced:
                continue
            if self.router.has_gpu(s.gpu_id) and REMOVED not in self.router.is_out(s.gpu_id):
                continue  # a registered worker's GPU
            self.sourced.add(s.gpu_id)
            log(self.logger, logging.INFO, "GPU joined", gpu_id=s.gpu_id, source="sample")
            self.execution.gpu_joined(s)

    def left(self, present: set[str]) -> None:
        """The source's GPUs missing from its last sample leave; their work is re-routed."""
        for gpu_id in sorted(self.sourced - present):
            self.sourced.discard(gpu_id)
            log(self.logger, logging.WARNING, "GPU left", gpu_id=gpu_id, source="sample")
            self.execution.gpu_left(gpu_id, "the GPU left the source's enumeration")

    def observe(self, states: list[GpuState]) -> None:
        """Feed GPU samples to the Router (unknown GPUs are ignored) and to the gauges."""
        now = self.clock.now()
        router, p = self.router, self.prom
        for s in states:
            if router.has_gpu(s.gpu_id):
                self.execution.apply(router.observe(s, now))
                p.child(p.gpu_util, s.gpu_id).set(s.utilization_pct)
                p.child(p.gpu_mem, s.gpu_id).set(s.memory_used_mb)
                p.child(p.gpu_temp, s.gpu_id).set(s.temperature_c)
                hot = OVERHEATED in router.is_out(s.gpu_id)
                p.child(p.gpu_overheated, s.gpu_id).set(1.0 if hot else 0.0)
                p.set_gpu_state(s.gpu_id, self.gpus.status(router, s.gpu_id))

    async def ticker(self) -> None:
        router = self.router
        while True:
            now = self.clock.now()
            self.execution.apply(router.tick(now))
            for hook in self.after_tick:
                hook()
            fleet = router.fleet_summary()
            self.prom.queue_length.set(fleet.queued)
            self.prom.active.set(fleet.running)
            nxt = router.next_wakeup()
            delay = TICK_MAX_S if nxt is None else min(TICK_MAX_S, max(0.002, nxt - now))
            await asyncio.sleep(delay)

    async def health(self) -> None:
        interval = self.config.dispatch.health_probe_interval
        cooldown = self.config.error_handler.gpu_cooldown_period
        router, gpus = self.router, self.gpus
        while True:
            await asyncio.sleep(interval)
            for gpu_id, (why, since) in list(gpus.down.items()):
                if why == "signal" and self.clock.now() - since < cooldown:
                    continue
                if not (router.gpu(gpu_id).sampled_ok and await self.jobs.probe(gpu_id)):
                    continue
                if gpu_id in gpus.down:
                    now = self.clock.now()
                    gpus.back(gpu_id, now)
                    log(self.logger, logging.INFO, "GPU back in service", gpu_id=gpu_id)
                    self.execution.apply(router.gpu_up(gpu_id, now))
                    self.prom.set_gpu_state(gpu_id, gpus.status(router, gpu_id))
