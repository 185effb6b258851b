"""Connection limits against a real `gpu-router serve` on loopback (issue 14): a huge
header is cut off at once, idle and slow connections are closed, one address is capped,
and every refusal is the JSON envelope. Attackers connect from 127.0.0.2 and 127.0.0.3,
/health is probed from 127.0.0.1 (the per-address cap must not hit the probe)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from .procs import ALICE, router_config, start_router

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

LIMITS = {
    "max_header_bytes": 16_384,
    "max_headers": 50,
    "header_timeout_s": 1.0,
    "body_timeout_s": 1.0,
    "idle_timeout_s": 1.0,
    "max_connections": 1_000,
    "max_connections_per_client": 300,
}


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("limits")
    proc, url = start_router(tmp, router_config(tmp, None, connections=LIMITS))
    yield url
    proc.stop()


@pytest.fixture(scope="module")
def patient_router(tmp_path_factory):
    """The same limits with a 30 s idle timeout: the cap test holds idle connections."""
    tmp = tmp_path_factory.mktemp("patient")
    limits = {**LIMITS, "idle_timeout_s": 30.0, "header_timeout_s": 30.0}
    proc, url = start_router(tmp, router_config(tmp, None, connections=limits))
    yield url
    proc.stop()


def connect(url: str, source: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(10)
    s.connect((host, int(port)))
    return s


def read_answer(s: socket.socket) -> tuple[int, dict[str, str], dict]:
    """Status, headers and JSON body of the one answer before the server closes (the
    socket is closed then)."""
    data = b""
    with s, contextlib.suppress(ConnectionResetError):
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def read_kept_answer(s: socket.socket) -> bytes:
    """One whole answer on a connection kept open (head, then Content-Length bytes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += s.recv(65536)
    return head


def until(check: Callable[[], object], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "not within the timeout"
        time.sleep(0.02)


def health_probe(url: str, stop: threading.Event, out: list[float]) -> None:
    with httpx.Client(base_url=url, timeout=5.0) as c:
        while not stop.is_set():
            t = time.monotonic()
            r = c.get("/health")
            out.append(time.monotonic() - t if r.status_code == 200 else float("inf"))
            time.sleep(0.02)


def test_a_200_mb_header_is_cut_off_fast_while_health_answers(router):
    stop, lat = threading.Event(), []
    probe = threading.Thread(target=health_probe, args=(router, stop, lat))
    probe.start()
    try:
        until(lambda: lat)  # the probe answers before the attack starts
        s = connect(router, "127.0.0.2")
        s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: ")
        chunk, sent, t0 = b"a" * 65536, 0, time.monotonic()
        try:
            while sent < 200 << 20:
                s.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        cut_after = time.monotonic() - t0
        s.close()
        seen = len(lat)
        until(lambda: len(lat) > seen + 2)  # and goes on answering after the cut
    finally:
        stop.set()
        probe.join()
    assert sent < 8 << 20, f"{sent} bytes were taken before the cut"
    assert cut_after < 3.0
    assert lat and max(lat) < 1.0, lat


def test_an_oversized_head_and_too_many_headers_answer_431_in_the_envelope(router):
    s = connect(router, "127.0.0.2")
    s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 17_000 + b"\r\n\r\n")
    status, headers, body = read_answer(s)
    assert status == 431 and headers["connection"] == "close"
    assert body["status"] == "error" and body["error"]["code"] == "headers_too_large"
    s = connect(router, "127.0.0.2")
    many = b"".join(b"x-h%d: v\r\n" % i for i in range(60))
    s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n" + many + b"\r\n")
    status, _, body = read_answer(s)
    assert status == 431 and body["error"]["code"] == "too_many_headers"


def test_uvicorns_plain_400_is_the_envelope(router):
    s = connect(router, "127.0.0.2")
    s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
    status, headers, body = read_answer(s)
    assert status == 400 and headers["content-type"] == "application/json"
    assert body["error"]["code"] == "bad_request"


def test_a_header_trickle_answers_408_after_the_header_deadline(router):
    s = connect(router, "127.0.0.2")
    t0 = time.monotonic()
    s.sendall(b"GET /health HTTP/1.1\r\n")
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        for _ in range(30):  # one byte each 0.1 s: never a whole head within 1 s
            s.sendall(b"x")
            time.sleep(0.1)
    status, _, body = read_answer(s)
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert time.monotonic() - t0 < 2.5


def test_a_body_trickle_answers_408_after_the_body_deadline(router):
    s = connect(router, "127.0.0.2")
    s.sendall(
        b"POST /api/v1/route HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"authorization: Bearer " + ALICE.encode() + b"\r\ncontent-length: 100\r\n\r\n{"
    )
    t0 = time.monotonic()
    status, _, body = read_answer(s)
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert 0.9 < time.monotonic() - t0 < 2.5


def test_idle_connections_are_closed_after_the_idle_timeout_and_health_answers(router):
    idle = [connect(router, "127.0.0.2") for _ in range(250)]
    kept = connect(router, "127.0.0.2")  # one request, then idle on keep-alive
    try:
        with httpx.Client(base_url=router, timeout=2.0) as c:
            assert c.get("/health").status_code == 200
        kept.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        assert read_kept_answer(kept).startswith(b"HTTP/1.1 200")
        t0 = time.monotonic()
        for s in [*idle, kept]:
            s.settimeout(5)
            assert s.recv(1) == b""  # closed by the router
        assert time.monotonic() - t0 < 3.0  # idle_timeout_s is 1 s
    finally:
        for s in [*idle, kept]:
            s.close()


def test_connections_over_the_per_address_cap_answer_503_and_others_are_served(
    patient_router,
):
    router = patient_router
    held = [connect(router, "127.0.0.3") for _ in range(300)]
    time.sleep(0.2)
    extra = connect(router, "127.0.0.3")
    extra.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
    status, headers, body = read_answer(extra)
    assert status == 503 and headers["retry-after"] == "1"
    assert body["error"]["code"] == "too_many_connections"
    try:
        with httpx.Client(base_url=router, timeout=2.0) as c:  # another address is served
            assert c.get("/health").status_code == 200
        held[0].sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")  # the held ones too
        assert read_kept_answer(held[0]).startswith(b"HTTP/1.1 200")
    finally:
        for s in held:
            s.close()
