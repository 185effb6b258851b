"""The ``data`` of each read answer, in the seed's shapes (seed 001 section 6.3).

:class:`StatusViews` builds them from the service's state through public reads only:
the Router's snapshots (``gpu``, ``gpus``, ``fleet_summary``, ``quota_usage``), the live
requests, the GPU book and the JSON stats. ``http/schemas.py`` documents the same
shapes for /openapi.json. Wall-clock times on the wire are ISO 8601; durations in ms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from gpu_router.policy import OVERHEATED, Router, calculate_health_score, health_status
from gpu_router.shim.config import ServiceConfig
from gpu_router.shim.core.clock import Clock, iso
from gpu_router.shim.core.gpus import GpuBook
from gpu_router.shim.core.live import LiveRequests
from gpu_router.shim.core.metrics import JsonStats
from gpu_router.shim.store import JournalRecord


class Progress(Protocol):
    """Where a running job's progress is known locally (the in-process virtual worker)."""

    def progress(self, request_id: str) -> float | None: ...


@dataclass(slots=True)
class Readiness:
    """Whether the service takes requests, and why not (``reason``)."""

    ready: bool = False
    reason: str | None = "starting"


def _num(x: float) -> float:
    return round(float(x), 3) if math.isfinite(x) else 0.0


def result_url(config: ServiceConfig, rid: str) -> str:
    api = config.api
    base = api.public_url or f"http://{api.host}:{api.port}"
    return f"{base.rstrip('/')}/api/v1/requests/{rid}/result"


def request_status(config: ServiceConfig, rec: JournalRecord, progress: float) -> dict[str, Any]:
    """A request's status answer from its record and its progress (0 to 1); a standby
    (no live state) reads it from the store alone."""
    duration = None
    if rec.start_time is not None and rec.completion_time is not None:
        duration = max(0, round((rec.completion_time - rec.start_time) * 1000.0))
    return {
        "request_id": rec.client_request_id,
        "user_id": rec.user_id,
        "model_id": rec.model_id,
        "priority": rec.priority,
        "status": rec.state,
        "assigned_gpu": rec.gpu_id,
        "submitted_time": iso(rec.submitted_at),
        "start_time": None if rec.start_time is None else iso(rec.start_time),
        "completion_time": None if rec.completion_time is None else iso(rec.completion_time),
        "duration": duration,
        "progress": round(min(1.0, max(0.0, progress)), 4),
        "retries": max(0, rec.attempts - 1),
        "result_url": (
            result_url(config, rec.client_request_id) if rec.state == "completed" else None
        ),
        "error": rec.error,
        "rerouted_from": list(rec.rerouted_from),
    }


