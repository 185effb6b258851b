"""The seed's ``meta`` block for any Starlette or FastAPI service (seed 004, 3.6).

One line adds it (3.6.1, automatic)::

    app.add_middleware(MetaMiddleware)                  # Starlette or FastAPI
    app.add_middleware(MetaMiddleware, config=ApiMetadataSection(detail_level="minimal"))

Every JSON object answered then carries ``meta`` (request_id, timestamp, processing time,
trace_id, version) built by :class:`~.envelope.MetaBuilder` from the ``api_metadata``
config, as the router's own answers do; ``wrap=True`` turns any other JSON answer into the
``{"status", "data", "error", "meta"}`` envelope. The caller's ``traceparent`` is continued
(a new trace when absent) and sent back, and ``x-request-id`` is kept when valid.

Inside a request, :func:`span` times a component (``processing_time.components``, detail
level ``full``) and :func:`add_metadata_to_response` (3.6.2, manual) puts the ``meta`` block
into an answer built by hand. ``gpu=`` is called once per answer for the ``gpu_resources``
block (a dict with the keys :class:`~.envelope.MetaBuilder` reads), or None.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import re
import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

from gpu_router.shim.config import ApiMetadataSection
from gpu_router.shim.http.envelope import (
    MetaBuilder,
    Timings,
    TraceContext,
    envelope,
    new_request_id,
    parse_traceparent,
)
from gpu_router.shim.http.schemas import ID_PATTERN

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
GpuInfo = Callable[[], dict[str, Any] | None]

_ID = re.compile(ID_PATTERN)
_ENVELOPE_KEYS = frozenset({"status", "data", "error"})


@dataclass(slots=True)
class RequestMeta:
    """What one request's ``meta`` block is built from."""

    request_id: str
    trace: TraceContext
    timings: Timings
    builder: MetaBuilder
    gpu: GpuInfo | None

    def build(self) -> dict[str, Any]:
        return self.builder.build(
            request_id=self.request_id,
            wall_now=time.time(),
            timings=self.timings,
            mono_now=time.perf_counter(),
            trace=self.trace,
            gpu=self.gpu() if self.gpu is not None else None,
        )


_current: contextvars.ContextVar[RequestMeta | None] = contextvars.ContextVar(
    "gpu_router_request_meta", default=None
)


def current() -> RequestMeta | None:
    """The request being answered (None outside :class:`MetaMiddleware`)."""
    return _current.get()


@contextlib.contextmanager
def span(name: str) -> Iterator[None]:
    """Time a component of the current request as ``{name}_ms`` (nothing outside one)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        meta = _current.get()
        if meta is not None:
            meta.timings.add(name, time.perf_counter() - started)


def add_metadata_to_response(response_data: dict[str, Any]) -> dict[str, Any]:
    """``response_data`` with the current request's ``meta`` block (seed 004, 3.6.2); left
    as it is outside :class:`MetaMiddleware`."""
    meta = _current.get()
    if meta is not None and meta.builder.wanted():
        response_data["meta"] = meta.build()
    return response_data


class MetaMiddleware:
    """Pure ASGI middleware: adds ``meta`` to JSON answers (see the module docstring)."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Any],
        config: ApiMetadataSection | None = None,
        *,
        gpu: GpuInfo | None = None,
        wrap: bool = False,
    ) -> None:
        self.app = app
        self.builder = MetaBuilder(config or ApiMetadataSection())
        self.gpu = gpu
        self.wrap = wrap

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        rid = headers.get("x-request-id", "")
        meta = RequestMeta(
            rid if _ID.match(rid) else new_request_id(),
            parse_traceparent(headers.get("traceparent")),
            Timings(time.perf_counter()),
            self.builder,
            self.gpu,
        )
        token = _current.set(meta)
        try:
            await self.app(scope, receive, _Rewriter(self, meta, send).send)
        finally:
            _current.reset(token)


class _Rewriter:
    """Holds back a JSON answer's start and body, then sends them with ``meta`` added."""

    def __init__(self, owner: MetaMiddleware, meta: RequestMeta, send: Send) -> None:
        self.owner, self.meta, self._send = owner, meta, send
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            content_type = dict(message.get("headers", [])).get(b"content-type", b"")
            if not content_type.startswith(b"application/json"):
                await self._send(self._headers(message, None))
                return
            self.start = message
            return
        if message["type"] != "http.response.body" or self.start is None:
            await self._send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = self._rewrite(b"".join(self.chunks))
        start, self.start = self.start, None
        await self._send(self._headers(start, len(body)))
        await self._send({"type": "http.response.body", "body": body})

    def _rewrite(self, body: bytes) -> bytes:
        if not self.meta.builder.wanted():
            return body
        try:
            data = json.loads(body)
        except ValueError:
            return body
        if isinstance(data, dict) and (not self.owner.wrap or data.keys() >= _ENVELOPE_KEYS):
            data["meta"] = self.meta.build()
        elif self.owner.wrap:
            data = envelope(data, meta=self.meta.build())
        else:
            return body
        return json.dumps(data, separators=(",", ":")).encode()

    def _headers(self, start: Message, length: int | None) -> Message:
        headers = [
            (k, v) for k, v in start.get("headers", []) if length is None or k != b"content-length"
        ]
        if length is not None:
            headers.append((b"content-length", str(length).encode()))
        tracing = self.meta.builder.config.components.tracing
        if tracing.enabled and tracing.propagate_headers:
            headers.append((b"traceparent", self.meta.trace.traceparent.encode()))
        headers.append((b"x-request-id", self.meta.request_id.encode()))
        return {**start, "headers": headers}
