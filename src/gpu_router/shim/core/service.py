"""The running service: the policy Router driven by real time, the store and workers.

:class:`RouterService` is composed of explicit collaborators, each one concern:

- :class:`~.live.LiveRequests`: the requests in memory and the writes of their rows;
- :class:`~.gpus.GpuBook`: GPUs the service took out, time in service, maintenance;
- :class:`~.execution.Execution`: the Router's actions applied, the dispatcher's job
  events fed back (it is the dispatcher's ``JobEvents``);
- :class:`~.admission.Admission`: ``submit``;
- :class:`~.recovery.Recovery`: resuming the journal's unfinished requests at start;
- :class:`~.loops.Loops`: the sampler, ticker and health loops;
- :class:`~.model_reports.ModelReports`: the workers' resident models read into the
  Router (model locality on);
- :class:`~.admin.Admin`: cancel, maintenance, restart, quotas, settings;
- :class:`~.status.StatusViews` and :class:`~.callbacks.Callbacks`: what the API and
  the callbacks answer.

The Router needs the fleet's first sample, so everything that reads it is built in
:meth:`RouterService.start`. All state changes happen on the event loop thread in plain
synchronous methods, so no locks are needed. The clock is read through ``clock`` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np

from gpu_router.policy import Router
from gpu_router.shim.config import ServiceConfig, worker_tokens
from gpu_router.shim.core.admin import Admin
from gpu_router.shim.core.admission import Admission, Outcome
from gpu_router.shim.core.callbacks import Callbacks, CallbackSender
from gpu_router.shim.core.clock import Clock
from gpu_router.shim.core.dispatcher import Dispatcher
from gpu_router.shim.core.execution import Execution
from gpu_router.shim.core.gpus import GpuBook
from gpu_router.shim.core.live import LiveRequests
from gpu_router.shim.core.loops import Loops
from gpu_router.shim.core.metrics import JsonStats, PromMetrics
from gpu_router.shim.core.model_reports import ModelReports
from gpu_router.shim.core.policy_config import policy_config
from gpu_router.shim.core.recovery import Recovery
from gpu_router.shim.core.registry import WorkerRegistry
from gpu_router.shim.core.status import Readiness, StatusViews
from gpu_router.shim.gpu_sources.base import GpuSource
from gpu_router.shim.logs import log
from gpu_router.shim.store import JournalError, JournalRecord, Store


class NotStarted(RuntimeError):
    """A part of the service that exists only once :meth:`RouterService.start` ran."""


class RouterService:
    """The service: its collaborators, and its lifecycle (``start``, ``stop``)."""

    def __init__(
        self,
        config: ServiceConfig,
        source: GpuSource,
        *,
        clock: Clock,
        store: Store,
        http: httpx.AsyncClient,
        logger: logging.Logger,
        prom: PromMetrics | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.clock = clock
        self.http = http
        self.logger = logger
        self.prom = prom = prom or PromMetrics()
        self.stats = JsonStats()
        self.readiness = Readiness()
        #: the leader lease's epoch when several routers share the store (sent to workers
        #: with every job started: fencing), else None
        self.epoch: int | None = None
        #: asked before every worker call (the leader lease still held), else None
        self.holds: Callable[[], bool] | None = None
        self.store = store
        prom.journal_writer_process.set_function(lambda: float(store.writer_alive))
        store.on_lost = lambda lost: log(
            logger, logging.ERROR, "journal updates lost", count=len(lost), first=lost[0]
        )
        self.requests = LiveRequests(store)
        self.gpus = GpuBook(clock.now())
        self._router: Router | None = None
        self._parts: _Parts | None = None
        self._loops: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------ the parts, once started

    @property
    def router(self) -> Router:
        if self._router is None:
            raise NotStarted("service not started")
        return self._router

    @property
    def parts(self) -> _Parts:
        if self._parts is None:
            raise NotStarted("service not started")
        return self._parts

    @property
    def ready(self) -> bool:
        return self.readiness.ready and self._parts is not None

    @property
    def views(self) -> StatusViews:
        return self.parts.views

    @property
    def admin(self) -> Admin:
        return self.parts.admin

    @property
    def registry(self) -> WorkerRegistry:
        return self.parts.registry

    @property
    def dispatcher(self) -> Dispatcher:
        return self.parts.jobs

    async def submit(self, body: dict[str, Any], trace_child: str | None) -> Outcome:
        """Admit a validated body (see :meth:`Admission.submit`)."""
        return await self.parts.admission.submit(body, trace_child)

    def lookup(self, rid: str) -> JournalRecord | None:
        """A request's record: live, recently finished, or from the journal."""
        return self.requests.lookup(rid)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        states = await self.source.sample()
        now = self.clock.now()
        config = self.config
        router = Router(states, policy_config(config), np.random.default_rng(config.seed))
        self._router = router
        for s in states:
            self.gpus.since[s.gpu_id] = now
        self._parts = parts = _Parts(self, router)
        parts.jobs.workers.epoch = self.epoch  # (before recovery's first call to a worker)
        parts.jobs.workers.guard = self.holds
        parts.registry.restore()  # registered workers, before recovery asks them
        parts.admin.load_settings(now)
        counts = self.store.count_by_state()
        self.stats.system.total = sum(counts.values())
        self.stats.system.completed = counts.get("completed", 0)
        self.stats.system.failed = counts.get("failed", 0)
        resumed = await parts.recovery.restore(now)
        for rec in self.store.pending_callbacks():
            parts.callbacks.send(self.requests.recent.get(rec.request_id) or rec)
        self._loops = [asyncio.ensure_future(c) for c in parts.loops.coroutines()]
        if config.model_locality.enabled:
            self._loops.append(asyncio.ensure_future(parts.model_reports.run()))
        self.readiness.ready = True
        self.readiness.reason = None
        log(
            self.logger,
            logging.INFO,
            "service started",
            gpus=len(states),
            resumed=resumed,
            strategy=router.strategy_name,
        )

    async def _end_loops(self, reason: str) -> None:
        """Not ready (``reason``); the loops cancelled and waited for."""
        self.readiness.ready = False
        self.readiness.reason = reason
        for t in self._loops:
            t.cancel()
        for t in self._loops:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def stop(self) -> None:
        await self._end_loops("stopping")
        if self._parts is not None:
            await self._parts.jobs.aclose()
        try:
            self.store.flush()  # whoever opened the store closes it
        except JournalError as exc:  # its state changes are written when it closes, or lost
            log(self.logger, logging.ERROR, "store not durable at stop", error=str(exc))

    async def abandon(self) -> None:
        """(a leader that lost its lease) Stop without another call to a worker or write
        to the store: loops and jobs cancelled, nothing flushed or acknowledged."""
        await self._end_loops("stepped down")
        if self._parts is not None:
            await self._parts.jobs.abandon()

    def records(self) -> list[JournalRecord]:
        """Copies of the request records memory holds (live and recently finished), in
        submission order, but for new submissions whose row is not known stored (they
        were not acknowledged)."""
        reqs = self.requests
        out = [dataclasses.replace(r) for r in reqs.recent.values()]
        out += [
            dataclasses.replace(live.rec)
            for live in reqs.live.values()
            if not live.pending_commit and not live.unjournaled
        ]
        out.sort(key=lambda r: r.submitted_at)
        return out


