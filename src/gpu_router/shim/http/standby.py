"""What a standby replica answers (``shim.http.leadership``), so that any replica's
address works behind a plain load balancer.

Status and result reads (``GET /api/v1/requests/{id}``, ``/route/{id}``, ``.../result``)
are answered from the store (PostgreSQL, read directly: as fresh as the leader's last
commit, at most ``journal.lazy_commit_ms`` behind it; a running job's progress is not
known there, so it reads 0). They keep the API's per-user ids: a user key reads its own
user's key only, so another user's id is a missing one (``endpoints.owned_in``).
While PostgreSQL cannot be reached (the warm copy's last poll failed, or the read
failed) they are answered from the standby's warm copy (``shim.store.pg_warm_copy``,
``journal.warm_poll_ms``), with ``x-gpu-router-read-from: warm-copy`` and
``x-gpu-router-stale-s`` (how far behind the database the copy may be, s); an id the
copy does not hold is not known then: 503 with ``Retry-After``, not 404. A read from
the store says ``x-gpu-router-read-from: store``. A leader that stepped down
(``shim.http.leadership``) is a standby whose copy was seeded from its own records: it
reads from that copy until its store is open again.

Every other API call (submissions, cancels, admin and worker writes, the GPU, quota
and metrics reads, which live in the leader's memory) is forwarded to the leader over
HTTP: the caller's method, path, query, body and headers, ``x-gpu-router-forwarded``
added, within ``journal.forward_timeout_s``; the leader's answer (status, body, headers)
goes back as it is. The standby authenticates the caller first (the same 401/403), and
forwards only calls with an ``Authorization`` header: the leader authenticates them
again, but sees the standby's address, so a caller trusted for its network address is
sent to the leader instead (503 with ``x-leader-url``, as while no leader is known). A
call that was forwarded once is not forwarded again (two replicas that each take the
other for the leader, for a moment). When the leader cannot be reached the answer is
503 with ``Retry-After``: the submission may or may not have been taken, and its
re-submission with the same ``request_id`` is answered as the first (idempotent).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response

from gpu_router.shim.core.status import request_status
from gpu_router.shim.http.auth import Authenticator, AuthError
from gpu_router.shim.http.endpoints import owned_in
from gpu_router.shim.http.leadership import Leadership
from gpu_router.shim.http.plumbing import ApiError, Auth, Ctx, Endpoint, Handler, Plumbing, path_id
from gpu_router.shim.logs import log
from gpu_router.shim.store import JournalError, JournalRecord, Store
from gpu_router.shim.store.pg_warm_copy import WarmCopy

FORWARDED = "x-gpu-router-forwarded"  # (request header) the standby that forwarded it
LOCAL_READS = ("status", "result")  # the routes a standby answers from the store
READ_FROM = "x-gpu-router-read-from"  # (response header) store, or warm-copy
STALE = "x-gpu-router-stale-s"  # (response header) how far behind a warm-copy read may be
#: request headers not forwarded (hop by hop, or set by the client library)
_HOP_REQUEST = {
    b"host",
    b"content-length",
    b"connection",
    b"keep-alive",
    b"transfer-encoding",
    b"te",
    b"trailer",
    b"upgrade",
    b"proxy-authorization",
    b"proxy-connection",
    b"x-forwarded-for",
}
#: response headers not passed back (the standby's server sets its own)
_HOP_RESPONSE = {
    "content-length",
    "content-encoding",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "server",
    "date",
}


class Standby:
    """The standby's answers for one app; ``attach`` gives it the store and HTTP client
    once the lifespan has opened them."""

    def __init__(self, p: Plumbing, authn: Authenticator, leadership: Leadership) -> None:
        self.p = p
        self.authn = authn
        self.leadership = leadership
        self.timeout_s = p.config.journal.forward_timeout_s
        self.store: Store | None = None
        self.http: httpx.AsyncClient | None = None
        self.warm: WarmCopy | None = None

    def attach(
        self, store: Store | None, http: httpx.AsyncClient, warm: WarmCopy | None = None
    ) -> None:
        """The store (None: not open yet, e.g. a leader that stepped down in an outage,
        which reads from its seeded ``warm`` copy meanwhile), the client, the copy."""
        self.store, self.http, self.warm = store, http, warm

    def drop_warm_copy(self) -> None:
        """(this replica leads now) Stop the warm copy's polling and free it."""
        warm, self.warm = self.warm, None
        if warm is not None:
            warm.close()

    def describe(self) -> dict[str, Any]:
        """What ``/health`` says of the standby's reads."""
        warm = self.warm
        reads = {"reads": self.can_read}
        return reads if warm is None else reads | {"warm_copy": warm.describe()}

    @property
    def can_read(self) -> bool:
        """Whether status reads are answered now: from the store, or from a warm copy
        while the store is unreachable (a replica started during an outage has none)."""
        warm = self.warm
        if self.store is None:  # (not open yet: PostgreSQL unreachable since the start)
            return warm is not None and warm.usable
        return warm is None or warm.down is None or warm.usable

    @property
    def active(self) -> bool:
        """Whether this replica answers as a standby now (it has not taken the lease)."""
        return self.p.holder.get("svc") is None and self.leadership.role == "standby"

    def wrap(self, name: str, auth: Auth, regular: Endpoint) -> Endpoint:
        """The endpoint ``regular`` of the route ``name``, answered as a standby would
        while this replica is one."""
        local = self.p.endpoint(name, auth, self._read(name)) if name in LOCAL_READS else None

        async def endpoint(request: Request) -> Response:
            if not self.active:
                return await regular(request)
            if local is not None:
                return await local(request)
            return await self._forward(name, auth, request, regular)

        return endpoint

    # -- reads from the store -------------------------------------------------------------

    def _read(self, name: str) -> Handler:
        async def handler(ctx: Ctx) -> tuple[int, Any]:
            store = self.store
            if store is None and (self.warm is None or not self.warm.usable):
                raise ApiError(503, "unavailable", "the store is not open yet", retry_after=1.0)
            rid = path_id(ctx, "request_id", "request")
            rec = self._lookup(ctx, store, rid)
            ctx.gpu_id = rec.gpu_id
            if name == "status":
                done = rec.state == "completed"
                return 200, request_status(self.p.config, rec, 1.0 if done else 0.0)
            if rec.state != "completed":
                raise ApiError(409, "not_completed", f"request {rid} is {rec.state}; no result")
            return 200, {"request_id": rid, "status": "completed", "result": rec.result}

        return handler

    def _lookup(self, ctx: Ctx, store: Store | None, rid: str) -> JournalRecord:
        """The request from the store; from the warm copy while the store is down (or
        not open yet)."""
        warm = self.warm
        if store is not None and (warm is None or warm.down is None):
            try:
                rec = owned_in(ctx, store.get, store.latest, rid)
            except JournalError:
                if warm is None or not warm.usable:
                    raise
            else:
                ctx.reply_headers = {READ_FROM: "store"}
                return rec
        if warm is None or not warm.usable:
            raise ApiError(
                503,
                "unavailable",
                "the request store cannot be read and this replica has no warm copy yet",
                retry_after=5.0,
            )
        age = warm.age_s() or 0.0
        ctx.reply_headers = {READ_FROM: "warm-copy", STALE: f"{age:.3f}"}

        def unknown(_key: str) -> JournalRecord | None:
            raise ApiError(
                503,
                "not_in_copy",
                f"request {rid} is not in this replica's copy (the store cannot be read, "
                f"the copy is {age:.1f} s old); retry later",
                retry_after=5.0,
            )

        def held(key: str) -> JournalRecord | None:
            return warm.get(key) or unknown(key)

        def held_latest(cid: str) -> JournalRecord | None:
            return warm.latest(cid) or unknown(cid)

        return owned_in(ctx, held, held_latest, rid)

    # -- forwarding to the leader ---------------------------------------------------------

    def _authenticated(self, auth: Auth, request: Request) -> bool:
        host = request.client.host if request.client else None
        try:
            identity = self.authn.authenticate(request.headers.get("authorization"), host)
        except AuthError:
            return False
        return auth != "admin" or identity.is_admin

    async def _answer(self, name: str, request: Request, exc: ApiError) -> Response:
        """``exc`` as an answer in the envelope (the caller was authenticated already)."""

        async def fail(ctx: Ctx) -> tuple[int, Any]:
            raise exc

        return await self.p.endpoint(name, "none", fail)(request)

    async def _forward(
        self, name: str, auth: Auth, request: Request, regular: Endpoint
    ) -> Response:
        leader = self.leadership.leader_address
        if (
            leader is None
            or self.http is None
            or request.headers.get(FORWARDED) is not None
            or request.headers.get("authorization") is None
            or not self._authenticated(auth, request)
        ):  # the regular answer: a 401/403, or 503 with x-leader-url
            return await regular(request)
        api = self.p.config.api
        try:
            body = await asyncio.wait_for(
                _body(request, api.max_body_bytes), self.p.config.connections.body_timeout_s
            )
        except TimeoutError:
            return await self._answer(name, request, ApiError(408, "request_timeout", "body"))
        except _TooLarge:
            msg = f"body larger than {api.max_body_bytes} bytes"
            return await self._answer(name, request, ApiError(413, "payload_too_large", msg))
        headers = [(k, v) for k, v in request.scope["headers"] if k.lower() not in _HOP_REQUEST]
        headers.append((FORWARDED.encode(), self.leadership.lease.address.encode()))
        if request.client is not None:
            headers.append((b"x-forwarded-for", request.client.host.encode()))
        query = request.url.query
        url = leader.rstrip("/") + request.url.path + (f"?{query}" if query else "")
        started = self.p.clock.now()
        try:
            r = await self.http.request(
                request.method, url, content=body, headers=headers, timeout=self.timeout_s
            )
        except httpx.HTTPError as exc:
            log(self.p.logger, logging.WARNING, "leader unreachable", leader=leader,
                path=request.url.path, error=repr(exc))  # fmt: skip
            return await self._answer(
                name,
                request,
                ApiError(
                    503,
                    "leader_unreachable",
                    f"the leader at {leader} did not answer; retry",
                    retry_after=1.0,
                    headers={"x-leader-url": leader},
                ),
            )
        out = {k: v for k, v in r.headers.items() if k.lower() not in _HOP_RESPONSE}
        prom = self.p.prom
        prom.child(prom.http_requests, request.method, name, str(r.status_code)).inc()
        prom.child(prom.http_latency, request.method, name).observe(self.p.clock.now() - started)
        return Response(r.content, r.status_code, headers=out)


class _TooLarge(Exception):
    pass


async def _body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)
