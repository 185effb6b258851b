"""The admin handlers: GPU maintenance and restart, cancel any request, set a user's quota.

:func:`admin_handlers` builds them for one app on its :class:`Plumbing`; the routes that
use them need an admin key. Each takes a :class:`Ctx` and returns ``(HTTP status, data)``
or raises :class:`ApiError`; every GPU action is logged with who asked.
"""

from __future__ import annotations

import logging
from typing import Any

from gpu_router.policy import SEED_ADMIN_ALIASES, InvalidValue
from gpu_router.shim.core.service import RouterService
from gpu_router.shim.http.endpoints import cancel_request
from gpu_router.shim.http.plumbing import ID, ApiError, Ctx, Handler, Plumbing, not_found, path_id
from gpu_router.shim.http.schemas import AdminCancelIn, MaintenanceIn, QuotaUpdateIn, RestartIn
from gpu_router.shim.logs import log

#: body key of ``PUT /api/v1/admin/user/{user_id}/quota`` -> the quota field it sets
QUOTA_KEYS = {
    **SEED_ADMIN_ALIASES,
    "requests_per_minute_limit": "requests_per_minute",
    "requests_per_day_limit": "requests_per_day",
}


def gpu_of(ctx: Ctx, s: RouterService) -> str:
    """The GPU named in the path if the fleet has it, else a 404."""
    gid = path_id(ctx, "gpu_id", "GPU")
    if not s.router.has_gpu(gid):
        raise not_found(f"GPU {gid}")
    ctx.gpu_id = gid
    return gid


def admin_answer(target: str, action: str, status: str, message: str) -> dict[str, Any]:
    return {"target": target, "action": action, "status": status, "message": message}


def admin_handlers(p: Plumbing) -> dict[str, Handler]:
    """The admin handlers of one app, by route name."""
    svc, read_body, logger = p.svc, p.read_body, p.logger

    async def maintenance(ctx: Ctx) -> tuple[int, Any]:
        s = svc()
        gid = gpu_of(ctx, s)
        body: MaintenanceIn = await read_body(ctx, MaintenanceIn, optional=True)
        s.admin.set_maintenance(gid, body.reason, body.estimated_duration)
        log(
            logger,
            logging.WARNING,
            "GPU put in maintenance",
            gpu_id=gid,
            reason=body.reason,
            by=ctx.identity.user_id if ctx.identity else None,
        )
        return 200, admin_answer(
            gid, "maintenance", "maintenance", "no new work; running requests finish"
        )

    async def restart(ctx: Ctx) -> tuple[int, Any]:
        s = svc()
        gid = gpu_of(ctx, s)
        body: RestartIn = await read_body(ctx, RestartIn, optional=True)
        running = s.admin.running_on(gid)
        if running and not body.force:
            raise ApiError(
                409,
                "busy",
                f"GPU {gid} runs {running} request(s); "
                'send {"force": true} to re-queue them and restart',
            )
        status, worker = await s.admin.restart_gpu(gid)
        log(
            logger,
            logging.WARNING,
            "GPU restarted",
            gpu_id=gid,
            requeued=running,
            by=ctx.identity.user_id if ctx.identity else None,
        )
        return 200, admin_answer(
            gid, "restart", status, f"restarted; {running} request(s) re-queued; {worker}"
        )

    async def admin_cancel(ctx: Ctx) -> tuple[int, Any]:
        body: AdminCancelIn = await read_body(ctx, AdminCancelIn, optional=True)
        return cancel_request(ctx, svc(), body.reason or "cancelled by an admin")

    async def set_quota(ctx: Ctx) -> tuple[int, Any]:
        s = svc()
        user = ctx.request.path_params.get("user_id", "")
        if not ID.match(user):
            raise not_found("user")
        body: QuotaUpdateIn = await read_body(ctx, QuotaUpdateIn)
        changes = {QUOTA_KEYS[k]: v for k, v in body.model_dump(exclude_none=True).items()}
        if not changes:
            raise ApiError(
                422,
                "invalid_request",
                "nothing to change",
                details=[{"field": "body", "reason": "give at least one limit"}],
            )
        try:
            s.admin.set_quota(user, changes)
        except InvalidValue as exc:
            raise ApiError(
                422,
                "invalid_request",
                str(exc),
                details=[{"field": exc.field, "reason": exc.reason}],
            ) from None
        return 200, s.views.quota_data(user)

    return {
        "admin_maintenance": maintenance,
        "admin_restart": restart,
        "admin_cancel": admin_cancel,
        "admin_quota": set_quota,
    }
