"""The service's shared state: :class:`Live` requests and :class:`ServiceBase`.

``ServiceBase`` builds everything the concern mixins of
:class:`~.service.RouterService` share (config, GPU source, clock, the store, router,
``live`` and ``recent`` requests, GPUs taken out, the dispatcher) and the few helpers
they all use (``r``, ``lookup``, ``_journal``, ``_remember``). The methods one mixin
calls on another are declared here for the type checker only: at run time they are found
on the mixin that defines them, with no wrapper call in between.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from gpu_router.policy.decisions import Action, Dispatch
from gpu_router.policy.router import Router
from gpu_router.policy.types import Request
from gpu_router.shim.config import ServiceConfig
from gpu_router.shim.core.clock import Clock
from gpu_router.shim.core.dispatcher import Dispatcher
from gpu_router.shim.core.metrics import JsonStats, PromMetrics
from gpu_router.shim.gpu_sources.base import GpuSource
from gpu_router.shim.logs import log
from gpu_router.shim.store import JournalRecord, Store


@dataclass(slots=True)
class Live:
    """A request that is not terminal yet: its journal row plus what only memory holds."""

    rec: JournalRecord
    request: Request
    traceparent: str | None
    attempt: int = 0
    job_id: str | None = None
    progress: float = 0.0
    result: Any = None
    started_mono: float | None = None
    reattach: tuple[str, str] | None = None  # (gpu_id, job_id) found running after a restart
    committed: asyncio.Future[None] | None = None  # the insert of a new submission
    held: Dispatch | None = None  # its dispatch, started once the insert is committed
    unjournaled: bool = False  # the insert failed: nothing more is written for it

    @property
    def pending_commit(self) -> bool:
        """Whether its insert is not known durable yet (or failed: it never runs)."""
        c = self.committed
        return c is not None and (not c.done() or c.cancelled() or c.exception() is not None)


class ServiceBase:
    """State shared by the service's concerns; times from ``self.clock`` (seconds)."""

    RECENT = 10_000  # finished requests kept in memory for the status API
    OBSERVE_CHUNK = 8  # GPU samples applied per turn of the event loop ...
    OBSERVE_GAP_S = 0.002  # ... at most this often (s): a sample's work spread out

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
        self.store = store
        self.http = http
        self.logger = logger
        self.prom = prom or PromMetrics()
        self.stats = JsonStats()
        self.router: Router | None = None
        self.live: dict[str, Live] = {}
        self.recent: OrderedDict[str, JournalRecord] = OrderedDict()
        # read at each scrape of /metrics
        self.prom.journal_writer_process.set_function(lambda: float(store.writer_alive))
        store.on_lost = lambda lost: log(
            logger, logging.ERROR, "journal updates lost", count=len(lost), first=lost[0]
        )
        self.down: dict[str, tuple[str, float]] = {}  # gpu_id -> (why, since) taken out by us
        self.gpu_since: dict[str, float] = {}  # gpu_id -> when it last came into service
        self.maintenance_info: dict[str, dict[str, Any]] = {}
        self.started_mono = clock.now()
        self.ready = False
        self.not_ready_reason: str | None = "starting"
        self._loops: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self.dispatcher = Dispatcher(
            source,
            self,
            dispatch=config.dispatch,
            calls=config.request_router,
            http=http,
            monotonic=clock.now,
            logger=logger,
            on_worker_error=lambda g: self.prom.child(self.prom.worker_failures, g).inc(),
            worker_urls=dict(config.gpu_monitoring.worker_urls),
        )

    @property
    def r(self) -> Router:
        if self.router is None:
            raise RuntimeError("service not started")
        return self.router

    def lookup(self, rid: str) -> JournalRecord | None:
        """A request's record: live, recently finished, or from the journal."""
        live = self.live.get(rid)
        if live is not None:
            return live.rec
        rec = self.recent.get(rid)
        return rec if rec is not None else self.store.get(rid)

    def _remember(self, rec: JournalRecord) -> None:
        self.recent[rec.request_id] = rec
        if len(self.recent) > self.RECENT:
            self.recent.popitem(last=False)

    def _journal(self, rec: JournalRecord, **changes: Any) -> None:
        """Change the record and stage its row for the next group commit (nobody waits)."""
        for name, value in changes.items():
            setattr(rec, name, value)
        self.store.update(rec)

    if TYPE_CHECKING:  # defined by the mixins (service_events, service_loops)

        def _apply(self, actions: list[Action]) -> None: ...

        def _on_dispatch(self, a: Dispatch) -> None: ...

        def _send_callback(self, rec: JournalRecord) -> None: ...

        def take_out(self, gpu_id: str, why: str, reason: str) -> None: ...

        def gpu_status(self, gpu_id: str) -> str: ...

        def job_started(self, request_id: str, attempt: int, gpu_id: str, job_id: str) -> None: ...

        def job_progress(self, request_id: str, attempt: int, progress: float) -> None: ...

        def job_completed(self, request_id: str, attempt: int, result: Any) -> None: ...

        def job_failed(
            self, request_id: str, attempt: int, error: str, gpu_fault: bool
        ) -> None: ...

        def worker_down(self, gpu_id: str, reason: str) -> None: ...
