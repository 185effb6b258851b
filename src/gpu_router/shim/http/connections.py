"""Connection limits below the ASGI app: header size, count and deadline, idle
connections, and caps on open connections in all and per client address (the
``connections`` config section; issue 14).

Why a protocol subclass and not uvicorn's options alone. uvicorn (0.54, httptools
parser) has no limit on header size: httptools gathers a header value in memory until
its line ends, so a 200 MB value was read whole (memory 130 -> 474 MB) while the parsing
held the event loop, and ``/health`` timed out for 35 s. ``h11_max_incomplete_event_size``
bounds only the h11 parser, which costs twice the CPU per request. uvicorn's
``timeout_keep_alive`` starts only after a response: a connection that never sends a
byte, or sends its headers one byte a minute (slowloris), is never closed.
``limit_concurrency`` counts all connections and tasks alike, has no per-address cap,
and answers in plain text. None of these can be done from the ASGI app either, which sees
a request only once its headers are complete. So :func:`guarded_protocol` subclasses
uvicorn's ``HttpToolsProtocol`` and adds, per connection:

- a byte count of the request head (request line and headers) checked *before* each read
  is fed to the parser: at most ``max_header_bytes`` reach httptools, then 431;
- a count of header lines: over ``max_headers``, 431;
- one deadline: ``idle_timeout_s`` while no request has begun (then the connection is
  closed without an answer, as uvicorn's keep-alive timeout does), ``header_timeout_s``
  from a request's first byte to the end of its headers (then 408);
- on connection: over ``max_connections_per_client`` from its address, or over
  ``max_connections`` in all, the connection is answered 503 (``Retry-After: 1``) once
  its request arrives, or closed after a second, whichever is first (answering before
  the request is read would make the kernel reset the connection before the client reads
  the answer);
- uvicorn's plain-text 400 for an unparsable request replaced by the JSON envelope (a
  body the parser refuses, such as a malformed chunk, too, unless the app has begun its
  answer: then the connection is closed).

Every answer here is the JSON envelope with ``meta: null`` (no request was routed) and
``Connection: close``. The body deadline (``body_timeout_s``, 408) is the body reader's
(``shim.http.plumbing``): the app reads bodies itself. Counted head bytes are those of
whole reads: a read that ends one request's body and starts a pipelined next one counts
toward neither (at most one read, 256 KiB, past the limit). With the h11 parser (no
httptools installed) only uvicorn's options apply: ``h11_max_incomplete_event_size`` =
``max_header_bytes``, ``timeout_keep_alive`` = ``idle_timeout_s``, and
``limit_concurrency`` = ``max_connections`` (plain-text 503); see :func:`uvicorn_options`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from gpu_router.shim.config import ConnectionsSection
from gpu_router.shim.fastjson import dumps_bytes
from gpu_router.shim.http.envelope import envelope, error_body

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
_REASONS[503] = b"Service Unavailable"
#: how long a connection over a cap is kept for its request to arrive (s)
REFUSED_LINGER_S = 1.0


def error_response(
    status: int, code: str, message: str, *, retry_after: int | None = None
) -> bytes:
    """A whole HTTP/1.1 answer: the JSON envelope with ``error``, then the connection closes."""
    body = dumps_bytes(envelope(None, error=error_body(code, message, retry_after=retry_after)))
    head = [
        b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Error")),
        b"content-type: application/json",
        b"content-length: %d" % len(body),
        b"connection: close",
    ]
    if retry_after is not None:
        head.append(b"retry-after: %d" % retry_after)
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class _HeadTooLarge(Exception):
    """Raised in a parser callback to stop httptools once a request was refused."""


def guarded_protocol(limits: ConnectionsSection) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with ``limits`` enforced (see the module docstring);
    pass it as ``uvicorn.run(..., http=...)``. Each call has its own per-address counts."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    per_client: Counter[str] = Counter()
    head_limit = limits.max_header_bytes

    class GuardedHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc]
        per_client_counts = per_client  # open connections by address (tests, benchmarks)

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.in_head = True  # between requests, or inside a request's head
            self.head_bytes = 0
            self.header_lines = 0
            self.refused = False
            self.over_cap: bytes | None = None  # the 503 to send once the request arrives
            self.address: str | None = None
            self.deadline: asyncio.TimerHandle | None = None

        # -- connection open and close -----------------------------------------------------

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.address = self.client[0] if self.client else "?"
            per_client[self.address] += 1
            if per_client[self.address] > limits.max_connections_per_client:
                why = f"more than {limits.max_connections_per_client} connections from one address"
            elif len(self.connections) > limits.max_connections:
                why = f"more than {limits.max_connections} open connections"
            else:
                self._arm(limits.idle_timeout_s, self._idle_too_long)
                return
            self.over_cap = error_response(503, "too_many_connections", why, retry_after=1)
            self._arm(REFUSED_LINGER_S, self._close)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self.address is not None:
                per_client[self.address] -= 1
                if per_client[self.address] <= 0:
                    del per_client[self.address]
                self.address = None
            super().connection_lost(exc)

        # -- reads ---------------------------------------------------------------------------

        def data_received(self, data: bytes) -> None:
            if self.refused:
                return
            if self.over_cap is not None:
                self._refuse_raw(self.over_cap)
                return
            if not self.in_head:
                super().data_received(data)
                return
            if self.head_bytes == 0:  # a request begins: its headers have a deadline
                self._arm(limits.header_timeout_s, self._head_too_slow)
            room = head_limit - self.head_bytes
            self.head_bytes += len(data)
            if len(data) <= room:
                super().data_received(data)
                return
            super().data_received(data[:room])  # no more than the limit reaches the parser
            if self.refused:
                return
            if self.in_head:
                self._refuse(431, "headers_too_large", f"request head over {head_limit} bytes")
                return
            super().data_received(data[room:])  # the head ended within the limit: the body

        def on_header(self, name: bytes, value: bytes) -> None:
            self.header_lines += 1
            if self.header_lines > limits.max_headers:
                self._refuse(431, "too_many_headers", f"more than {limits.max_headers} headers")
                raise _HeadTooLarge
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self.in_head = False
            self._disarm()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self.in_head, self.head_bytes, self.header_lines = True, 0, 0
            super().on_message_complete()

        def send_400_response(self, msg: str) -> None:
            if not self.refused:  # (a refusal stops the parser with an error)
                self._refuse(400, "bad_request", "invalid HTTP request")

        # -- refusals and the deadline -------------------------------------------------------

        def _refuse(self, status: int, code: str, message: str) -> None:
            self._refuse_raw(error_response(status, code, message))

        def _refuse_raw(self, answer: bytes) -> None:
            self.refused = True
            self._disarm()
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                if cycle.response_started:
                    self.transport.close()  # an answer is being written: no second one
                    return
                # a body the parser refused (a bad chunk) before the app answered: the
                # app sees a disconnect and its answer, if any, is dropped; this one goes
                cycle.disconnected = True
                cycle.message_event.set()
            if not self.transport.is_closing():
                self.transport.write(answer)
                self.transport.close()

        def _arm(self, delay_s: float, then: Any) -> None:
            self._disarm()
            self.deadline = self.loop.call_later(delay_s, then)

        def _disarm(self) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None

        def _idle_too_long(self) -> None:
            self.deadline = None
            if self.head_bytes == 0:
                self._close()

        def _head_too_slow(self) -> None:
            self.deadline = None
            if self.in_head and not self.refused:
                self._refuse(
                    408, "request_timeout", f"headers not received in {limits.header_timeout_s} s"
                )

        def _close(self) -> None:
            self.deadline = None
            self.refused = True
            if not self.transport.is_closing():
                self.transport.close()

    return GuardedHttpToolsProtocol


def uvicorn_options(limits: ConnectionsSection, http: str) -> dict[str, Any]:
    """``uvicorn.run`` options for ``limits`` with the ``http`` parser uvicorn would use
    ("httptools": the guarded protocol; "h11": uvicorn's own options only)."""
    options: dict[str, Any] = {"timeout_keep_alive": limits.idle_timeout_s}
    if http == "httptools":
        options["http"] = guarded_protocol(limits)
    else:
        options["http"] = "h11"
        options["h11_max_incomplete_event_size"] = limits.max_header_bytes
        options["limit_concurrency"] = limits.max_connections
    return options
