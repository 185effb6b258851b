"""The fleet handlers: workers register, heartbeat and leave at run time (admin keys).

``POST /api/v1/workers/register`` ``{gpu_id, url, name, memory_total_mb,
compute_capability, slots, speed}`` adds the worker's GPU to the fleet (or brings it
back) -> ``{gpu_id, status, heartbeat_interval, heartbeat_timeout}``;
``POST /api/v1/workers/{gpu_id}/heartbeat`` ``{memory_used_mb, utilization_pct, models,
temperature_c}`` -> ``{gpu_id, status}`` (404: not registered, register again);
``DELETE /api/v1/workers/{gpu_id}`` -> ``{gpu_id, status}``: the GPU leaves, its work
is re-routed. See ``core/registry.py``.
"""

from __future__ import annotations

from typing import Any

from gpu_router.shim.http.plumbing import ApiError, Ctx, Handler, Plumbing, not_found, path_id
from gpu_router.shim.http.schemas import HeartbeatIn, WorkerRegisterIn


def worker_handlers(p: Plumbing) -> dict[str, Handler]:
    """The fleet handlers of one app, by route name."""
    svc, read_body = p.svc, p.read_body

    async def register(ctx: Ctx) -> tuple[int, Any]:
        s = svc()
        body: WorkerRegisterIn = await read_body(ctx, WorkerRegisterIn)
        spec = body.model_dump(exclude={"gpu_id", "url"})
        try:
            status = s.registry.register(body.gpu_id, body.url, spec)
        except ValueError as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        fleet = s.config.fleet
        return 200, {
            "gpu_id": body.gpu_id,
            "status": status,
            "heartbeat_interval": fleet.heartbeat_interval,
            "heartbeat_timeout": fleet.heartbeat_timeout,
        }

    async def heartbeat(ctx: Ctx) -> tuple[int, Any]:
        s = svc()
        gid = path_id(ctx, "gpu_id", "worker")
        body: HeartbeatIn = await read_body(ctx, HeartbeatIn, optional=True)
        status = s.registry.heartbeat(gid, body.model_dump())
        if status is None:
            raise not_found(f"worker {gid}")
        return 200, {"gpu_id": gid, "status": status}

    async def leave(ctx: Ctx) -> tuple[int, Any]:
        s = svc()
        gid = path_id(ctx, "gpu_id", "worker")
        if not s.registry.leave(gid, "worker left the fleet"):
            raise not_found(f"worker {gid}")
        return 200, {"gpu_id": gid, "status": s.gpus.status(s.router, gid)}

    return {"worker_register": register, "worker_heartbeat": heartbeat, "worker_leave": leave}