class _Parts:
    """The collaborators that need the Router, wired once it exists."""

    def __init__(self, svc: RouterService, router: Router) -> None:
        config, clock, prom, stats, logger = (
            svc.config,
            svc.clock,
            svc.prom,
            svc.stats,
            svc.logger,
        )
        requests, gpus = svc.requests, svc.gpus
        self.jobs = Dispatcher(
            svc.source,
            dispatch=config.dispatch,
            calls=config.request_router,
            http=svc.http,
            monotonic=clock.now,
            logger=logger,
            on_worker_error=lambda g: prom.child(prom.worker_failures, g).inc(),
            worker_urls=dict(config.gpu_monitoring.worker_urls),
            store=svc.store,
            worker_tokens=worker_tokens(config.worker_auth),
        )
        self.views = StatusViews(
            config, router, requests, gpus, self.jobs, stats, clock, svc.readiness
        )
        sender = CallbackSender(svc.http, config.dispatch, config.callbacks, logger, clock.wall)
        self.callbacks = Callbacks(self.views, requests, sender, self.jobs.spawn, prom)
        self.execution = Execution(
            router, requests, gpus, self.jobs, self.callbacks, clock, prom, stats, logger
        )
        self.jobs.connect(self.execution)
        self.admission = Admission(router, requests, self.execution, clock, prom, stats, logger)
        self.recovery = Recovery(router, requests, self.execution, self.jobs, clock, stats, logger)
        self.admin = Admin(
            router, requests, self.execution, gpus, svc.source, self.jobs, clock, prom, logger
        )
        self.loops = Loops(
            config, svc.source, router, self.execution, gpus, self.jobs, clock, prom, logger
        )
        self.registry = WorkerRegistry(
            config, router, self.execution, self.jobs, gpus, clock, logger
        )
        self.model_reports = ModelReports(
            config,
            router,
            self.execution,
            self.jobs.workers,
            clock,
            prom,
            logger,
            by_heartbeat=self.registry.reports_models,
        )
        self.loops.after_tick = [self.admin.sync_maintenance, self.registry.expire]
