"""An answer sent in one write to the socket instead of two.

uvicorn writes the status line and headers when the app sends ``http.response.start``
and the body when it sends ``http.response.body``: two writes, so two TCP segments,
and a client waiting for the answer may be woken twice. :func:`send_in_one_write` holds
uvicorn's writes for one answer and writes them together. Measured at 1,000 requests/s
(py-spy on the router, six paired runs of ``benchmarks/service_load.py``): the writes
went from 10.2% of the event loop's time to 8.5% (the write that wakes the client is
the costly one: 12-25 us on this VM), and the load generator's CPU per request from 0.20
to 0.19 ms; the router's own CPU per request and p99 moved within the run-to-run noise.

It reaches into uvicorn's protocol: the ASGI ``send`` of uvicorn's httptools and h11
protocols is a bound method of the request's cycle object, whose ``transport`` is the
connection. Where ``send`` is anything else (another server, a test client) the answer
goes out the usual way.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response


class _HeldWrites:
    """Stands in for the transport during one answer: keeps what is written (and a
    close) for :meth:`release`; everything else goes to the real transport."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._chunks: list[bytes] = []
        self._close = False

    def write(self, data: bytes) -> None:
        self._chunks.append(bytes(data))

    def close(self) -> None:
        self._close = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def release(self) -> None:
        if self._chunks:
            self._transport.write(b"".join(self._chunks))
        if self._close:
            self._transport.close()


async def send_in_one_write(response: Response, scope: Any, receive: Any, send: Any) -> None:
    """Send ``response`` as ``response(scope, receive, send)`` would, in one write when
    ``send`` belongs to a uvicorn cycle."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None or not callable(getattr(transport, "write", None)):
        await response(scope, receive, send)
        return
    held = _HeldWrites(transport)
    cycle.transport = held  # type: ignore[union-attr]
    try:
        await response(scope, receive, send)
    finally:
        cycle.transport = transport  # type: ignore[union-attr]
        held.release()
