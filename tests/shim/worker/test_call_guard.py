"""The write-time check of a leader's worker calls (``shim.worker.call_guard``), on a
real loopback socket: a call that passed its guard's first look but whose guard says no
by the time its bytes would be written sends nothing (the case of a process paused
between the two), the task ends as if cancelled, and calls without a guard (callbacks,
forwards) on the same client are not checked."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gpu_router.shim.worker.call_guard import LeaseLost, guarded_client
from gpu_router.shim.worker.client import WorkerClient

pytestmark = pytest.mark.timeout(30)

BODY = b'{"job_id": "j1", "state": "running"}'
ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    + f"content-length: {len(BODY)}\r\n\r\n".encode()
    + BODY
)


async def serve(received: list[bytes]) -> tuple[asyncio.AbstractServer, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                received.append(head)
                writer.write(ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


def test_a_guard_that_turns_between_the_call_and_the_write_sends_nothing() -> None:
    received: list[bytes] = []
    looks: list[bool] = []

    def first_yes_then_no() -> bool:  # the call's look says yes, the write's says no
        looks.append(len(looks) == 0)
        return looks[-1]

    async def go() -> tuple[bool, int]:
        server, url = await serve(received)
        try:
            async with guarded_client(httpx.Limits(max_connections=4)) as http:
                held = WorkerClient(url, http, epoch=2, guard=lambda: True)
                assert (await held.status("j1"))["state"] == "running"  # written
                turned = WorkerClient(url, http, epoch=2, guard=first_yes_then_no)
                task = asyncio.ensure_future(turned.status("j1"))
                await asyncio.wait([task])
                with pytest.raises(LeaseLost):
                    await WorkerClient(url, http, guard=lambda: False).ack(["j1"])
                r = await http.get(f"{url}/anything")  # no guard: not checked
                assert r.status_code == 200
                result = task.cancelled(), len(looks)
            await asyncio.sleep(0.1)  # (the server's side of the connections closes)
            return result
        finally:
            server.close()
            await server.wait_closed()

    cancelled, n_looks = asyncio.run(go())
    assert cancelled and n_looks == 2  # the call's look, then the write's
    assert len(received) == 2  # the held call and the unguarded one only
    assert all(b"/jobs/j1" not in h or b"x-router-epoch: 2" in h for h in received)
    assert b"/anything" in received[1]