class StatusViews:
    """Request status, the fleet, quotas, metrics and health as the API answers them."""

    def __init__(
        self,
        config: ServiceConfig,
        router: Router,
        requests: LiveRequests,
        gpus: GpuBook,
        jobs: Progress,
        stats: JsonStats,
        clock: Clock,
        readiness: Readiness,
    ) -> None:
        self.config = config
        self.router = router
        self.requests = requests
        self.gpus = gpus
        self.jobs = jobs
        self.stats = stats
        self.clock = clock
        self.readiness = readiness

    def status_data(self, rec: JournalRecord) -> dict[str, Any]:
        live = self.requests.get(rec.request_id)
        progress = 0.0
        if rec.state == "completed":
            progress = 1.0
        elif live is not None:
            local = self.jobs.progress(rec.request_id)
            progress = live.progress if local is None else local
        return request_status(self.config, rec, progress)

    def gpu_resources(self, gpu_id: str | None) -> dict[str, Any] | None:
        """The meta block's ``gpu_resources`` for the GPU a request concerns."""
        if gpu_id is None or not self.router.has_gpu(gpu_id):
            return None
        s = self.router.gpu(gpu_id).state
        return {
            "device_id": gpu_id,
            "device_name": s.name,
            "memory_used_mb": round(s.memory_used_mb, 1),
            "memory_total_mb": round(s.memory_total_mb, 1),
            "utilization_percent": round(s.utilization_pct, 1),
            "temperature_c": round(s.temperature_c, 1),
        }

    def gpu_list(self) -> list[dict[str, Any]]:
        now = self.clock.now()
        out = []
        for view in self.router.gpus():
            s = view.state
            total = int(s.memory_total_mb)
            used = int(min(s.memory_total_mb, s.memory_used_mb))
            status = self.gpus.status(self.router, view.gpu_id)
            out.append(
                {
                    "gpu_id": view.gpu_id,
                    "name": s.name,
                    "compute_capability": f"{s.compute_capability[0]}.{s.compute_capability[1]}",
                    "status": status,
                    "memory": {"total": total, "used": used, "free": max(0, total - used)},
                    "utilization": {
                        "gpu": _num(s.utilization_pct),
                        "memory": _num(100.0 * used / total if total else 0.0),
                    },
                    "temperature": _num(s.temperature_c),
                    "power": {"usage": _num(s.power_w), "limit": _num(s.power_limit_w)},
                    "performance_index": _num(s.performance_index),
                    "error_rate": _num(s.error_rate),
                    "active_requests": view.running,
                    "queued_requests": view.queued,
                    "resident_models": list(self.router.resident_models(view.gpu_id)),
                    "uptime": 0
                    if status in ("error", "inactive")
                    else int(self.gpus.uptime(view.gpu_id, now)),
                    "health_status": "critical"
                    if OVERHEATED in view.out_reasons
                    else health_status(calculate_health_score(s)),
                }
            )
        return out

    def quota_data(self, user_id: str) -> dict[str, Any]:
        now, wall = self.clock.now(), self.clock.wall()
        u = self.router.quota_usage(user_id, now)

        def item(x: Any) -> dict[str, int]:
            return {"limit": int(x.limit), "used": int(x.used), "remaining": int(x.remaining)}

        def rate(x: Any) -> dict[str, Any]:
            reset = now if x.reset_time is None else x.reset_time
            return {**item(x), "reset_time": iso(wall + max(0.0, reset - now))}

        return {
            "user_id": user_id,
            "quotas": {
                "gpu_time": item(u.gpu_minutes),
                "concurrent_requests": item(u.concurrent_requests),
                "priority_requests": item(u.priority_requests),
            },
            "rate_limits": {
                "requests_per_minute": rate(u.requests_per_minute),
                "requests_per_day": rate(u.requests_per_day),
            },
        }

    def metrics_data(self, only_user: str | None = None) -> dict[str, Any]:
        st = self.stats
        now = self.clock.now()
        p95, p99 = st.percentiles()
        sysa = st.system
        gpus = {}
        views = self.router.gpus()
        for view in views:
            s = view.state
            a = st.gpus.get(view.gpu_id)
            gpus[view.gpu_id] = {
                "memory_utilization": _num(100.0 * s.memory_used_mb / s.memory_total_mb),
                "compute_utilization": _num(s.utilization_pct),
                "temperature": _num(s.temperature_c),
                "power_usage": _num(s.power_w),
                "active_requests": view.running,
                "queued_requests": view.queued,
                "average_response_time": _num(a.average_ms) if a else 0.0,
                "throughput": _num(st.throughput(a, now)) if a else 0.0,
            }
        models = {
            m: {
                "total_requests": a.total,
                "active_requests": a.active,
                "average_response_time": _num(a.average_ms),
                "average_memory_usage": _num(a.memory_mb_sum / a.total if a.total else 0.0),
                "success_rate": _num(a.success_rate),
            }
            for m, a in st.models.items()
        }
        users = {
            u: {
                "total_requests": a.total,
                "active_requests": a.active,
                "gpu_time_used": _num(a.gpu_s / 60.0),
                "average_response_time": _num(a.average_ms),
            }
            for u, a in st.users.items()
            if only_user is None or u == only_user
        }
        fleet = self.router.fleet_summary()
        loc = self.router.locality()
        locality = (
            None
            if loc is None
            else {
                "cold_starts": loc.cold_starts,
                "warm_starts": loc.warm_starts,
                "memory_used_mb": _num(loc.memory_used_mb),
            }
        )
        return {
            "timestamp": iso(self.clock.wall()),
            "system": {
                "total_gpus": fleet.size,
                "active_gpus": self.active_gpus(),
                "total_requests": sysa.total,
                "active_requests": fleet.running,
                "queued_requests": fleet.queued,
                "completed_requests": sysa.completed,
                "failed_requests": sysa.failed,
                "average_response_time": _num(sysa.average_ms),
                "p95_response_time": _num(p95),
                "p99_response_time": _num(p99),
                "success_rate": _num(sysa.success_rate),
            },
            "gpus": gpus,
            "models": models if only_user is None else {},
            "users": users,
            "locality": locality,
        }

    def active_gpus(self) -> int:
        """GPUs whose status is ``active`` (in service, sampled healthy)."""
        router = self.router
        return sum(1 for g in router.gpu_ids if self.gpus.status(router, g) == "active")

    def health_data(self) -> dict[str, Any]:
        fleet = self.router.fleet_summary()
        active = self.active_gpus()
        reason = self.readiness.reason
        ready = self.readiness.ready and active > 0
        if self.readiness.ready and active == 0:
            reason = "no GPU is in service"
        return {
            "status": "healthy" if ready else "unhealthy",
            "live": True,
            "ready": ready,
            "version": self.config.api_metadata.version,
            "gpus_total": fleet.size,
            "gpus_active": active,
            "queued_requests": fleet.queued,
            "active_requests": fleet.running,
            "uptime": round(self.clock.now() - self.gpus.started, 3),
            "reason": reason,
            "gpus_overheated": self.overheated(),
        }

    def overheated(self) -> list[str]:
        """GPUs above ``gpu_monitoring.max_temperature`` (they take no new work)."""
        router = self.router
        return [g for g in router.gpu_ids if OVERHEATED in router.is_out(g)]


def starting_health(config: ServiceConfig) -> dict[str, Any]:
    """``/health``'s data before the service has started."""
    return {
        "status": "unhealthy",
        "live": True,
        "ready": False,
        "version": config.api_metadata.version,
        "gpus_total": 0,
        "gpus_active": 0,
        "queued_requests": 0,
        "active_requests": 0,
        "uptime": 0.0,
        "reason": "starting",
        "gpus_overheated": [],
    }
