"""Request plumbing shared by every endpoint: typed errors, the per-request context, the
body reader and the wrapper that turns a handler into a Starlette endpoint.

:func:`make_plumbing` builds, for one app, the closures the handlers use: ``svc()`` (the
running :class:`RouterService`, or a 503), ``read_body`` (size-capped at
``api.max_body_bytes`` bytes, read within ``connections.body_timeout_s`` s or 408, strict
JSON, validated by a pydantic model), ``respond``
(the ALT_LAS envelope with its ``meta`` block and ``traceparent`` header), ``endpoint``
(authenticates, turns errors into typed answers, never a stack trace, and counts the
request and its latency in seconds in the app's Prometheus registry) and ``http_error``
(Starlette's 404/405/500 in the same envelope).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from gpu_router.shim.config import ServiceConfig
from gpu_router.shim.core.clock import Clock
from gpu_router.shim.core.metrics import PromMetrics
from gpu_router.shim.core.service import RouterService
from gpu_router.shim.fastjson import dumps_bytes
from gpu_router.shim.http.auth import Authenticator, AuthError, Identity
from gpu_router.shim.http.envelope import (
    MetaBuilder,
    Timings,
    TraceContext,
    envelope,
    error_body,
    new_request_id,
    parse_traceparent,
)
from gpu_router.shim.http.leadership import Leadership
from gpu_router.shim.http.schemas import ID_PATTERN, validation_details
from gpu_router.shim.http.strict_json import BadJson, loads_strict
from gpu_router.shim.logs import log
from gpu_router.shim.store import JournalError

ID = re.compile(ID_PATTERN)
Auth = Literal["none", "any", "admin"]


class ApiError(Exception):
    """An answer other than 200: HTTP ``status``, error ``code``, ``retry_after`` in s."""

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
    """One request as a handler sees it: who asked, its trace, its timings (s)."""

    request: Request
    identity: Identity | None
    trace: TraceContext
    timings: Timings
    gpu_id: str | None = None
    headers: dict[str, str] | None = None
    #: response headers the handler adds (a standby's read from its warm copy)
    reply_headers: dict[str, str] | None = None

    def header(self, name: str) -> str | None:
        """A request header (lower-case ``name``); the headers are read once per request,
        not scanned per lookup as ``request.headers`` does (the first of repeats wins)."""
        if self.headers is None:
            self.headers = {
                k.decode("latin-1"): v.decode("latin-1")
                for k, v in reversed(self.request.scope["headers"])
            }
        return self.headers.get(name)

    @property
    def caller(self) -> Identity:
        """Who asked; only for handlers behind authentication (an open route has none)."""
        if self.identity is None:
            raise RuntimeError("an authenticated handler was reached without an identity")
        return self.identity


Handler = Callable[[Ctx], Awaitable[tuple[int, Any]]]
Endpoint = Callable[[Request], Awaitable[Response]]


def path_id(ctx: Ctx, name: str, what: str) -> str:
    """The path parameter ``name`` if it is a well-formed id, else a 404 for ``what``."""
    value = ctx.request.path_params.get(name, "")
    if not isinstance(value, str) or not ID.match(value):
        raise not_found(what)
    return value


@dataclass(frozen=True, slots=True)
class Plumbing:
    """One app's parts and the closures built on them (see the module docstring)."""

    config: ServiceConfig
    clock: Clock
    logger: logging.Logger
    prom: PromMetrics
    holder: dict[str, RouterService]
    leadership: Leadership | None
    svc: Callable[[], RouterService]
    read_body: Callable[..., Awaitable[Any]]
    respond: Callable[[Ctx, int, Any, dict[str, Any] | None, dict[str, str]], Response]
    endpoint: Callable[[str, Auth, Handler], Endpoint]
    http_error: Callable[[Request, Exception], Awaitable[Response]]


def make_plumbing(
    config: ServiceConfig,
    *,
    clock: Clock,
    logger: logging.Logger,
    prom: PromMetrics,
    authn: Authenticator,
    holder: dict[str, RouterService],
    leadership: Leadership | None = None,
) -> Plumbing:
    """The plumbing of one app; ``holder["svc"]`` is the service once it has started."""
    meta_builder = MetaBuilder(config.api_metadata)
    api = config.api
    body_timeout_s = config.connections.body_timeout_s
    tracing = config.api_metadata.components.tracing

    def svc() -> RouterService:
        s = holder.get("svc")
        if s is None and leadership is not None and leadership.role == "standby":
            leader = leadership.leader_address
            raise ApiError(
                503,
                "standby",
                f"this replica is a standby; the leader is at {leader or 'unknown'}",
                retry_after=1.0,
                headers={"x-leader-url": leader} if leader else None,
            )
        if s is None or not s.ready:
            raise ApiError(
                503, "unavailable", "the service is starting or stopping", retry_after=1.0
            )
        return s

    def respond(
        ctx: Ctx, status: int, data: Any, err: dict[str, Any] | None, headers: dict[str, str]
    ) -> Response:
        meta = None
        if meta_builder.wanted():
            s = holder.get("svc")
            gpu = s.views.gpu_resources(ctx.gpu_id) if s is not None else None
            req_id = ctx.header("x-request-id")
            if not req_id or not ID.match(req_id):
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

    def endpoint(name: str, auth: Auth, fn: Handler) -> Endpoint:
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
            except JournalError as exc:  # a read of the store failed (database down)
                log(logger, logging.WARNING, "store unavailable", path=request.url.path,
                    error=str(exc))  # fmt: skip
                status, data = 503, None
                err = error_body(
                    "unavailable", "the request store cannot be read; retry later", retry_after=5.0
                )
                headers["retry-after"] = "5"
            except Exception as exc:  # never a stack trace in an answer
                log(
                    logger, logging.ERROR, "unhandled error", path=request.url.path, error=repr(exc)
                )
                logger.debug("traceback", exc_info=True)
                status, data = 500, None
                err = error_body("internal_error", "internal error; see the service log")
            if ctx.reply_headers:
                headers.update(ctx.reply_headers)
            response = respond(ctx, status, data, err, headers)
            elapsed = clock.now() - started
            prom.child(prom.http_requests, request.method, name, str(status)).inc()
            prom.child(prom.http_latency, request.method, name).observe(elapsed)
            return response

        return handler

    async def _receive_body(ctx: Ctx) -> bytes:
        """The request's body, size-capped, its media type checked at the first chunk."""
        request = ctx.request
        chunks: list[bytes] = []
        size = 0
        ctype = ctx.header("content-type")
        checked = False
        receive = request.receive  # not request.stream(): an async generator per request
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # http.disconnect
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
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
        return b"".join(chunks)

    async def read_body(ctx: Ctx, model: type[BaseModel], *, optional: bool = False) -> Any:
        length = ctx.header("content-length")
        if length is not None:
            if not length.isdigit():
                raise ApiError(400, "bad_request", "invalid Content-Length")
            if int(length) > api.max_body_bytes:
                raise ApiError(
                    413, "payload_too_large", f"body larger than {api.max_body_bytes} bytes"
                )
        try:
            async with asyncio.timeout(body_timeout_s):
                body = await _receive_body(ctx)
        except TimeoutError:
            raise ApiError(
                408,
                "request_timeout",
                f"body not received in {body_timeout_s} s",
                headers={"connection": "close"},
            ) from None
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

    return Plumbing(
        config,
        clock,
        logger,
        prom,
        holder,
        leadership,
        svc,
        read_body,
        respond,
        endpoint,
        http_error,
    )
