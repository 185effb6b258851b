"""Admin operations: cancel, GPU maintenance and restart, user quotas, and settings.

Maintenance windows and quota changes are persisted as journal settings
(``maintenance:<gpu_id>``, ``quota:<user_id>``) and loaded again on start
(:meth:`AdminMixin._load_settings`). Durations: ``minutes`` as given by the admin API.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from gpu_router.policy.errors import InvalidValue
from gpu_router.shim.core.live import ServiceBase
from gpu_router.shim.logs import log
from gpu_router.shim.store import JournalError


class AdminMixin(ServiceBase):
    """Cancellation and the admin API's GPU and quota operations."""

    def cancel(self, rid: str, reason: str) -> str | None:
        """Cancel; returns the state before (None: unknown). Idempotent."""
        live = self.live.get(rid)
        if live is None:
            rec = self.lookup(rid)
            return None if rec is None else rec.state
        before = live.rec.state
        self._apply(self.r.cancel(rid, self.clock.now(), reason))
        return before

    def set_maintenance(self, gpu_id: str, reason: str, minutes: int | None) -> None:
        now = self.clock.now()
        self._apply(self.r.maintenance(gpu_id, now, reason or "maintenance"))
        info = {"reason": reason, "since": self.clock.wall(), "estimated_duration": minutes}
        self.maintenance_info[gpu_id] = info
        self._save_setting(f"maintenance:{gpu_id}", info)
        self.prom.set_gpu_state(gpu_id, "maintenance")

    def restart_gpu(self, gpu_id: str) -> None:
        now = self.clock.now()
        clear = getattr(self.source, "clear", None)
        if clear is not None:  # latched source state (monitoring health) is reset too
            clear(gpu_id)
        self._apply(self.r.restart(gpu_id, now))
        self.down.pop(gpu_id, None)
        self.maintenance_info.pop(gpu_id, None)
        self.gpu_since[gpu_id] = now
        self._save_setting(f"maintenance:{gpu_id}", None)

    def set_quota(self, user_id: str, changes: dict[str, Any]) -> None:
        limits = self.r.quotas.set_limits(user_id, **changes)
        self._save_setting(f"quota:{user_id}", asdict(limits))

    def _save_setting(self, key: str, value: Any) -> None:
        try:
            self.store.set_setting(key, value)
        except JournalError as exc:
            log(self.logger, logging.ERROR, "could not persist a setting", key=key, error=str(exc))

    def _load_settings(self, now: float) -> None:
        for key, value in self.store.settings().items():
            kind, _, name = key.partition(":")
            try:
                if kind == "quota" and isinstance(value, dict):
                    self.r.quotas.set_limits(name, **value)
                elif (
                    kind == "maintenance" and isinstance(value, dict) and name in self.r.fleet.index
                ):
                    self.r.maintenance(name, now, value.get("reason") or "maintenance")
                    self.maintenance_info[name] = value
            except InvalidValue as exc:
                log(
                    self.logger,
                    logging.WARNING,
                    "ignored a stored setting",
                    key=key,
                    error=str(exc),
                )
