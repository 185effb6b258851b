"""The Starlette app: every endpoint of DESIGN 5.1 in the ALT_LAS envelope.

``create_app(config, gpu_source=...)`` builds the app with its parts passed in (clock,
journal, HTTP client, logger); the lifespan starts the :class:`RouterService`. Each
handler is wrapped by :func:`_endpoint`, which authenticates, turns errors into typed
answers (never a stack trace, never a 5xx for bad input), adds the ``meta`` block and
the ``traceparent`` header, and counts the request in the app's Prometheus registry.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gpu_router.policy.errors import InvalidValue
from gpu_router.policy.quota import SEED_ADMIN_ALIASES

from . import views
from .auth import Authenticator, AuthError, Identity
from .clock import Clock, SystemClock
from .config import ServiceConfig
from .envelope import (
    MetaBuilder,
    Timings,
    TraceContext,
    envelope,
    error_body,
    new_request_id,
    parse_traceparent,
)
from .fastjson import dumps_bytes
from .gpu_sources.base import GpuSource
from .journal import Journal
from .logs import LOGGER_NAME, log
from .metrics import PromMetrics
from .openapi import openapi_document
from .schemas import (
    ID_PATTERN,
    AdminCancelIn,
    MaintenanceIn,
    QuotaUpdateIn,
    RestartIn,
    RouteRequest,
    validation_details,
)
from .service import RouterService
from .strict_json import BadJson, loads_strict

_ID = re.compile(ID_PATTERN)
Auth = Literal["none", "any", "admin"]
QUOTA_KEYS = {
    **SEED_ADMIN_ALIASES,
    "requests_per_minute_limit": "requests_per_minute",
    "requests_per_day_limit": "requests_per_day",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[dict[str, str]] | None = None,
        data: Any = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.data, self.retry_after = details, data, retry_after
        self.headers = headers or {}


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


@dataclass(slots=True)
class Ctx:
    request: Request
    identity: Identity | None
    trace: TraceContext
    timings: Timings
    gpu_id: str | None = None
    headers: dict[str, str] | None = None

    def header(self, name: str) -> str | None:
        """A request header (lower-case ``name``); the headers are read once per request,
        not scanned per lookup as ``request.headers`` does (the first of repeats wins)."""
        if self.headers is None:
            self.headers = {
                k.decode("latin-1"): v.decode("latin-1")
                for k, v in reversed(self.request.scope["headers"])
            }
        return self.headers.get(name)


Handler = Callable[[Ctx], Awaitable[tuple[int, Any]]]


def _path_id(ctx: Ctx, name: str, what: str) -> str:
    value = ctx.request.path_params.get(name, "")
    if not isinstance(value, str) or not _ID.match(value):
        raise not_found(what)
    return value


def create_app(
    config: ServiceConfig,
    *,
    gpu_source: GpuSource,
    clock: Clock | None = None,
    journal: Journal | None = None,
    http: httpx.AsyncClient | None = None,
    logger: logging.Logger | None = None,
    close_source: bool = False,
) -> Starlette:
    clock = clock or SystemClock()
    logger = logger or logging.getLogger(LOGGER_NAME)
    prom = PromMetrics()
    authn = Authenticator(config.auth)
    meta_builder = MetaBuilder(config.api_metadata)
    api = config.api
    tracing = config.api_metadata.components.tracing
    holder: dict[str, RouterService] = {}

    def svc() -> RouterService:
        s = holder.get("svc")
        if s is None or not s.ready:
            raise ApiError(
                503, "unavailable", "the service is starting or stopping", retry_after=1.0
            )
        return s

    # ------------------------------------------------------------------ plumbing

    def respond(
        ctx: Ctx, status: int, data: Any, err: dict[str, Any] | None, headers: dict[str, str]
    ) -> Response:
        meta = None
        if meta_builder.wanted():
            s = holder.get("svc")
            gpu = views.gpu_resources(s, ctx.gpu_id) if s is not None else None
            req_id = ctx.header("x-request-id")
            if not req_id or not _ID.match(req_id):
                req_id = new_request_id()
            meta = meta_builder.build(
                request_id=req_id,
                wall_now=clock.wall(),
                timings=ctx.timings,
                mono_now=clock.now(),
                trace=ctx.trace,
                gpu=gpu,
            )
            headers["x-request-id"] = req_id
        if tracing.enabled and tracing.propagate_headers:
            headers["traceparent"] = ctx.trace.traceparent
        body = dumps_bytes(envelope(data, error=err, meta=meta))
        return Response(body, status, headers=headers, media_type="application/json")

    def _endpoint(name: str, auth: Auth, fn: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            started = clock.now()
            ctx = Ctx(request, None, None, Timings(started))  # type: ignore[arg-type]
            ctx.trace = parse_traceparent(ctx.header("traceparent"))
            headers: dict[str, str] = {}
            data: Any = None
            err: dict[str, Any] | None = None
            try:
                if auth != "none":
                    host = request.client.host if request.client else None
                    ctx.identity = authn.authenticate(ctx.header("authorization"), host)
                    if auth == "admin" and not ctx.identity.is_admin:
                        raise ApiError(403, "forbidden", "this path needs an admin key")
                ctx.timings.add("preprocessing", clock.now() - started)
                status, data = await fn(ctx)
            except AuthError as exc:
                status, err = 401, error_body("unauthorized", exc.reason)
                headers["www-authenticate"] = "Bearer"
            except ApiError as exc:
                status, data = exc.status, exc.data
                err = error_body(
                    exc.code, exc.message, details=exc.details, retry_after=exc.retry_after
                )
                headers.update(exc.headers)
                if exc.retry_after is not None:
                    headers["retry-after"] = str(max(1, round(exc.retry_after + 0.499)))
            except Exception as exc:  # never a stack trace in an answer
                log(
                    logger, logging.ERROR, "unhandled error", path=request.url.path, error=repr(exc)
                )
                logger.debug("traceback", exc_info=True)
                status, data = 500, None
                err = error_body("internal_error", "internal error; see the service log")
            response = respond(ctx, status, data, err, headers)
            elapsed = clock.now() - started
            prom.child(prom.http_requests, request.method, name, str(status)).inc()
            prom.child(prom.http_latency, request.method, name).observe(elapsed)
            return response

        return handler

    async def read_body(ctx: Ctx, model: type[BaseModel], *, optional: bool = False) -> Any:
        request = ctx.request
        length = ctx.header("content-length")
        if length is not None:
            if not length.isdigit():
                raise ApiError(400, "bad_request", "invalid Content-Length")
            if int(length) > api.max_body_bytes:
                raise ApiError(
                    413, "payload_too_large", f"body larger than {api.max_body_bytes} bytes"
                )
        chunks: list[bytes] = []
        size = 0
        ctype = ctx.header("content-type")
        checked = False
        async for chunk in request.stream():
            if not chunk:
                continue
            if not checked:
                checked = True
                media = (ctype or "").split(";", 1)[0].strip().lower()
                if media != "application/json" and not media.endswith("+json"):
                    raise ApiError(
                        415,
                        "unsupported_media_type",
                        "send the body as Content-Type: application/json",
                    )
            size += len(chunk)
            if size > api.max_body_bytes:
                raise ApiError(
                    413, "payload_too_large", f"body larger than {api.max_body_bytes} bytes"
                )
            chunks.append(chunk)
        body = b"".join(chunks)
        if not body.strip():
            if optional:
                return model()
            raise ApiError(
                400,
                "bad_request",
                "a JSON body is required",
                details=[{"field": "body", "reason": "missing"}],
            )
        try:
            obj = loads_strict(body, max_depth=api.max_json_depth)
        except BadJson as exc:
            raise ApiError(
                400,
                "bad_json",
                f"{exc.field}: {exc.reason}",
                details=[{"field": exc.field, "reason": exc.reason}],
            ) from None
        if not isinstance(obj, dict):
            raise ApiError(
                422,
                "invalid_request",
                "the body must be a JSON object",
                details=[{"field": "body", "reason": "must be an object"}],
            )
        try:
            return model.model_validate(obj)
        except ValidationError as exc:
            details = validation_details(exc)
            first = details[0]
            raise ApiError(
                422, "invalid_request", f"{first['field']}: {first['reason']}", details=details
            ) from None

    # ------------------------------------------------------------------ handlers

    async def route(ctx: Ctx) -> tuple[int, Any]:
        s = svc()
        req: RouteRequest = await read_body(ctx, RouteRequest)
        assert ctx.identity is not None
        if not ctx.identity.may_act_for(req.user_id):
            raise ApiError(403, "forbidden", "a user key may submit only as its own user_id")
        t = clock.now()
        child = ctx.trace.child().traceparent if tracing.enabled else None
        out = await s.submit(req, child)
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

    def owned(ctx: Ctx, s: RouterService, rid: str) -> Any:
        rec = s.lookup(rid)
        assert ctx.identity is not None
        if rec is None or not ctx.identity.may_act_for(rec.user_id):
            raise not_found(f"request {rid}")
        return rec

    async def status(ctx: Ctx) -> tuple[int, Any]:
        s = svc()
        rec = owned(ctx, s, _path_id(ctx, "request_id", "request"))
        ctx.gpu_id = rec.gpu_id
        return 200, views.status_data(s, rec)

    async def result(ctx: Ctx) -> tuple[int, Any]:
        s = svc()
        rid = _path_id(ctx, "request_id", "request")
        rec = owned(ctx, s, rid)
        if rec.state != "completed":
            raise ApiError(409, "not_completed", f"request {rid} is {rec.state}; no result")
        return 200, {"request_id": rid, "status": "completed", "result": rec.result}

    async def cancel(ctx: Ctx, reason: str = "cancelled by the client") -> tuple[int, Any]:
        s = svc()
        rid = _path_id(ctx, "request_id", "request")
        owned(ctx, s, rid)
        before = s.cancel(rid, reason)
        after = s.lookup(rid).state  # type: ignore[union-attr]
        done = before not in (None, "completed", "failed", "cancelled")
        msg = "cancelled" if done else f"not cancelled: the request is already {before}"
        return 200, {"request_id": rid, "status": after, "cancelled": done, "message": msg}

    async def user_cancel(ctx: Ctx) -> tuple[int, Any]:
        return await cancel(ctx)

    async def admin_cancel(ctx: Ctx) -> tuple[int, Any]:
        body: AdminCancelIn = await read_body(ctx, AdminCancelIn, optional=True)
        return await cancel(ctx, body.reason or "cancelled by an admin")

    async def gpus(ctx: Ctx) -> tuple[int, Any]:
        s = svc()
        return 200, {"timestamp": views.iso(clock.wall()), "gpus": views.gpu_list(s)}

    async def quota(ctx: Ctx) -> tuple[int, Any]:
        s = svc()
        user = ctx.request.path_params.get("user_id", "")
        if not _ID.match(user):
            raise not_found("user")
        assert ctx.identity is not None
        if not ctx.identity.may_act_for(user):
            raise ApiError(403, "forbidden", "a user key may read only its own quota")
        return 200, views.quota_data(s, user)

    async def metrics_json(ctx: Ctx) -> tuple[int, Any]:
        s = svc()
        assert ctx.identity is not None
        only = ctx.identity.user_id if ctx.identity.role.value == "user" else None
        return 200, views.metrics_data(s, only)

    def gpu_of(ctx: Ctx, s: RouterService) -> str:
        gid = _path_id(ctx, "gpu_id", "GPU")
        if gid not in s.r.fleet.index:
            raise not_found(f"GPU {gid}")
        ctx.gpu_id = gid
        return gid

    def admin_answer(target: str, action: str, status: str, message: str) -> dict[str, Any]:
        return {"target": target, "action": action, "status": status, "message": message}

    async def maintenance(ctx: Ctx) -> tuple[int, Any]:
        s = svc()
        gid = gpu_of(ctx, s)
        body: MaintenanceIn = await read_body(ctx, MaintenanceIn, optional=True)
        s.set_maintenance(gid, body.reason, body.estimated_duration)
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
        running = int(s.r.fleet.running[s.r.fleet.index[gid]])
        if running and not body.force:
            raise ApiError(
                409,
                "busy",
                f"GPU {gid} runs {running} request(s); "
                'send {"force": true} to re-queue them and restart',
            )
        s.restart_gpu(gid)
        log(
            logger,
            logging.WARNING,
            "GPU restarted",
            gpu_id=gid,
            requeued=running,
            by=ctx.identity.user_id if ctx.identity else None,
        )
        return 200, admin_answer(
            gid, "restart", s.gpu_status(gid), f"restarted; {running} request(s) re-queued"
        )

    async def set_quota(ctx: Ctx) -> tuple[int, Any]:
        s = svc()
        user = ctx.request.path_params.get("user_id", "")
        if not _ID.match(user):
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
            s.set_quota(user, changes)
        except InvalidValue as exc:
            raise ApiError(
                422,
                "invalid_request",
                str(exc),
                details=[{"field": exc.field, "reason": exc.reason}],
            ) from None
        return 200, views.quota_data(s, user)

    async def health(ctx: Ctx) -> tuple[int, Any]:
        s = holder.get("svc")
        if s is None:
            raise ApiError(
                503,
                "not_ready",
                "starting",
                data={
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
                },
            )
        data = views.health_data(s)
        if not data["ready"]:
            raise ApiError(503, "not_ready", data["reason"] or "not ready", data=data)
        return 200, data

    async def prometheus(request: Request) -> Response:
        return Response(prom.text(), 200, media_type="text/plain; version=0.0.4; charset=utf-8")

    doc = openapi_document(config.api_metadata.version)
    doc_bytes = json.dumps(doc).encode()

    async def openapi(request: Request) -> Response:
        return Response(doc_bytes, 200, media_type="application/json")

    async def http_error(request: Request, exc: Exception) -> Response:
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        ctx = Ctx(
            request,
            None,
            parse_traceparent(request.headers.get("traceparent")),
            Timings(clock.now()),
        )
        headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
        names = {404: "not_found", 405: "method_not_allowed"}
        msg = exc.detail if isinstance(exc, HTTPException) else "internal error"
        prom.child(prom.http_requests, request.method, "unmatched", str(code)).inc()
        return respond(ctx, code, None, error_body(names.get(code, "error"), str(msg)), headers)

    def r(path: str, name: str, auth: Auth, fn: Handler, methods: list[str]) -> Route:
        return Route(path, _endpoint(name, auth, fn), methods=methods, name=name)

    routes = [
        r("/api/v1/route", "route", "any", route, ["POST"]),
        r("/api/v1/route/{request_id}", "status", "any", status, ["GET"]),
        r("/api/v1/requests/{request_id}", "status", "any", status, ["GET"]),
        r("/api/v1/requests/{request_id}", "cancel", "any", user_cancel, ["DELETE"]),
        r("/api/v1/requests/{request_id}/result", "result", "any", result, ["GET"]),
        r("/api/v1/gpu/status", "gpus", "any", gpus, ["GET"]),
        r("/api/v1/gpus", "gpus", "any", gpus, ["GET"]),
        r("/api/v1/user/{user_id}/quota", "quota", "any", quota, ["GET"]),
        r("/api/v1/metrics", "metrics", "any", metrics_json, ["GET"]),
        r(
            "/api/v1/admin/gpu/{gpu_id}/maintenance",
            "admin_maintenance",
            "admin",
            maintenance,
            ["POST"],
        ),
        r("/api/v1/admin/gpu/{gpu_id}/restart", "admin_restart", "admin", restart, ["POST"]),
        r("/api/v1/admin/request/{request_id}", "admin_cancel", "admin", admin_cancel, ["DELETE"]),
        r("/api/v1/admin/user/{user_id}/quota", "admin_quota", "admin", set_quota, ["PUT"]),
        r("/health", "health", "none", health, ["GET"]),
        Route("/metrics", prometheus, methods=["GET"], name="prometheus"),
        Route("/openapi.json", openapi, methods=["GET"], name="openapi"),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        own_journal = journal is None
        jr = journal or Journal(
            config.journal.path, wal=config.journal.wal, synchronous=config.journal.synchronous
        )
        own_http = http is None
        client = http or httpx.AsyncClient(
            limits=httpx.Limits(max_connections=200), trust_env=False
        )
        service = RouterService(
            config, gpu_source, clock=clock, journal=jr, http=client, logger=logger, prom=prom
        )
        app.state.service = service
        try:
            await service.start()
            holder["svc"] = service
            if not authn.configured:
                log(
                    logger,
                    logging.WARNING,
                    "no API keys and no trusted networks configured: "
                    "every API call will answer 401",
                )
            yield
        finally:
            await service.stop()
            holder.pop("svc", None)
            if own_http:
                await client.aclose()
            if own_journal:
                jr.close()
            if close_source:
                await gpu_source.aclose()

    app = _RouterApp(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: http_error},
    )
    app.fast_route = _endpoint("route", "any", route)
    app.fast_error = http_error
    app.state.prom = prom
    return app


class _RouterApp(Starlette):
    """Starlette, with POST /api/v1/route (the one hot path) sent straight to its handler.

    The handler already turns every error into an answer, so the middleware stack (server
    error and exception middleware) and the route table have nothing to add there; they
    cost about a tenth of the CPU of a submission. Everything else goes through Starlette.
    """

    fast_route: Callable[[Request], Awaitable[Response]] | None = None
    fast_error: Callable[[Request, Exception], Awaitable[Response]] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            self.fast_route is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == "/api/v1/route"
            and not scope.get("root_path")
        ):
            scope["app"] = self
            request = Request(scope, receive, send)
            try:
                response = await self.fast_route(request)
            except Exception as exc:  # what ServerErrorMiddleware would have caught
                if self.fast_error is None:  # pragma: no cover
                    raise
                response = await self.fast_error(request, exc)
            await response(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
