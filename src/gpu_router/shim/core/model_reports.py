"""Reading what each worker holds, so the router's model residency follows the workers.

With ``model_locality.enabled``, every ``model_locality.report_interval`` seconds
:meth:`ModelReports.run` reads each GPU's resident models: an HTTP worker's (configured
or registered) ``GET /health`` ``models``, or the virtual fleet's ``held_models``; each
report goes to ``Router.report_models`` with the time it was asked for (the report was
taken at or after it), which reconciles the router's residency
(``policy.model_reports``). A registered worker whose heartbeats carry its models
(``WorkerRegistry.reports_models``) is not asked: one report path per worker. A worker
that does not answer is skipped (the dispatcher
and the health loop deal with it). The cold and warm starts so far and the resident
weights are set on the Prometheus gauges ``gpu_router_model_{cold,warm}_starts`` and
``gpu_router_model_memory_mb`` after each round. Times: monotonic seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httpx

from gpu_router.policy import Router
from gpu_router.shim.config import ServiceConfig
from gpu_router.shim.core.clock import Clock
from gpu_router.shim.core.execution import Execution
from gpu_router.shim.core.metrics import PromMetrics
from gpu_router.shim.core.workers import WorkerCalls
from gpu_router.shim.gpu_sources.base import SourceError
from gpu_router.shim.logs import log
from gpu_router.shim.worker.client import HEALTH_TIMEOUT_S, WorkerClient


class ModelReports:
    """The loop reading workers' resident models into the Router."""

    def __init__(
        self,
        config: ServiceConfig,
        router: Router,
        execution: Execution,
        workers: WorkerCalls,
        clock: Clock,
        prom: PromMetrics,
        logger: logging.Logger,
        by_heartbeat: Callable[[str], bool] = lambda _gpu_id: False,
    ) -> None:
        self.interval = config.model_locality.report_interval
        self.router = router
        self.execution = execution
        self.workers = workers
        self.clock = clock
        self.prom = prom
        self.logger = logger
        self.by_heartbeat = by_heartbeat  # GPUs whose models come with their heartbeats
        self.rounds = 0  # rounds read so far

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.read_all()
            except Exception as exc:  # one bad round must not end the loop
                log(self.logger, logging.WARNING, "model reports failed", error=repr(exc))

    async def read_all(self) -> None:
        """One round: every GPU's report, applied as it comes."""
        gids = [g for g in self.router.gpu_ids if not self.by_heartbeat(g)]
        reports = await asyncio.gather(*(self.read(g) for g in gids))
        for gid, (taken_at, models) in zip(gids, reports, strict=True):
            if models is not None and self.router.has_gpu(gid):
                now = self.clock.now()
                self.execution.apply(self.router.report_models(gid, models, taken_at, now))
        self.rounds += 1
        stats = self.router.locality()
        if stats is not None:
            self.prom.model_cold_starts.set(stats.cold_starts)
            self.prom.model_warm_starts.set(stats.warm_starts)
            self.prom.model_memory.set(stats.memory_used_mb)

    async def read(self, gpu_id: str) -> tuple[float, list[str] | None]:
        """(when it was asked for, the ids the GPU's worker holds or None: no answer)."""
        taken_at = self.clock.now()
        url = self.workers.url(gpu_id)
        if url is None:
            held: Callable[[str], list[str]] | None = getattr(
                self.workers.source, "held_models", None
            )
            return taken_at, None if held is None else list(held(gpu_id))
        client = WorkerClient(
            url,
            self.workers.http,
            timeout_s=min(self.workers.calls.request_timeout, HEALTH_TIMEOUT_S),
            token=self.workers.token(gpu_id),
        )
        try:
            models = (await client.health()).get("models")
        except (SourceError, httpx.HTTPError):
            return taken_at, None
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            return taken_at, None
        return taken_at, models
