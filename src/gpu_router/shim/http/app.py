"""The Starlette app: every endpoint of DESIGN 5.1 in the ALT_LAS envelope.

``create_app(config, gpu_source=...)`` builds the app with its parts passed in (clock,
journal, HTTP client, logger): the plumbing (:mod:`.plumbing`), the public handlers
(:mod:`.endpoints`) and the admin handlers (:mod:`.admin_endpoints`) on Starlette's
route table here; the lifespan starts the :class:`RouterService`.

Every request, POST /api/v1/route included, goes through Starlette's own routing and
middleware. (A bypass of both for the route endpoint was measured side by side at
1,000 req/s, ``benchmarks/service_load.py``, three alternating pairs: the router's
main-thread CPU per request was 0.642/0.572/0.570 ms with it and 0.648/0.648/0.574 ms
without, 1% in two pairs of three, so it was removed.)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gpu_router.shim.config import ServiceConfig
from gpu_router.shim.core.clock import Clock, SystemClock
from gpu_router.shim.core.metrics import PromMetrics
from gpu_router.shim.core.metrics_push import metrics_push
from gpu_router.shim.core.service import RouterService
from gpu_router.shim.gpu_sources.base import GpuSource
from gpu_router.shim.http.admin_endpoints import admin_handlers
from gpu_router.shim.http.auth import Authenticator
from gpu_router.shim.http.docs_page import render_docs
from gpu_router.shim.http.endpoints import request_handlers
from gpu_router.shim.http.leadership import Leadership
from gpu_router.shim.http.openapi import openapi_document
from gpu_router.shim.http.plumbing import Auth, Endpoint, Handler, make_plumbing
from gpu_router.shim.http.standby import Standby
from gpu_router.shim.http.worker_endpoints import worker_handlers
from gpu_router.shim.logs import LOGGER_NAME, ShippingHandler, log
from gpu_router.shim.store import POSTGRES_SCHEMES, JournalError, Store, open_store
from gpu_router.shim.store.pg_lease import LeaderLease
from gpu_router.shim.store.pg_warm_copy import WarmCopy
from gpu_router.shim.store.postgres_store import PostgresStore
from gpu_router.shim.worker.call_guard import guarded_client

OPEN_RETRY_S = 1.0  # a replica's store open, retried while PostgreSQL is unreachable


def leadership_for(config: ServiceConfig, logger: logging.Logger) -> Leadership | None:
    """The leader lease's loops when several routers share a PostgreSQL store
    (``journal.lease_ttl_s`` above 0), else None."""
    jc = config.journal
    if jc.lease_ttl_s <= 0:
        return None
    if jc.path.split("://", 1)[0] not in POSTGRES_SCHEMES:
        raise JournalError("journal.lease_ttl_s needs a PostgreSQL store (journal.path)")
    api = config.api
    address = api.public_url or f"http://{api.host}:{api.port}"
    return Leadership(LeaderLease(jc.path, address, jc.lease_ttl_s), logger)


def create_app(
    config: ServiceConfig,
    *,
    gpu_source: GpuSource,
    clock: Clock | None = None,
    store: Store | None = None,
    http: httpx.AsyncClient | None = None,
    logger: logging.Logger | None = None,
    close_source: bool = False,
) -> Starlette:
    clock = clock or SystemClock()
    logger = logger or logging.getLogger(LOGGER_NAME)
    prom = PromMetrics()
    prom.shipping.shippers += [h.shipper for h in logger.handlers if isinstance(h, ShippingHandler)]
    authn = Authenticator(config.auth)
    holder: dict[str, RouterService] = {}
    leadership = leadership_for(config, logger)
    p = make_plumbing(
        config,
        clock=clock,
        logger=logger,
        prom=prom,
        authn=authn,
        holder=holder,
        leadership=leadership,
    )
    h = request_handlers(p) | admin_handlers(p) | worker_handlers(p)
    http_error = p.http_error
    standby = None if leadership is None else Standby(p, authn, leadership)
    if standby is not None and leadership is not None:
        leadership.standby_reads = standby.describe

    def ep(name: str, auth: Auth, fn: Handler) -> Endpoint:
        """An API endpoint; a standby's reads from the store, the rest forwarded."""
        regular = p.endpoint(name, auth, fn)
        return regular if standby is None else standby.wrap(name, auth, regular)

    async def prometheus(request: Request) -> Response:
        return Response(prom.text(), 200, media_type="text/plain; version=0.0.4; charset=utf-8")

    doc = openapi_document(config.api_metadata.version)
    doc_bytes = json.dumps(doc).encode()

    async def openapi(request: Request) -> Response:
        return Response(doc_bytes, 200, media_type="application/json")

    docs_bytes = render_docs(doc).encode()

    async def docs(request: Request) -> Response:
        return Response(docs_bytes, 200, media_type="text/html; charset=utf-8")

    def r(path: str, name: str, auth: Auth, fn: Handler, methods: list[str]) -> Route:
        return Route(path, ep(name, auth, fn), methods=methods, name=name)

    routes = [
        r("/api/v1/route", "route", "any", h["route"], ["POST"]),
        r("/api/v1/route/{request_id}", "status", "any", h["status"], ["GET"]),
        # one route, so that a 405 there lists every method (Allow: DELETE, GET, HEAD)
        Route(
            "/api/v1/requests/{request_id}",
            by_method(
                GET=ep("status", "any", h["status"]),
                DELETE=ep("cancel", "any", h["cancel"]),
            ),
            methods=["GET", "DELETE"],
            name="request",
        ),
        r("/api/v1/requests/{request_id}/result", "result", "any", h["result"], ["GET"]),
        r("/api/v1/gpu/status", "gpus", "any", h["gpus"], ["GET"]),
        r("/api/v1/gpus", "gpus", "any", h["gpus"], ["GET"]),
        r("/api/v1/user/{user_id}/quota", "quota", "any", h["quota"], ["GET"]),
        r("/api/v1/metrics", "metrics", "any", h["metrics"], ["GET"]),
        r(
            "/api/v1/admin/gpu/{gpu_id}/maintenance",
            "admin_maintenance",
            "admin",
            h["admin_maintenance"],
            ["POST"],
        ),
        r(
            "/api/v1/admin/gpu/{gpu_id}/restart",
            "admin_restart",
            "admin",
            h["admin_restart"],
            ["POST"],
        ),
        r(
            "/api/v1/admin/request/{request_id}",
            "admin_cancel",
            "admin",
            h["admin_cancel"],
            ["DELETE"],
        ),
        r("/api/v1/admin/user/{user_id}/quota", "admin_quota", "admin", h["admin_quota"], ["PUT"]),
        r("/api/v1/workers/register", "worker_register", "admin", h["worker_register"], ["POST"]),
        r(
            "/api/v1/workers/{gpu_id}/heartbeat",
            "worker_heartbeat",
            "admin",
            h["worker_heartbeat"],
            ["POST"],
        ),
        r("/api/v1/workers/{gpu_id}", "worker_leave", "admin", h["worker_leave"], ["DELETE"]),
        Route("/health", p.endpoint("health", "none", h["health"]), methods=["GET"], name="health"),
        Route("/metrics", prometheus, methods=["GET"], name="prometheus"),
        Route("/openapi.json", openapi, methods=["GET"], name="openapi"),
        Route("/docs", docs, methods=["GET"], name="docs"),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        own_store = store is None
        own_http = http is None
        # (a leader's worker calls ask its lease again at every write: call_guard)
        client = http or guarded_client(httpx.Limits(max_connections=200), trust_env=False)
        parts: dict[str, Any] = {}  # "store", "service": once the store is open
        tasks: dict[str, asyncio.Future[None]] = {}  # "leading", "step_down"
        loop = asyncio.get_running_loop()
        closing = asyncio.Event()  # the lifespan is ending
        jc = config.journal

        def warm_copy() -> WarmCopy:
            return WarmCopy(jc.path, poll_s=jc.warm_poll_ms / 1000.0, max_rows=jc.warm_copy_rows)

        def build(st: Store, warm: WarmCopy | None = None) -> None:
            parts["store"] = st
            parts["service"] = app.state.service = RouterService(
                config, gpu_source, clock=clock, store=st, http=client, logger=logger, prom=prom
            )
            if standby is not None:
                if warm is None and isinstance(st, PostgresStore) and jc.warm_copy_rows > 0:
                    warm = warm_copy()
                    warm.start()
                standby.attach(st, client, warm)

        async def start(epoch: int | None = None) -> None:
            service, st = parts["service"], parts["store"]
            service.epoch = epoch
            lead = leadership
            if epoch is not None and lead is not None:
                # asked before every worker call and store write: the lease still held
                service.holds = functools.partial(lead.holds, epoch)
                if isinstance(st, PostgresStore):
                    # every write carries the epoch; PostgreSQL refuses an older one's
                    st.fence_at(
                        epoch,
                        lambda why: lead.fence(f"database: {why}", epoch=epoch),
                        service.holds,
                    )
            if standby is not None:  # it leads: its reads are the service's own
                await asyncio.to_thread(standby.drop_warm_copy)
            await service.start()
            holder["svc"] = service

        def on_step_down(epoch: int, why: str, complete_at: float) -> None:
            """(any thread: the lease's watchdog, mostly) Its term is over, and nothing
            more is dispatched or written (``Leadership.holds``): take the service down
            on the loop."""

            def begin() -> None:
                if not closing.is_set():  # (stopping anyway: nothing to stand by for)
                    tasks["step_down"] = asyncio.ensure_future(step_down(epoch, complete_at))

            loop.call_soon_threadsafe(begin)

        async def step_down(epoch: int, complete_at: float) -> None:
            """The service taken down without another dispatch or write, its records the
            seed of a warm copy (complete as of ``complete_at``), then a standby again."""
            lead = leadership
            if lead is None:  # pragma: no cover - only a leadership steps down
                return
            try:
                service, st = parts.pop("service", None), parts.pop("store", None)
                holder.pop("svc", None)
                seed = None
                if service is not None and standby is not None and jc.warm_copy_rows > 0:
                    seed = warm_copy()
                    seed.seed(service.records(), complete_at)
                    seed.start()
                if standby is not None:  # its reads: the seed (the old store is fenced)
                    before, standby.warm = standby.warm, None  # (a takeover's, not dropped)
                    standby.attach(None, client, seed)
                    if before is not None:
                        await asyncio.to_thread(before.close)
                earlier = tasks.pop("leading", None)  # (a takeover still starting)
                if earlier is not None and not earlier.done():
                    earlier.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await earlier
                # (a takeover's start may have finished during those awaits: its service
                # is not the one that answers either)
                if (late := holder.pop("svc", None)) is not None and late is not service:
                    await late.abandon()
                if service is not None:
                    await service.abandon()
                if st is not None:
                    await st.aclose()  # (fenced: nothing more is written)
                rows = 0 if seed is None else len(seed)
                log(logger, logging.WARNING, "stepped down: standing by", epoch=epoch,
                    warm_copy_rows=rows)  # fmt: skip
                tasks["leading"] = asyncio.ensure_future(stand_by(lead, seed))
            except Exception as exc:  # (a supervisor starts it again)
                lead.exit_now(f"the step-down failed: {exc!r}")

        async def stand_by(lead: Leadership, warm: WarmCopy | None = None) -> None:
            """Open the store (while PostgreSQL cannot be reached, e.g. a leader that
            stepped down in an outage, or one started again: retry every second,
            answering reads from ``warm`` if there is one, else 503), then stand by until
            the lease is ours."""
            st = store
            while st is None:
                try:
                    st = await asyncio.to_thread(open_store, config.journal)
                except JournalError as exc:
                    lead.stand_by()
                    log(logger, logging.WARNING, "store unavailable; retrying", error=str(exc))
                    await asyncio.sleep(OPEN_RETRY_S)
            build(st, warm)
            await lead.lead(start)

        try:
            if leadership is None:
                build(store or open_store(config.journal))
                await start()
            else:  # serve as a standby until the lease is ours
                if store is None:  # (an injected store cannot be opened again: exit 70)
                    leadership.on_step_down = on_step_down
                tasks["leading"] = asyncio.ensure_future(stand_by(leadership))
            if not authn.configured:
                log(
                    logger,
                    logging.WARNING,
                    "no API keys and no trusted networks configured: "
                    "every API call will answer 401. Create a key with "
                    "`gpu-router keys create --user USER --file keys.yaml` (it prints "
                    "the key once) and restart with `--keys-file keys.yaml` "
                    "(or set auth.keys_file in the config)",
                )
            async with metrics_push(config.metrics, prom.registry, prom.shipping, clock.wall):
                yield
        finally:
            closing.set()
            for name in ("step_down", "leading"):
                task = tasks.get(name)
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            if "service" in parts:
                await parts["service"].stop()
            holder.pop("svc", None)
            if standby is not None:
                standby.drop_warm_copy()
            if own_store and "store" in parts:
                parts["store"].close()  # (before the lease is given up)
            if leadership is not None:
                await leadership.aclose()
            if own_http:
                await client.aclose()
            if close_source:
                await gpu_source.aclose()
            for shipper in prom.shipping.shippers:  # the log records of the shutdown
                await asyncio.to_thread(shipper.drain, 2.0)

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: http_error},
    )
    # no redirect of /path/ to /path: Starlette builds its Location from the Host header
    # (a caller-chosen host); an unknown path is a 404 in the envelope instead
    app.router.redirect_slashes = False
    app.state.prom = prom
    return app


def by_method(**endpoints: Endpoint) -> Endpoint:
    """One endpoint that hands each request to the endpoint of its method (HEAD: GET's)."""

    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await endpoints[method](request)

    return endpoint
