"""The public request handlers: submit, status, result, cancel, GPUs, quota, metrics, health.

:func:`request_handlers` builds them for one app on its :class:`Plumbing`; each takes a
:class:`Ctx` and returns ``(HTTP status, data)`` or raises :class:`ApiError`. A user key
sees only its own requests, quota and metrics; an admin key sees everything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gpu_router.shim.core.callback_targets import CallbackTargets
from gpu_router.shim.core.clock import iso
from gpu_router.shim.core.service import RouterService
from gpu_router.shim.core.status import starting_health
from gpu_router.shim.http.auth import Role
from gpu_router.shim.http.plumbing import ID, ApiError, Ctx, Handler, Plumbing, not_found, path_id
from gpu_router.shim.http.schemas import RouteRequest
from gpu_router.shim.store import JournalRecord, request_key


def owned(ctx: Ctx, s: RouterService, rid: str) -> Any:
    """The record of the caller's request ``rid``, else a 404. Request ids are per user:
    a user key reads the key of its own user, so another user's id is a missing one, on
    the same code path (one memory look-up, then the store). A caller acting for every
    user (admin, trusted network) names the user with ``?user_id=``, else gets the last
    submitted request with that id."""
    return owned_in(ctx, s.lookup, s.requests.latest, rid)


def owned_in(
    ctx: Ctx,
    lookup: Callable[[str], JournalRecord | None],
    latest: Callable[[str], JournalRecord | None],
    rid: str,
) -> JournalRecord:
    """:func:`owned` on the reads given: ``lookup`` by store key, ``latest`` by id (a
    standby's are the store's own)."""
    identity = ctx.caller
    if identity.role is Role.USER:
        rec = lookup(request_key(identity.user_id, rid))
    else:
        user = ctx.request.query_params.get("user_id")
        if user is None:
            rec = latest(rid)
        elif ID.match(user):
            rec = lookup(request_key(user, rid))
        else:
            rec = None
    if rec is None or not identity.may_act_for(rec.user_id):
        raise not_found(f"request {rid}")
    return rec


def cancel_request(ctx: Ctx, s: RouterService, reason: str) -> tuple[int, Any]:
    """Cancel the request named in the path (idempotent); says whether it was cancelled."""
    rid = path_id(ctx, "request_id", "request")
    key = owned(ctx, s, rid).request_id
    before = s.admin.cancel(key, reason)
    after = s.lookup(key).state  # type: ignore[union-attr]
    done = before not in (None, "completed", "failed", "cancelled")
    msg = "cancelled" if done else f"not cancelled: the request is already {before}"
    return 200, {"request_id": rid, "status": after, "cancelled": done, "message": msg}


def request_handlers(p: Plumbing) -> dict[str, Handler]:
    """The public handlers of one app, by route name."""
    svc, read_body, clock, holder = p.svc, p.read_body, p.clock, p.holder
    config = p.config
    tracing = config.api_metadata.components.tracing
    targets = CallbackTargets(config.callbacks)

    async def route(ctx: Ctx) -> tuple[int, Any]:
        s = svc()
        req: RouteRequest = await read_body(ctx, RouteRequest)
        if not ctx.caller.may_act_for(req.user_id):
            raise ApiError(403, "forbidden", "a user key may submit only as its own user_id")
        why = None if req.callback_url is None else targets.refusal(req.callback_url)
        if why is not None:  # (the addresses its host resolves to: at each delivery)
            raise ApiError(
                422,
                "invalid_request",
                f"callback_url: {why}",
                details=[{"field": "callback_url", "reason": why}],
            )
        t = clock.now()
        child = ctx.trace.child().traceparent if tracing.enabled else None
        out = await s.submit(req.model_dump(mode="json"), child)
        ctx.timings.add("routing", clock.now() - t)
        ctx.gpu_id = out.gpu_id
        if out.status_code != 200:
            raise ApiError(
                out.status_code,
                out.error_code or "rejected",
                out.message or "rejected",
                data=out.data,
                retry_after=out.retry_after_s,
            )
        return 200, out.data

    async def status(ctx: Ctx) -> tuple[int, Any]:
        s = svc()
        rec = owned(ctx, s, path_id(ctx, "request_id", "request"))
        ctx.gpu_id = rec.gpu_id
        return 200, s.views.status_data(rec)

    async def result(ctx: Ctx) -> tuple[int, Any]:
        s = svc()
        rid = path_id(ctx, "request_id", "request")
        rec = owned(ctx, s, rid)
        if rec.state != "completed":
            raise ApiError(409, "not_completed", f"request {rid} is {rec.state}; no result")
        return 200, {"request_id": rid, "status": "completed", "result": rec.result}

    async def user_cancel(ctx: Ctx) -> tuple[int, Any]:
        return cancel_request(ctx, svc(), "cancelled by the client")

    async def gpus(ctx: Ctx) -> tuple[int, Any]:
        s = svc()
        return 200, {"timestamp": iso(clock.wall()), "gpus": s.views.gpu_list()}

    async def quota(ctx: Ctx) -> tuple[int, Any]:
        s = svc()
        user = ctx.request.path_params.get("user_id", "")
        if not ID.match(user):
            raise not_found("user")
        if not ctx.caller.may_act_for(user):
            raise ApiError(403, "forbidden", "a user key may read only its own quota")
        return 200, s.views.quota_data(user)

    async def metrics_json(ctx: Ctx) -> tuple[int, Any]:
        s = svc()
        only = ctx.caller.user_id if ctx.caller.role.value == "user" else None
        return 200, s.views.metrics_data(only)

    async def health(ctx: Ctx) -> tuple[int, Any]:
        s = holder.get("svc")
        lead = p.leadership
        if s is None:
            data = starting_health(config)
            if lead is not None:
                data |= lead.describe()
                if lead.role == "standby":
                    data["reason"] = "standby"
                    if lead.standby_reads is not None:
                        data |= lead.standby_reads()
                    # it serves: reads, forwarded writes (reads: unless the store is down
                    # and it has no warm copy, having started during the outage)
                    if config.journal.standby_ready and data.get("reads", True):
                        return 200, data | {"status": "healthy", "ready": True}
                    raise ApiError(503, "standby", "a standby replica", data=data)
            raise ApiError(503, "not_ready", "starting", data=data)
        data = s.views.health_data()
        if lead is not None:
            data |= lead.describe()
        if not data["ready"]:
            raise ApiError(503, "not_ready", data["reason"] or "not ready", data=data)
        return 200, data

    return {
        "route": route,
        "status": status,
        "result": result,
        "cancel": user_cancel,
        "gpus": gpus,
        "quota": quota,
        "metrics": metrics_json,
        "health": health,
    }
