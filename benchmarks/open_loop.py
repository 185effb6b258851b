"""A light open-loop HTTP/1.1 load generator on raw asyncio transports (loopback only).

The load generator shares the machine's cores with the server it measures, so it must
cost far less per request than the server: an HTTP client library costs about as much
CPU per request as the service itself (aiohttp ~0.8 ms on this 2-core machine at 1,000
requests/s, with a task per request). This one writes pre-built requests on keep-alive
connections and reads only the status line and ``Content-Length`` of each answer
(tens of microseconds per request).

Open loop: request i is due at ``t0 + i / rate`` whatever happened to the earlier ones;
it goes out on an idle connection (a new one is opened when none is idle, up to
``max_connections``; beyond that it waits for one), and its latency counts from its due
time, so a server that falls behind cannot hide its queueing (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

#: (status, latency s) of one answered request, or (None, latency) for a transport error
Outcome = tuple[int | None, float]


@dataclass
class Run:
    """What one open-loop run saw, in send order."""

    status: list[int | None] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    index: list[int] = field(default_factory=list)  # which request each answer is for
    not_sent: int = 0
    first_due: float = 0.0
    last_done: float = 0.0


class _Conn(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.need = -1  # bytes of the current answer still expected (-1: headers not read)
        self.status = 0
        self.current: tuple[int, float] | None = None  # (request index, due time)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, i: int, due: float, data: bytes) -> None:
        self.current = (i, due)
        assert self.transport is not None
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.current is not None:
            if self.need < 0:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buf[:end].lower()
                self.status = int(head[9:12])
                self.buf = self.buf[end + 4 :]
                self.need = _content_length(head)
            if len(self.buf) < self.need:
                return
            self.buf = self.buf[self.need :]
            self.need = -1
            i, due = self.current
            self.current = None
            self.pool.answered(self, i, due, self.status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.lost(self)


def _content_length(head: bytes) -> int:
    at = head.find(b"content-length:")
    if at < 0:
        if b"transfer-encoding" in head:
            raise ValueError("chunked answers are not supported")
        return 0
    eol = head.find(b"\r\n", at)
    return int(head[at + 15 : eol if eol >= 0 else len(head)])


class _Pool:
    def __init__(
        self, host: str, port: int, max_connections: int, run: Run, clock: Callable[[], float]
    ) -> None:
        self.clock = clock
        self.host, self.port = host, port
        self.max = max_connections
        self.run = run
        self.idle: list[_Conn] = []
        self.opening = 0
        self.open: set[_Conn] = set()
        self.waiting: deque[tuple[int, float, bytes]] = deque()
        self.pending = 0  # sent or waiting, not yet answered
        self.loop = asyncio.get_running_loop()
        self.all_done = asyncio.Event()
        self.sending_done = False

    def submit(self, i: int, due: float, data: bytes) -> None:
        self.pending += 1
        if self.idle:
            self.idle.pop().send(i, due, data)
            return
        self.waiting.append((i, due, data))
        if len(self.open) + self.opening < self.max:
            self.opening += 1
            self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            _, conn = await self.loop.create_connection(lambda: _Conn(self), self.host, self.port)
        except OSError:
            self.opening -= 1
            if self.waiting:  # count the oldest waiting request as a transport error
                i, due, _ = self.waiting.popleft()
                self._record(i, due, None)
            return
        self.opening -= 1
        self.open.add(conn)
        self._idle(conn)

    def _idle(self, conn: _Conn) -> None:
        if self.waiting:
            i, due, data = self.waiting.popleft()
            conn.send(i, due, data)
        else:
            self.idle.append(conn)

    def answered(self, conn: _Conn, i: int, due: float, status: int) -> None:
        self._record(i, due, status)
        self._idle(conn)

    def lost(self, conn: _Conn) -> None:
        self.open.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.current is not None:
            i, due = conn.current
            conn.current = None
            self._record(i, due, None)

    def _record(self, i: int, due: float, status: int | None) -> None:
        now = self.clock()
        r = self.run
        r.status.append(status)
        r.latency_s.append(now - due)
        r.index.append(i)
        r.last_done = max(r.last_done, now)
        self.pending -= 1
        if self.sending_done and self.pending == 0:
            self.all_done.set()

    def close(self) -> None:
        for conn in list(self.open):
            if conn.transport is not None:
                conn.transport.close()


async def open_loop(
    host: str,
    port: int,
    requests: Sequence[bytes],
    rate: float,
    *,
    max_connections: int = 64,
    max_inflight: int = 4096,
    timeout_s: float = 30.0,
    clock: Callable[[], float] = time.perf_counter,
) -> Run:
    """Send ``requests`` (complete HTTP/1.1 requests, keep-alive) at ``rate`` per second,
    open loop, and wait (at most ``timeout_s`` after the last is due) for the answers.
    A request due while ``max_inflight`` are open is not sent (counted in ``not_sent``).
    Times come from ``clock`` (not the loop's clock: uvloop's counts whole milliseconds)."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("the load generator talks to loopback addresses only")
    run = Run()
    pool = _Pool(host, port, max_connections, run, clock)
    now = clock
    t0 = now() + 0.05
    run.first_due = t0
    n = len(requests)
    i = 0
    try:
        while i < n:
            t = now()
            while i < n and t0 + i / rate <= t:  # everything due by now goes out
                if pool.pending >= max_inflight:
                    run.not_sent += 1
                else:
                    pool.submit(i, t0 + i / rate, requests[i])
                i += 1
            if i < n:
                await asyncio.sleep(max(0.0, t0 + i / rate - now()))
        pool.sending_done = True
        if pool.pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pool.all_done.wait(), timeout_s)
    finally:
        pool.close()
    return run


def post(path: str, host: str, port: int, body: bytes, headers: dict[str, str]) -> bytes:
    """A complete keep-alive HTTP/1.1 POST."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def percentile_ms(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))] * 1000.0, 3)


def cpu_s() -> float:
    """This process's CPU time so far (s)."""
    return time.process_time()
