"""benchmarks/open_loop.py: the load generator's open-loop accounting, on loopback."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import open_loop

pytestmark = pytest.mark.timeout(30)


async def _server(stall_first_s: float) -> tuple[asyncio.Server, int, list[bytes]]:
    """An HTTP/1.1 server that answers 200 with a small body; the very first answer is
    held back ``stall_first_s``."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                seen.append(await reader.readexactly(length))
                if len(seen) == 1:
                    await asyncio.sleep(stall_first_s)
                body = b'{"ok":true}'
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed the connection
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], seen


def test_latency_counts_from_the_due_time_so_a_stall_is_not_hidden():
    async def scenario() -> open_loop.Run:
        server, port, seen = await _server(stall_first_s=0.3)
        reqs = [open_loop.post("/x", "127.0.0.1", port, b'{"i":%d}' % i, {}) for i in range(40)]
        async with server:
            run = await open_loop.open_loop("127.0.0.1", port, reqs, 50, max_connections=1)
        assert sorted(seen) == sorted(b'{"i":%d}' % i for i in range(40))
        return run

    run = asyncio.run(scenario())
    assert run.status == [200] * 40 and run.not_sent == 0
    by_index = dict(zip(run.index, run.latency_s, strict=True))
    # latency runs from when each was due (t0 + i / 50), not from when it went out: the
    # due time plus the latency is the moment its answer was read, so these moments grow
    # in answer order (one connection) and the last one is the run's last answer
    due = [run.first_due + i / 50 for i in run.index]
    read_at = [d + lat for d, lat in zip(due, run.latency_s, strict=True)]
    assert run.index == list(range(40)) and read_at == sorted(read_at)
    assert read_at[-1] == pytest.approx(run.last_done, abs=1e-9)
    # one connection: requests due during the 0.3 s stall waited behind it (a closed-loop
    # client would report ~0 for them); none is answered before the stall ends
    assert by_index[0] >= 0.3
    assert by_index[5] > 0.15  # due at +0.1 s, answered after +0.3 s
    # due at +0.78 s, long after the backlog (the 15 due during the stall) had drained:
    # its latency is its own answer's, less than one that waited out the stall (a bound
    # in seconds would hang on how fast this machine drains the backlog)
    assert by_index[39] < by_index[5]


def test_answers_on_many_connections_and_counts_transport_errors():
    async def scenario() -> open_loop.Run:
        server, port, _ = await _server(stall_first_s=0.0)
        reqs = [open_loop.post("/x", "127.0.0.1", port, b"{}", {}) for _ in range(50)]
        async with server:
            run = await open_loop.open_loop("127.0.0.1", port, reqs, 1000, max_connections=8)
        server.close()
        await server.wait_closed()
        refused = await open_loop.open_loop("127.0.0.1", port, reqs[:3], 1000)
        assert refused.status == [None, None, None]
        return run

    run = asyncio.run(scenario())
    assert run.status == [200] * 50 and len(set(run.index)) == 50


def test_refuses_a_host_other_than_loopback():
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(open_loop.open_loop("10.0.0.1", 80, [b""], 1.0))
