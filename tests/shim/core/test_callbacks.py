"""Callbacks (issue 14) with a real receiver on loopback: allowed destinations only
(literal and resolved addresses checked; loopback allowed here only by listing it), no
redirect followed, signed with HMAC-SHA256 over timestamp and body (checked with
``gpu_router.client.verify_callback``), retried with backoff, bounded."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from gpu_router.client import InvalidSignature, verify_callback
from gpu_router.shim.config import CallbacksSection
from gpu_router.shim.core.callback_targets import CallbackTargets, RefusedTarget
from gpu_router.shim.store import request_key

from ..app_helpers import H_ALICE, body, running, wait_state

pytestmark = pytest.mark.timeout(30)
SECRET = "callback-secret-0123456789"  # noqa: S105 - a test key
TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Receiver:
    """An HTTP server on 127.0.0.1 that records each POST and answers ``codes`` in turn
    (then 200); a 307 answer points at ``/elsewhere``."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = list(codes)
        self.seen: list[dict[str, Any]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["content-length"]))
                outer.seen.append(
                    {
                        "path": self.path,
                        "body": raw,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "at": time.monotonic(),
                    }
                )
                code = outer.codes.pop(0) if outer.codes else 200
                self.send_response(code)
                if code == 307:
                    self.send_header("location", f"http://127.0.0.1:{outer.port}/elsewhere")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


@contextmanager
def receiver(codes: list[int] | None = None) -> Iterator[Receiver]:
    r = Receiver(codes or [])
    r.thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


LISTED = {
    "callbacks": {"allowed_networks": ["127.0.0.1/32"], "signing_secret": SECRET},
    "dispatch": {"callback_backoff": 0.05, "callback_retries": 3},
}


async def state_of_callback(app: Any, rid: str, timeout: float = 5.0) -> str | None:
    svc = app.state.service
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = svc.requests.lookup(request_key("alice", rid))
        if rec is not None and rec.callback_state in ("delivered", "failed"):
            return rec.callback_state
        await asyncio.sleep(0.02)
    return None


def test_a_listed_loopback_receiver_gets_a_signed_callback_after_retries_with_backoff():
    with receiver([500, 503]) as rx:

        async def scenario() -> None:
            async with running(**LISTED) as (c, app, _fleet):
                r = await c.post(
                    "/api/v1/route",
                    json=body(request_id="cb-1", callback_url=rx.url),
                    headers={**H_ALICE, "traceparent": TP},
                )
                assert r.status_code == 200, r.text
                await wait_state(c, "cb-1", {"completed"}, H_ALICE)
                assert await state_of_callback(app, "cb-1") == "delivered"

        asyncio.run(scenario())
        assert len(rx.seen) == 3  # two failures, then delivered
        gaps = [b["at"] - a["at"] for a, b in zip(rx.seen, rx.seen[1:], strict=False)]
        assert 0.04 < gaps[0] < gaps[1]  # 0.05 s, then 0.1 s
        last = rx.seen[-1]
        event = verify_callback(SECRET, last["body"], last["headers"]["x-gpu-router-signature"])
        assert event["data"]["request_id"] == "cb-1" and event["data"]["status"] == "completed"
        assert last["headers"]["host"] == f"127.0.0.1:{rx.port}"
        assert last["headers"]["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
        with pytest.raises(InvalidSignature):
            verify_callback(SECRET, last["body"] + b" ", last["headers"]["x-gpu-router-signature"])
        with pytest.raises(InvalidSignature):
            verify_callback(
                "another-secret-0123456", last["body"], last["headers"]["x-gpu-router-signature"]
            )
        with pytest.raises(InvalidSignature):  # replayed an hour later
            verify_callback(
                SECRET,
                last["body"],
                last["headers"]["x-gpu-router-signature"],
                now=time.time() + 3600,
            )


def test_unlisted_private_loopback_and_link_local_destinations_are_refused_at_submission():
    async def scenario() -> None:
        async with running() as (c, app, _fleet):
            for url in (
                "http://127.0.0.1:9/x",
                "http://[::1]/x",
                "http://169.254.169.254/latest/meta-data",
                "http://10.0.0.1/x",
                "http://192.168.1.1/x",
                "http://[::ffff:127.0.0.1]/x",
                "ftp://example.com/x",
                "http://user:pw@example.com/x",
            ):
                r = await c.post("/api/v1/route", json=body(callback_url=url), headers=H_ALICE)
                assert r.status_code == 422, (url, r.text)
                assert r.json()["error"]["details"][0]["field"] == "callback_url"
            assert app.state.service.router.fleet_summary().queued == 0

    asyncio.run(scenario())


def test_a_name_that_resolves_to_loopback_is_refused_at_delivery_and_nothing_is_sent():
    with receiver() as rx:

        async def scenario() -> None:
            async with running(dispatch={"callback_backoff": 0.01}) as (c, app, _fleet):
                url = f"http://localhost:{rx.port}/hook"  # passes the static check
                r = await c.post(
                    "/api/v1/route", json=body(request_id="cb-2", callback_url=url), headers=H_ALICE
                )
                assert r.status_code == 200
                assert await state_of_callback(app, "cb-2") == "failed"

        asyncio.run(scenario())
        assert rx.seen == []


def test_a_redirect_is_not_followed():
    with receiver([307, 307, 307, 307]) as rx:

        async def scenario() -> None:
            async with running(**LISTED) as (c, app, _fleet):
                r = await c.post(
                    "/api/v1/route",
                    json=body(request_id="cb-3", callback_url=rx.url),
                    headers=H_ALICE,
                )
                assert r.status_code == 200
                assert await state_of_callback(app, "cb-3") == "failed"

        asyncio.run(scenario())
        assert [s["path"] for s in rx.seen] == ["/hook"] * 4  # retried, never /elsewhere


def test_the_allow_lists_of_schemes_and_hosts():
    t = CallbackTargets(
        CallbacksSection(
            allowed_schemes=["https"], allowed_hosts=["hooks.example.com", "*.corp.example"]
        )
    )
    assert t.refusal("https://hooks.example.com/x") is None
    assert t.refusal("https://a.corp.example/x") is None
    assert "scheme" in (t.refusal("http://hooks.example.com/x") or "")
    assert "allowed_hosts" in (t.refusal("https://evil.example/x") or "")
    assert "allowed_hosts" in (t.refusal("https://corp.example/x") or "")
    assert t.refusal("https://8.8.8.8/x") is None  # a public literal address

    async def resolved() -> None:
        with pytest.raises(RefusedTarget):  # decimal form of 127.0.0.1: resolved, then refused
            await CallbackTargets(CallbacksSection()).resolve("http://2130706433/x")
        wide = CallbacksSection(allowed_networks=["127.0.0.0/8", "::1/128"])
        target = await CallbackTargets(wide).resolve("http://localhost:8080/p?q=1")
        assert target.url in ("http://127.0.0.1:8080/p?q=1", "http://[::1]:8080/p?q=1")
        assert target.host_header == "localhost:8080"

    asyncio.run(resolved())
