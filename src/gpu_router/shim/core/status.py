"""The ``data`` of each answer, built from the service's state in the seed's shapes
(seed 001 section 6.3); ``schemas`` documents the same shapes for /openapi.json."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from gpu_router.policy.health import calculate_health_score, health_status
from gpu_router.shim.http.envelope import iso
from gpu_router.shim.store import JournalRecord

if TYPE_CHECKING:
    from gpu_router.shim.core.live import ServiceBase
    from gpu_router.shim.core.service import RouterService


def result_url(svc: ServiceBase, rid: str) -> str:
    api = svc.config.api
    base = api.public_url or f"http://{api.host}:{api.port}"
    return f"{base.rstrip('/')}/api/v1/requests/{rid}/result"


def status_data(svc: ServiceBase, rec: JournalRecord) -> dict[str, Any]:
    live = svc.live.get(rec.request_id)
    progress = 0.0
    if rec.state == "completed":
        progress = 1.0
    elif live is not None:
        local = svc.dispatcher.progress(rec.request_id)
        progress = live.progress if local is None else local
    duration = None
    if rec.start_time is not None and rec.completion_time is not None:
        duration = max(0, round((rec.completion_time - rec.start_time) * 1000.0))
    return {
        "request_id": rec.request_id,
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
        "result_url": result_url(svc, rec.request_id) if rec.state == "completed" else None,
        "error": rec.error,
    }


def gpu_resources(svc: RouterService, gpu_id: str | None) -> dict[str, Any] | None:
    """The meta block's ``gpu_resources`` for the GPU a request concerns."""
    if gpu_id is None or svc.router is None or gpu_id not in svc.router.fleet.index:
        return None
    s = svc.router.fleet.states[svc.router.fleet.index[gpu_id]]
    return {
        "device_id": gpu_id,
        "device_name": s.name,
        "memory_used_mb": round(s.memory_used_mb, 1),
        "memory_total_mb": round(s.memory_total_mb, 1),
        "utilization_percent": round(s.utilization_pct, 1),
        "temperature_c": round(s.temperature_c, 1),
    }


def _num(x: float) -> float:
    return round(float(x), 3) if math.isfinite(x) else 0.0


def gpu_list(svc: RouterService) -> list[dict[str, Any]]:
    r = svc.r
    f = r.fleet
    now = svc.clock.now()
    out = []
    for i, gid in enumerate(f.gpu_ids):
        s = f.states[i]
        total = int(s.memory_total_mb)
        used = int(min(s.memory_total_mb, s.memory_used_mb))
        status = svc.gpu_status(gid)
        out.append(
            {
                "gpu_id": gid,
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
                "active_requests": int(f.running[i]),
                "queued_requests": int(f.queued[i]),
                "uptime": 0
                if status in ("error", "inactive")
                else int(max(0.0, now - svc.gpu_since.get(gid, svc.started_mono))),
                "health_status": health_status(calculate_health_score(s)),
            }
        )
    return out


def quota_data(svc: RouterService, user_id: str) -> dict[str, Any]:
    now, wall = svc.clock.now(), svc.clock.wall()
    u = svc.r.quotas.usage(user_id, now)

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


def metrics_data(svc: RouterService, only_user: str | None = None) -> dict[str, Any]:
    st, r = svc.stats, svc.r
    f = r.fleet
    now = svc.clock.now()
    p95, p99 = st.percentiles()
    sysa = st.system
    gpus = {}
    for i, gid in enumerate(f.gpu_ids):
        s = f.states[i]
        a = st.gpus.get(gid)
        gpus[gid] = {
            "memory_utilization": _num(100.0 * s.memory_used_mb / s.memory_total_mb),
            "compute_utilization": _num(s.utilization_pct),
            "temperature": _num(s.temperature_c),
            "power_usage": _num(s.power_w),
            "active_requests": int(f.running[i]),
            "queued_requests": int(f.queued[i]),
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
    active = int(f.running.sum())
    return {
        "timestamp": iso(svc.clock.wall()),
        "system": {
            "total_gpus": f.size,
            "active_gpus": sum(1 for g in f.gpu_ids if svc.gpu_status(g) == "active"),
            "total_requests": sysa.total,
            "active_requests": active,
            "queued_requests": int(r.queue_length),
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
    }


def health_data(svc: RouterService) -> dict[str, Any]:
    started = svc.router is not None
    active = (
        0 if not started else sum(1 for g in svc.r.fleet.gpu_ids if svc.gpu_status(g) == "active")
    )
    total = 0 if not started else svc.r.fleet.size
    reason = svc.not_ready_reason
    ready = svc.ready and active > 0
    if svc.ready and active == 0:
        reason = "no GPU is in service"
    return {
        "status": "healthy" if ready else "unhealthy",
        "live": True,
        "ready": ready,
        "version": svc.config.api_metadata.version,
        "gpus_total": total,
        "gpus_active": active,
        "queued_requests": 0 if not started else int(svc.r.queue_length),
        "active_requests": 0 if not started else int(svc.r.fleet.running.sum()),
        "uptime": round(svc.clock.now() - svc.started_mono, 3),
        "reason": reason,
    }
