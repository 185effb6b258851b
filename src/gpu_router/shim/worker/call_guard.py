"""The last check of a leader's worker calls: at the socket, just before each write.

``WorkerClient`` asks its guard (``Leadership.holds``: the lease term still on and
renewed in time) before each call. A call that passed that check and was then held up
(waiting for a pooled connection, connecting, or the whole process paused by SIGSTOP)
would otherwise be sent once it resumes, after the deadline. :func:`guarded_client` is an
``httpx.AsyncClient`` whose connections ask again before every write: the guard of the
call being written, which ``WorkerClient`` sets in :data:`CALL_GUARD` (a context
variable, so the task's own) around its request. Writes without one (callbacks, a
standby's forwards) are not checked. What is left: the few instructions between the
check and the socket's send.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx

#: the guard of the worker call the current task is making (None: not one)
CALL_GUARD: ContextVar[Callable[[], bool] | None] = ContextVar("worker_call_guard", default=None)


class LeaseLost(asyncio.CancelledError):
    """A call not made: this router's lease term is over (its guard said so). The task
    that asked ends as if cancelled: the service is being taken down."""


def refuse_unless_held(where: str) -> None:
    """Raise :class:`LeaseLost` if the current call's guard says no."""
    guard = CALL_GUARD.get()
    if guard is not None and not guard():
        raise LeaseLost(f"{where}: not sent, this router's lease term is over")


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        refuse_unless_held("worker call")
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _Stream(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_client(limits: httpx.Limits, **kwargs: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` (``kwargs`` as its own) whose every write asks
    :data:`CALL_GUARD` first."""
    transport = httpx.AsyncHTTPTransport(limits=limits)
    pool = transport._pool  # (httpx builds the pool; its network backend is wrapped)
    pool._network_backend = _Backend(pool._network_backend)  # type: ignore[union-attr]
    return httpx.AsyncClient(transport=transport, **kwargs)
