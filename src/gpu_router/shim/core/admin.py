"""Admin operations: cancel, GPU maintenance and restart, user quotas, and settings.

Maintenance windows and quota changes are persisted as journal settings
(``maintenance:<gpu_id>``, ``quota:<user_id>``) and loaded again on start
(:meth:`Admin.load_settings`). Durations: ``minutes`` as given by the admin API. A
window with ``estimated_duration`` ends by itself that many minutes after it began (the
Router's timer; :meth:`Admin.sync_maintenance` then clears the service's record of it),
also across a restart (what is left of it applies).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from gpu_router.policy import InvalidValue, Router
from gpu_router.shim.core.clock import Clock
from gpu_router.shim.core.dispatcher import Dispatcher
from gpu_router.shim.core.execution import Execution
from gpu_router.shim.core.gpus import GpuBook
from gpu_router.shim.core.live import LiveRequests
from gpu_router.shim.core.metrics import PromMetrics
from gpu_router.shim.gpu_sources.base import GpuSource, SourceError
from gpu_router.shim.logs import log
from gpu_router.shim.store import JournalError


class Admin:
    """Cancellation and the admin API's GPU and quota operations."""

    def __init__(
        self,
        router: Router,
        requests: LiveRequests,
        execution: Execution,
        gpus: GpuBook,
        source: GpuSource,
        jobs: Dispatcher,
        clock: Clock,
        prom: PromMetrics,
        logger: logging.Logger,
    ) -> None:
        self.router = router
        self.requests = requests
        self.execution = execution
        self.gpus = gpus
        self.source = source
        self.jobs = jobs
        self.clock = clock
        self.prom = prom
        self.logger = logger

    def cancel(self, rid: str, reason: str) -> str | None:
        """Cancel; returns the state before (None: unknown). Idempotent."""
        live = self.requests.get(rid)
        if live is None:
            rec = self.requests.lookup(rid)
            return None if rec is None else rec.state
        before = live.rec.state
        self.execution.apply(self.router.cancel(rid, self.clock.now(), reason))
        return before

    def running_on(self, gpu_id: str) -> int:
        """Requests running on the GPU now."""
        return self.router.gpu(gpu_id).running

    def set_maintenance(self, gpu_id: str, reason: str, minutes: int | None) -> None:
        now = self.clock.now()
        duration_s = minutes * 60.0 if minutes else None
        self.execution.apply(
            self.router.maintenance(gpu_id, now, reason or "maintenance", duration_s=duration_s)
        )
        info = {"reason": reason, "since": self.clock.wall(), "estimated_duration": minutes}
        self.gpus.maintenance[gpu_id] = info
        self._save_setting(f"maintenance:{gpu_id}", info)
        self.prom.set_gpu_state(gpu_id, "maintenance")

    def sync_maintenance(self) -> list[str]:
        """Forget the windows the Router ended (their time was up); returns those GPUs."""
        if not self.gpus.maintenance:
            return []
        ended = [g for g in self.gpus.maintenance if self.router.gpu(g).status != "maintenance"]
        for gpu_id in ended:
            self.gpus.maintenance.pop(gpu_id, None)
            self._save_setting(f"maintenance:{gpu_id}", None)
            self.prom.set_gpu_state(gpu_id, self.gpus.status(self.router, gpu_id))
            log(self.logger, logging.INFO, "maintenance ended", gpu_id=gpu_id)
        return ended

    async def restart_gpu(self, gpu_id: str) -> tuple[str, str]:
        """Restart: its running work re-queued elsewhere, then its worker restarted
        through the worker API, then every out-of-service mark cleared. A worker that does
        not restart leaves the GPU out (``worker``) until a health probe brings it back.
        Returns (its status, what the worker said)."""
        clear = getattr(self.source, "clear", None)
        if clear is not None:  # latched source state (monitoring health) is reset too
            clear(gpu_id)
        self.gpus.down.pop(gpu_id, None)
        self.execution.take_out(gpu_id, "restart", "gpu restart")  # no work while it restarts
        try:
            said = await self.jobs.restart_worker(gpu_id)
            note, failed = (
                f"worker restarted ({len(said.get('cancelled') or [])} job(s) stopped)",
                "",
            )
        except SourceError as exc:
            note = failed = f"the worker did not restart: {exc}"
        now = self.clock.now()
        self.execution.apply(self.router.restart(gpu_id, now))
        self.gpus.back(gpu_id, now)
        self.gpus.maintenance.pop(gpu_id, None)
        self._save_setting(f"maintenance:{gpu_id}", None)
        if failed:
            self.execution.take_out(gpu_id, "worker", failed)
        status = self.gpus.status(self.router, gpu_id)
        self.prom.set_gpu_state(gpu_id, status)
        return status, note

    def set_quota(self, user_id: str, changes: dict[str, Any]) -> None:
        limits = self.router.set_quota_limits(user_id, **changes)
        self._save_setting(f"quota:{user_id}", asdict(limits))

    def _resume_maintenance(self, gpu_id: str, value: dict[str, Any], now: float) -> None:
        """A stored window: what is left of it applies; one whose time is up is dropped."""
        minutes = value.get("estimated_duration")
        duration_s = None
        if isinstance(minutes, int | float) and minutes > 0:
            since = value.get("since")
            elapsed = self.clock.wall() - since if isinstance(since, int | float) else 0.0
            duration_s = minutes * 60.0 - max(0.0, elapsed)
            if duration_s <= 0:
                self._save_setting(f"maintenance:{gpu_id}", None)
                return
        reason = value.get("reason") or "maintenance"
        self.router.maintenance(gpu_id, now, reason, duration_s=duration_s)
        self.gpus.maintenance[gpu_id] = value

    def _save_setting(self, key: str, value: Any) -> None:
        try:
            self.requests.store.set_setting(key, value)
        except JournalError as exc:
            log(self.logger, logging.ERROR, "could not persist a setting", key=key, error=str(exc))

    def load_settings(self, now: float) -> None:
        """Apply the stored quota overrides and maintenance windows (at start)."""
        for key, value in self.requests.store.settings().items():
            kind, _, name = key.partition(":")
            try:
                if kind == "quota" and isinstance(value, dict):
                    self.router.set_quota_limits(name, **value)
                elif (
                    kind == "maintenance" and isinstance(value, dict) and self.router.has_gpu(name)
                ):
                    self._resume_maintenance(name, value, now)
            except InvalidValue as exc:
                log(
                    self.logger,
                    logging.WARNING,
                    "ignored a stored setting",
                    key=key,
                    error=str(exc),
                )
