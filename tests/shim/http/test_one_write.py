"""An answer in one socket write: the held writes, the fallback, and the uvicorn internals
it relies on (checked against the installed uvicorn, both HTTP protocols)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.responses import Response

from gpu_router.shim.http.one_write import send_in_one_write

SCOPE = {"type": "http", "method": "POST", "path": "/"}


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed_after = -1

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed_after = len(self.writes)

    def is_closing(self) -> bool:
        return self.closed_after >= 0


class Cycle:
    """Writes like uvicorn's cycles: the head at response.start, the body after."""

    def __init__(self, keep_alive: bool = True) -> None:
        self.transport: Any = Transport()
        self.keep_alive = keep_alive

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.transport.write(b"HTTP/1.1 %d\r\n\r\n" % message["status"])
        else:
            self.transport.write(message["body"])
            if not self.keep_alive:
                self.transport.close()


def test_head_and_body_go_out_in_one_write_and_a_close_after_it():
    cycle = Cycle(keep_alive=False)
    real = cycle.transport
    asyncio.run(send_in_one_write(Response(b'{"a":1}', 201), SCOPE, None, cycle.send))
    assert real.writes == [b'HTTP/1.1 201\r\n\r\n{"a":1}']
    assert real.closed_after == 1  # closed once the answer was written, not before
    assert cycle.transport is real


def test_a_send_that_is_not_a_cycle_gets_the_usual_messages():
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    asyncio.run(send_in_one_write(Response(b"{}", 200), SCOPE, None, send))
    assert [m["type"] for m in messages] == ["http.response.start", "http.response.body"]


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_uvicorn_sends_through_a_cycle_with_a_transport(http):
    """The optimisation rests on uvicorn's ASGI send being a method of an object with a
    ``transport``: if an upgrade changes that, this fails (the answers would still be
    right, in two writes)."""
    seen: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        transport = getattr(getattr(send, "__self__", None), "transport", None)
        seen.append(callable(getattr(transport, "write", None)))
        await send_in_one_write(Response(b'{"ok":true}', 200), scope, receive, send)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, http=http, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            for _ in range(3):  # keep-alive: the connection goes on after each answer
                r = client.post("/", content=b"{}")
                assert r.status_code == 200 and r.json() == {"ok": True}
        assert seen == [True, True, True]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
