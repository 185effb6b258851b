"""gpu_router.client against scripted answers (httpx.MockTransport): envelope, errors,
retry rules. The real-server tests are tests/e2e/test_client_e2e.py."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from gpu_router.client import (
    AsyncRouterClient,
    BadRequest,
    RateLimited,
    RetryPolicy,
    RouterClient,
    ServerError,
    TransportError,
    Unavailable,
)


def env_ok(data):
    return {"status": "success", "data": data, "error": None, "meta": None}


def env_err(code, message, retry_after=None, data=None):
    err = {"code": code, "message": message}
    if retry_after is not None:
        err["retry_after"] = retry_after
    return {"status": "error", "data": data, "error": err, "meta": None}


ACK = {"request_id": "r1", "status": "accepted", "assigned_gpu": "gpu-0", "message": "ok"}


class Script:
    """Answers in order; records each request (method, path, body)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.seen = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.seen.append((request.method, request.url.path, body, request.headers))
        a = self.answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a


def client(script, **kw):
    sleeps = []
    rc = RouterClient(
        "http://router",
        "key-0123456789abcdef",
        transport=httpx.MockTransport(script),
        sleep=sleeps.append,
        **kw,
    )
    return rc, sleeps


def test_unwraps_envelope_and_sends_bearer_key():
    s = Script(httpx.Response(200, json=env_ok({**ACK, "future_field": 1})))
    rc, _ = client(s)
    ack = rc.route("alice", "m", 3, request_id="r1", payload={"x": 1})
    assert ack.assigned_gpu == "gpu-0" and ack.raw["future_field"] == 1
    method, path, body, headers = s.seen[0]
    assert (method, path) == ("POST", "/api/v1/route")
    assert body == {
        "request_id": "r1",
        "user_id": "alice",
        "model_id": "m",
        "priority": 3,
        "type": "inference",
        "payload": {"x": 1},
    }
    assert headers["authorization"] == "Bearer key-0123456789abcdef"


def test_generated_request_id_is_kept_across_retries():
    s = Script(httpx.ConnectError("refused"), httpx.Response(200, json=env_ok(ACK)))
    rc, sleeps = client(s)
    rc.route("alice", "m", 3)
    first, second = s.seen[0][2], s.seen[1][2]
    assert first == second and len(first["request_id"]) == 36
    assert sleeps == [0.2]


def test_429_retried_after_its_retry_after():
    s = Script(
        httpx.Response(
            429, json=env_err("rate_limited", "slow down", 0.4), headers={"retry-after": "1"}
        ),
        httpx.Response(200, json=env_ok(ACK)),
    )
    rc, sleeps = client(s)
    assert rc.route("alice", "m", 3).status == "accepted"
    assert sleeps == [pytest.approx(0.45)]


def test_retry_after_header_alone_is_used():
    s = Script(
        httpx.Response(503, json=env_err("no_capacity", "none now"), headers={"retry-after": "2"}),
        httpx.Response(200, json=env_ok(ACK)),
    )
    rc, sleeps = client(s)
    rc.route("alice", "m", 3)
    assert sleeps == [pytest.approx(2.05)]


def test_retries_are_bounded():
    answers = [httpx.Response(429, json=env_err("queue_full", "full", 1.0)) for _ in range(3)]
    rc, sleeps = client(Script(*answers), retry=RetryPolicy(max_retries=2))
    with pytest.raises(RateLimited) as exc:
        rc.route("alice", "m", 3)
    assert len(sleeps) == 2
    assert (exc.value.status, exc.value.code, exc.value.retry_after) == (429, "queue_full", 1.0)
    assert str(exc.value) == "HTTP 429 queue_full: full"


def test_long_retry_after_is_raised_not_waited():
    s = Script(httpx.Response(429, json=env_err("quota_exceeded", "day used", 3600.0)))
    rc, sleeps = client(s)
    with pytest.raises(RateLimited):
        rc.route("alice", "m", 3)
    assert sleeps == []


def test_incompatible_503_is_not_retried():
    data = {"request_id": "r1", "status": "rejected", "message": "no GPU has 1 TB"}
    s = Script(httpx.Response(503, json=env_err("incompatible", "no GPU has 1 TB", data=data)))
    rc, sleeps = client(s)
    with pytest.raises(Unavailable) as exc:
        rc.route("alice", "m", 3)
    assert sleeps == [] and exc.value.code == "incompatible"
    assert exc.value.retry_after is None and exc.value.data["status"] == "rejected"


def test_422_details_and_no_retry():
    err = env_err("invalid_request", "bad body")
    err["error"]["details"] = [{"field": "priority", "reason": "too big"}]
    rc, sleeps = client(Script(httpx.Response(422, json=err)))
    with pytest.raises(BadRequest) as exc:
        rc.route("alice", "m", 9)
    assert exc.value.details == [{"field": "priority", "reason": "too big"}] and sleeps == []


def test_answer_that_is_not_an_envelope():
    rc, _ = client(Script(httpx.Response(502, text="<html>bad gateway</html>")))
    with pytest.raises(ServerError) as exc:
        rc.gpus()
    assert exc.value.status == 502 and "bad gateway" in exc.value.message


def test_transport_errors_exhausted():
    s = Script(*(httpx.ReadTimeout("slow") for _ in range(3)))
    rc, sleeps = client(s, retry=RetryPolicy(transport_retries=2, backoff_s=0.1))
    with pytest.raises(TransportError) as exc:
        rc.status("r1")
    assert sleeps == [0.1, 0.2] and exc.value.status is None and "ReadTimeout" in exc.value.message


def test_health_not_ready_is_an_answer():
    data = {
        "status": "unhealthy",
        "live": True,
        "ready": False,
        "version": "1",
        "gpus_total": 2,
        "gpus_active": 0,
        "queued_requests": 0,
        "active_requests": 0,
        "uptime": 1.0,
        "reason": "no GPU in service",
    }
    rc, _ = client(Script(httpx.Response(503, json=env_err("not_ready", "no GPU", data=data))))
    h = rc.health()
    assert not h.ready and h.reason == "no GPU in service"


def test_set_quota_keywords():
    q = {"user_id": "u", "quotas": {}, "rate_limits": {}}
    s = Script(httpx.Response(200, json=env_ok(q)))
    rc, _ = client(s)
    rc.set_quota("u", requests_per_minute=5, gpu_time_minutes=None)
    assert s.seen[0][:3] == ("PUT", "/api/v1/admin/user/u/quota", {"requests_per_minute_limit": 5})
    with pytest.raises(TypeError):
        rc.set_quota("u", rpm=5)
    with pytest.raises(ValueError, match="at least one limit"):
        rc.set_quota("u")


def test_async_client_retries_the_same_way():
    s = Script(
        httpx.Response(429, json=env_err("rate_limited", "slow down", 0.2)),
        httpx.ConnectError("refused"),
        httpx.Response(200, json=env_ok(ACK)),
    )
    sleeps = []

    async def fake_sleep(d):
        sleeps.append(d)

    async def go():
        async with AsyncRouterClient(
            "http://router", "k" * 20, transport=httpx.MockTransport(s), sleep=fake_sleep
        ) as rc:
            return await rc.route("alice", "m", 3, request_id="r1")

    assert asyncio.run(go()).request_id == "r1"
    assert sleeps == [pytest.approx(0.25), 0.2]
    assert s.seen[0][2] == s.seen[2][2]
