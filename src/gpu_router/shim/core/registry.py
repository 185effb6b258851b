"""Workers that join the fleet at run time: registration, heartbeats, departures.

``register`` adds the worker's GPU to the Router (``Router.add_gpu``; one that left
comes back) and points the dispatcher at the worker's URL; ``heartbeat`` is a sample
of that GPU (``Router.observe``) and, with ``models``, a report of the models it holds
(``Router.report_models``); ``leave`` and ``expire`` (a worker silent for
``fleet.heartbeat_timeout`` s) take the GPU out of the fleet (``Router.remove_gpu``):
its running work is stopped and re-routed. Times: monotonic seconds.

Registrations are kept in the store's settings (``worker:{gpu_id}``: URL and spec), so a
restarted router knows its workers before its first heartbeat arrives (:meth:`restore`,
before restart recovery): recovery asks them which jobs they hold, and a request that
runs on a registered worker across the restart is followed there, not started again
elsewhere. A restored worker that stays silent leaves after ``heartbeat_timeout`` s.
"""

from __future__ import annotations

import logging
from typing import Any

from gpu_router.policy import REMOVED, GpuState, GpuStatus, Router
from gpu_router.shim.config import ServiceConfig
from gpu_router.shim.core.clock import Clock
from gpu_router.shim.core.dispatcher import Dispatcher
from gpu_router.shim.core.execution import Execution
from gpu_router.shim.core.gpus import GpuBook
from gpu_router.shim.logs import log
from gpu_router.shim.store import JournalError

SETTING = "worker:"  # the store setting of a registration: worker:{gpu_id}


class WorkerRegistry:
    """The registered workers: GPU id -> (spec, URL, last heartbeat)."""

    def __init__(
        self,
        config: ServiceConfig,
        router: Router,
        execution: Execution,
        jobs: Dispatcher,
        gpus: GpuBook,
        clock: Clock,
        logger: logging.Logger,
    ) -> None:
        self.timeout = config.fleet.heartbeat_timeout
        self.router = router
        self.execution = execution
        self.jobs = jobs
        self.gpus = gpus
        self.clock = clock
        self.logger = logger
        self.specs: dict[str, dict[str, Any]] = {}
        self.seen: dict[str, float] = {}
        #: registered GPUs whose heartbeats carry their models (the report loop skips them)
        self.reporting: set[str] = set()

    def state(self, gpu_id: str, sample: dict[str, Any]) -> GpuState:
        """The GpuState of a registered GPU: its spec with a heartbeat's readings."""
        spec = {**self.specs[gpu_id], **sample}
        major, minor = str(spec.get("compute_capability", "8.0")).split(".")
        return GpuState(
            gpu_id=gpu_id,
            name=spec.get("name", ""),
            memory_total_mb=float(spec["memory_total_mb"]),
            memory_used_mb=float(spec.get("memory_used_mb", 0.0)),
            utilization_pct=float(spec.get("utilization_pct", 0.0)),
            temperature_c=float(spec.get("temperature_c", 0.0)),
            compute_capability=(int(major), int(minor)),
            slots=int(spec.get("slots", 1)),
            speed=float(spec.get("speed", 1.0)),
            status=GpuStatus.ACTIVE,
            sampled_at=self.clock.now(),
        )

    def register(self, gpu_id: str, url: str, spec: dict[str, Any]) -> str:
        """Add (or bring back) the worker's GPU; its status."""
        now = self.clock.now()
        if (
            self.router.has_gpu(gpu_id)
            and gpu_id not in self.specs
            and REMOVED not in self.router.is_out(gpu_id)
        ):
            raise ValueError(f"GPU {gpu_id} is in the fleet already (not a registered one)")
        self._join(gpu_id, url, spec, now)
        self._save(gpu_id, {"url": url, "spec": dict(spec)})
        log(self.logger, logging.INFO, "worker registered", gpu_id=gpu_id, url=url)
        return self.gpus.status(self.router, gpu_id)

    def _join(self, gpu_id: str, url: str, spec: dict[str, Any], now: float) -> None:
        self.specs[gpu_id] = dict(spec)
        self.seen[gpu_id] = now
        self.reporting.discard(gpu_id)  # (asked until its heartbeats carry models again)
        self.jobs.workers.worker_urls[gpu_id] = url.rstrip("/")
        self.execution.gpu_joined(self.state(gpu_id, {}))

    def restore(self) -> list[str]:
        """The registrations the store kept (a restart): back in the fleet as if they had
        just registered; their GPU ids. A GPU of the source by that id is left alone."""
        now, back = self.clock.now(), []
        for key, value in self.execution.requests.store.settings().items():
            gpu_id = key.removeprefix(SETTING)
            if gpu_id == key or not isinstance(value, dict) or self.router.has_gpu(gpu_id):
                continue
            try:
                self._join(gpu_id, str(value["url"]), dict(value["spec"]), now)
            except (KeyError, TypeError, ValueError) as exc:
                log(
                    self.logger, logging.WARNING, "ignored a stored worker", key=key, error=str(exc)
                )
                self.specs.pop(gpu_id, None)
                self.seen.pop(gpu_id, None)
                continue
            back.append(gpu_id)
        if back:
            log(self.logger, logging.INFO, "registered workers restored", gpu_ids=back)
        return back

    def _save(self, gpu_id: str, value: dict[str, Any] | None) -> None:
        try:
            self.execution.requests.store.set_setting(SETTING + gpu_id, value)
        except JournalError as exc:  # the worker registers again after a restart anyway
            log(
                self.logger,
                logging.ERROR,
                "could not persist a worker",
                gpu_id=gpu_id,
                error=str(exc),
            )

    def heartbeat(self, gpu_id: str, sample: dict[str, Any]) -> str | None:
        """A registered worker is alive (with readings); its status, None if unknown or
        gone (it must register again)."""
        if gpu_id not in self.specs:
            return None
        now = self.clock.now()
        self.seen[gpu_id] = now
        models = sample.pop("models", None)
        self.execution.apply(self.router.observe(self.state(gpu_id, sample), now))
        if models is not None:  # taken when sent: the grace window covers the transit
            self.reporting.add(gpu_id)
            self.execution.apply(self.router.report_models(gpu_id, list(models), now, now))
        return self.gpus.status(self.router, gpu_id)

    def reports_models(self, gpu_id: str) -> bool:
        """Whether the GPU's worker reports its models with its heartbeats."""
        return gpu_id in self.reporting

    def leave(self, gpu_id: str, reason: str) -> bool:
        """The worker's GPU leaves the fleet; its work is re-routed. False if unknown."""
        if self.specs.pop(gpu_id, None) is None:
            return False
        self.seen.pop(gpu_id, None)
        self.reporting.discard(gpu_id)
        self._save(gpu_id, None)
        self.execution.gpu_left(gpu_id, reason)
        log(self.logger, logging.WARNING, "worker left", gpu_id=gpu_id, reason=reason)
        return True

    def expire(self) -> list[str]:
        """Workers silent for ``heartbeat_timeout`` s leave; their GPU ids."""
        cutoff = self.clock.now() - self.timeout
        gone = [g for g, t in self.seen.items() if t < cutoff]
        for gpu_id in gone:
            self.leave(gpu_id, f"no heartbeat for {self.timeout:g} s")
        return gone
