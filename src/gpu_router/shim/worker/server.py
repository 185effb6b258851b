"""The reference worker's HTTP app: the job API in front of a :class:`~.jobs.Worker`.

``POST /jobs`` ``{request_id, payload, expected_duration_ms, memory_mb[, job_id]}`` -> 202
``{job_id, state}``, or 200 ``{job_id, state, existing: true}`` when the worker holds that
job id already (nothing is run again); ``GET /jobs[?request_id=]`` -> ``{jobs: [...]}``
(every job held: running, or finished and not acknowledged); ``POST /jobs/ack``
``{job_ids: [...]}`` -> ``{acked, running, unknown}`` forgets finished jobs the router
has recorded; ``GET /jobs/{id}`` -> ``{job_id, request_id, state (running|
completed|failed|cancelled), progress 0-1, result, error, started_at, finished_at}``;
``DELETE /jobs/{id}`` cancels (idempotent) -> ``{job_id, state}``; ``POST /restart``
restarts the device (running jobs cancelled, the device reset; the router's admin
``restart`` calls it) -> ``{restarted, cancelled, restarts}``; ``GET /health`` ->
``{status, gpu, device_name, mode, ..., restarts}`` (503 while the device warms up or
restarts); ``GET /models`` -> the resident models (``ModelHolder.report``). Errors are
``{"error": message}``: 400 bad JSON, 404 no such job, 413 body over 1 MiB, 422 a bad
field, 503 starting or busy (``Retry-After: 1``); with a ``token``, 401 for a job call
(every path but ``/health``) without ``Authorization: Bearer <token>`` (compared in
constant time), so only the router can start, read, cancel or acknowledge jobs; ``/health``
stays open for probes. The ``{id}`` in a path is
percent-encoded by clients (``shim.worker.client``) and may hold any character once
decoded, ``/`` included. What a job runs: :mod:`.loops`; the job table: :mod:`.jobs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .jobs import Worker
from .loops import MAX_ITERATIONS, MAX_MATRIX, opt_int
from .registration import Registration

MAX_BODY_BYTES = 1 << 20
FIELDS = frozenset(
    {"request_id", "payload", "expected_duration_ms", "memory_mb", "job_id", "model"}
)


def _model(body: dict[str, Any]) -> dict[str, Any] | None:
    """The optional ``model``: ``{id, memory_mb (>= 0), evict: [ids]}``; ValueError."""
    m = body.get("model")
    if m is None:
        return None
    bad = ValueError("model=: must be {id: string, memory_mb: number >= 0, evict: [string]}")
    if not isinstance(m, dict) or not set(m) <= {"id", "memory_mb", "evict"}:
        raise bad
    mid, mb, evict = m.get("id"), m.get("memory_mb", 0.0), m.get("evict", [])
    if not isinstance(mid, str) or not 0 < len(mid) <= 256:
        raise bad
    if isinstance(mb, bool) or not isinstance(mb, int | float) or not 0 <= mb < 1e9:
        raise bad
    if not isinstance(evict, list) or not all(isinstance(e, str) for e in evict):
        raise bad
    return {"id": mid, "memory_mb": float(mb), "evict": list(evict)}


MAX_ACK = 10_000  # job ids in one acknowledgement
#: fencing several routers: the leader's lease epoch, sent with every call; a start,
#: acknowledgement or cancel with an epoch older than the newest seen is refused (409).
#: A listing (``GET /jobs``: a new leader's recovery asks what the worker holds) is
#: answered whatever its epoch but counts as seen, so a deposed leader cannot start a
#: job after the new leader has looked (the new leader would not know of it)
EPOCH_HEADER = "x-router-epoch"


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _number(body: dict[str, Any], key: str) -> float:
    value = body.get(key, 0)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or value > 1e12
    ):
        raise ValueError(f"{key}={value!r}: must be a finite number >= 0")
    return float(value)


class TokenCheck:
    """ASGI middleware: 401 for an HTTP call other than ``GET /health`` whose
    ``Authorization`` is not ``Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/health":
            given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            if not hmac.compare_digest(given, self.expected):
                response = JSONResponse(
                    {"error": "a valid worker token is required"},
                    status_code=401,
                    headers={"www-authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    worker: Worker, token: str | None = None, registration: Registration | None = None
) -> Starlette:
    """The worker's Starlette app; its lifespan warms the device up and stops the jobs.
    With ``token``, every job call must carry it (:class:`TokenCheck`); with
    ``registration`` it joins a router's fleet once ready (and leaves it at the end)."""

    async def read_object(request: Request) -> dict[str, Any] | JSONResponse:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return _error(413, f"body larger than {MAX_BODY_BYTES} bytes")
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            return _error(413, f"body larger than {MAX_BODY_BYTES} bytes")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            return _error(400, "body is not valid JSON")
        if not isinstance(body, dict):
            return _error(422, "body must be a JSON object", field="body")
        return body

    newest_epoch = 0

    def fenced(request: Request) -> JSONResponse | None:
        """409 for a call from a deposed leader (an epoch older than the newest seen)."""
        nonlocal newest_epoch
        raw = request.headers.get(EPOCH_HEADER)
        if raw is None or not raw.isdigit():
            return None
        epoch = int(raw)
        if epoch < newest_epoch:
            return _error(409, f"fenced: epoch {epoch} is older than {newest_epoch}")
        newest_epoch = epoch
        return None

    async def submit(request: Request) -> JSONResponse:
        if (refused := fenced(request)) is not None:
            return refused
        body = await read_object(request)
        if isinstance(body, JSONResponse):
            return body
        # again once the body is in: a new leader may have listed the jobs meanwhile (no
        # await between this and the job's creation)
        if (refused := fenced(request)) is not None:
            return refused
        unknown = set(body) - FIELDS
        if unknown:
            return _error(422, f"unknown fields: {sorted(unknown)}", field=sorted(unknown)[0])
        request_id = body.get("request_id")
        if not isinstance(request_id, str) or not 0 < len(request_id) <= 300:
            return _error(422, "request_id: must be a non-empty string", field="request_id")
        job_id = body.get("job_id")
        if job_id is not None and (not isinstance(job_id, str) or not 0 < len(job_id) <= 300):
            return _error(422, "job_id: must be a non-empty string", field="job_id")
        payload = body.get("payload")
        try:
            duration = _number(body, "expected_duration_ms")
            memory = _number(body, "memory_mb")
            opt_int(payload, "iterations", 1, MAX_ITERATIONS)
            opt_int(payload, "matrix_size", 1, MAX_MATRIX)
            model = _model(body)
        except ValueError as exc:
            return _error(422, str(exc), field=str(exc).split("=")[0])
        if not worker.ready:
            return _error(503, "worker is starting", retry_after=1)
        if worker.running >= worker.max_jobs and worker.existing(request_id, job_id) is None:
            return JSONResponse({"error": "worker busy"}, 503, headers={"Retry-After": "1"})
        job, new = worker.submit(request_id, payload, duration, memory, job_id, model)
        if new:
            return JSONResponse({"job_id": job.job_id, "state": job.state}, status_code=202)
        return JSONResponse({"job_id": job.job_id, "state": job.state, "existing": True})

    async def listing(request: Request) -> JSONResponse:
        nonlocal newest_epoch
        raw = request.headers.get(EPOCH_HEADER)
        if raw is not None and raw.isdigit():  # (seen, not refused: a read)
            newest_epoch = max(newest_epoch, int(raw))
        rid = request.query_params.get("request_id")
        return JSONResponse({"jobs": [j.view() for j in worker.listing(rid)]})

    async def ack(request: Request) -> JSONResponse:
        if (refused := fenced(request)) is not None:
            return refused
        body = await read_object(request)
        if isinstance(body, JSONResponse):
            return body
        if (refused := fenced(request)) is not None:  # (as in submit)
            return refused
        ids = body.get("job_ids")
        if (
            not isinstance(ids, list)
            or len(ids) > MAX_ACK
            or not all(isinstance(i, str) for i in ids)
        ):
            return _error(422, f"job_ids: must be a list of at most {MAX_ACK} strings")
        return JSONResponse(worker.ack(ids))

    async def status(request: Request) -> JSONResponse:
        job = worker.jobs.get(request.path_params["job_id"])
        if job is None:
            return _error(404, "no such job")
        return JSONResponse(job.view())

    async def cancel(request: Request) -> JSONResponse:
        if (refused := fenced(request)) is not None:
            return refused
        job = worker.jobs.get(request.path_params["job_id"])
        if job is None:
            return _error(404, "no such job")
        worker.cancel(job)
        return JSONResponse({"job_id": job.job_id, "state": job.state})

    async def restart(request: Request) -> JSONResponse:
        return JSONResponse(await worker.restart())

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(worker.health(), status_code=200 if worker.ready else 503)

    async def models(request: Request) -> JSONResponse:
        return JSONResponse(worker.models.report())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await worker.start()
        member = None
        if registration is not None:
            member = asyncio.ensure_future(registration.run())
        try:
            yield
        finally:
            if member is not None and registration is not None:
                member.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await member
                await registration.leave()
            await worker.stop()

    app = Starlette(
        routes=[
            Route("/jobs", submit, methods=["POST"]),
            Route("/jobs", listing, methods=["GET"]),
            Route("/jobs/ack", ack, methods=["POST"]),
            Route("/jobs/{job_id:path}", status, methods=["GET"]),
            Route("/jobs/{job_id:path}", cancel, methods=["DELETE"]),
            Route("/restart", restart, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/models", models, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    if token is not None:
        app.add_middleware(TokenCheck, token=token)
    return app
