"""Malformed HTTP against a real `gpu-router serve` on loopback, byte by byte over raw
sockets: with the server's default parser (httptools, the guarded protocol of
``shim.http.connections``) every refusal is the JSON error envelope with ``Connection:
close``; a trailing slash is a 404 in the envelope, never a redirect built from ``Host``.
The h11 fallback (only when httptools cannot be imported) answers the cases listed in
docs/security.md in uvicorn's plain text: a test pins that list so the document stays true.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
import yaml

from .procs import Proc, _env, free_port, router_config, start_router, wait_http

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

POST = b"POST /api/v1/route HTTP/1.1\r\nhost: x\r\n"
MALFORMED = {
    "request line": b"NOT HTTP AT ALL\r\n\r\n",
    "HTTP version": b"GET /health HTTP/9.9\r\nhost: x\r\n\r\n",
    "Content-Length letters": POST + b"content-length: abc\r\n\r\n",
    "Content-Length negative": POST + b"content-length: -5\r\n\r\n",
    "Content-Length twice": POST + b"content-length: 5\r\ncontent-length: 7\r\n\r\nhello",
    "Content-Length and chunked": POST
    + b"content-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    "Content-Length over 2**64": POST + b"content-length: 99999999999999999999999\r\n\r\n",
    "header without colon": b"GET /health HTTP/1.1\r\nhost: x\r\nno-colon-here\r\n\r\n",
    "space in header name": b"GET /health HTTP/1.1\r\nhost: x\r\nbad name: v\r\n\r\n",
    "NUL in path": b"GET /he\x00alth HTTP/1.1\r\nhost: x\r\n\r\n",
    "bare LF line ends": b"GET /health HTTP/1.1\nhost: x\n\n",
    "malformed chunk": POST + b"transfer-encoding: chunked\r\n\r\nzz\r\n",
    "oversized head": b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 70_000 + b"\r\n\r\n",
    "too many headers": b"GET /health HTTP/1.1\r\nhost: x\r\n"
    + b"".join(b"x-h%d: v\r\n" % i for i in range(200))
    + b"\r\n",
}
#: what the default (httptools) server answers: status, error code
GUARDED = {
    name: (431, "headers_too_large")
    if name == "oversized head"
    else (431, "too_many_headers")
    if name == "too many headers"
    else (400, "bad_request")
    for name in MALFORMED
}
#: what the h11 fallback answers: status and content type (docs/security.md)
H11 = {
    "request line": (400, "text/plain; charset=utf-8"),
    "HTTP version": (200, "application/json"),  # h11 takes any HTTP/1.x version
    "Content-Length letters": (400, "text/plain; charset=utf-8"),
    "Content-Length negative": (400, "text/plain; charset=utf-8"),
    "Content-Length twice": (400, "text/plain; charset=utf-8"),
    "Content-Length and chunked": (401, "application/json"),  # chunked wins (RFC 9112 6.3)
    "Content-Length over 2**64": (400, "text/plain; charset=utf-8"),
    "header without colon": (400, "text/plain; charset=utf-8"),
    "space in header name": (400, "text/plain; charset=utf-8"),
    "NUL in path": (400, "text/plain; charset=utf-8"),
    "bare LF line ends": (200, "application/json"),  # h11 accepts bare LF
    "malformed chunk": (400, "text/plain; charset=utf-8"),
    "oversized head": (200, "application/json"),  # 70 kB in one read: not "incomplete"
    "oversized head over reads": (400, "text/plain; charset=utf-8"),
    "too many headers": (200, "application/json"),  # h11 has no header count limit
}
LIMITS = {"max_header_bytes": 16_384, "max_headers": 100}


def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw``, read until the server closes (or 5 s): status, headers, body."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    data = b""
    with s, contextlib.suppress(ConnectionResetError, BrokenPipeError, TimeoutError):
        s.sendall(raw)
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.fixture(scope="module")
def guarded(tmp_path_factory) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp("guarded")
    proc, url = start_router(tmp, router_config(tmp, None, connections=LIMITS))
    yield int(url.rsplit(":", 1)[1])
    proc.stop()


@pytest.fixture(scope="module")
def h11_server(tmp_path_factory) -> Iterator[int]:
    """The same service with httptools made unimportable: uvicorn's h11 parser."""
    tmp = tmp_path_factory.mktemp("h11")
    (tmp / "config.yaml").write_text(yaml.safe_dump(router_config(tmp, None, connections=LIMITS)))
    port = free_port()
    code = "import sys; sys.modules['httptools'] = None; from gpu_router.cli import main; main()"
    args = ["serve", "--config", str(tmp / "config.yaml"), "--host", "127.0.0.1"]
    proc = Proc.__new__(Proc)  # Proc's stop() and log handling, another command line
    proc.args, proc.log_path = ["h11", *args], tmp / "router.log"
    proc.log = open(proc.log_path, "ab")  # noqa: SIM115 - closed in stop()
    proc.p = subprocess.Popen(
        [sys.executable, "-c", code, *args, "--port", str(port)],
        stdout=proc.log,
        stderr=subprocess.STDOUT,
        env=_env(),
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc=proc)
        yield port
    finally:
        proc.stop()


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_requests_answer_the_json_envelope(guarded, case):
    status, headers, body = exchange(guarded, MALFORMED[case])
    assert (status, headers["connection"]) == (GUARDED[case][0], "close")
    assert headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert doc["status"] == "error" and doc["error"]["code"] == GUARDED[case][1]
    assert doc["meta"] is None and doc["data"] is None


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /api/v1/gpus/ HTTP/1.1\r\nhost: evil.example\r\n\r\n",
        b"GET /health/ HTTP/1.1\r\nhost: evil.example\r\n\r\n",
        b"POST /api/v1/route/ HTTP/1.1\r\nhost: evil.example\r\ncontent-length: 0\r\n\r\n",
        b"GET /api/v1/requests/x/ HTTP/1.1\r\nhost: evil.example\r\n\r\n",
    ],
)
def test_a_trailing_slash_is_a_404_not_a_redirect_built_from_host(guarded, raw):
    status, headers, body = exchange(
        guarded, raw.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n")
    )
    assert status == 404 and "location" not in headers
    assert json.loads(body)["error"]["code"] == "not_found"
    assert b"evil.example" not in body


def test_the_h11_fallback_answers_as_documented(h11_server):
    """h11 bounds only a head still incomplete after a read (asyncio reads up to 256 KiB):
    a 2 MB one is refused, a 70 kB one that arrives whole is not."""
    big = b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 2_000_000 + b"\r\n\r\n"
    cases = {**MALFORMED, "oversized head over reads": big}
    seen = {}
    for case, raw in cases.items():
        status, headers, _ = exchange(h11_server, raw)
        seen[case] = (status, headers.get("content-type"))
    assert seen == H11
