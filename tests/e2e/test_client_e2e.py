"""gpu_router.client against a real `gpu-router serve --virtual-gpus 2` on loopback."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from gpu_router.client import (
    AsyncRouterClient,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    RetryPolicy,
    RouterClient,
    TransportError,
    Unauthorized,
    WaitTimeout,
)

from .client_server import start_virtual_router
from .procs import ADMIN, KEYS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
WORK = {"memory": 256, "expected_duration": 50}


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    proc, url = start_virtual_router(tmp_path_factory.mktemp("client"), gpus=2)
    yield url
    proc.stop()


def test_route_wait_result_and_reads(router):
    with RouterClient(router, KEYS["alice"]) as rc:
        ack = rc.route("alice", "m1", 3, request_id="c-1", resource_requirements=WORK)
        assert ack.request_id == "c-1" and ack.status in ("accepted", "queued")
        done = rc.wait("c-1", timeout=30)
        assert done.status == "completed" and done.terminal and done.user_id == "alice"
        assert rc.status("c-1").status == "completed"
        assert rc.result("c-1").status == "completed"
        q = rc.quota("alice")
        assert q.user_id == "alice" and "requests_per_minute" in q.rate_limits
        gl = rc.gpus()
        assert [g.gpu_id for g in gl.gpus] == ["gpu-0", "gpu-1"]
        assert rc.metrics().system["total_gpus"] == 2
        h = rc.health()
        assert h.ready and h.status == "healthy" and h.gpus_total == 2
        assert "# TYPE" in rc.prometheus()
        with pytest.raises(NotFound) as nf:
            rc.status("no-such-request")
        assert nf.value.status == 404 and nf.value.code == "not_found"
        with pytest.raises(Forbidden) as fb:
            rc.route("bob", "m1", 3)
        assert fb.value.status == 403 and "own user_id" in fb.value.message
        with pytest.raises(Conflict) as cf:
            rc.route("alice", "other-model", 3, request_id="c-1")
        assert cf.value.code == "conflict"


def test_cancel_and_wait_timeout(router):
    with RouterClient(router, KEYS["bob"]) as rc:
        rc.route(
            "bob", "m1", 1, request_id="c-long", resource_requirements={"expected_duration": 60_000}
        )
        with pytest.raises(WaitTimeout) as wt:
            rc.wait("c-long", timeout=0.3)
        assert wt.value.status is None and "still" in wt.value.message
        out = rc.cancel("c-long")
        assert out.cancelled and out.status == "cancelled"
        assert rc.wait("c-long", timeout=5).status == "cancelled"
        assert rc.cancel("c-long").cancelled is False


def test_wrong_key_is_unauthorized(router):
    with RouterClient(router, "not-a-key-0123456789") as rc, pytest.raises(Unauthorized) as ua:
        rc.gpus()
    assert ua.value.status == 401 and ua.value.code == "unauthorized"


def test_admin_calls(router):
    with RouterClient(router, ADMIN) as rc:
        m = rc.maintenance("gpu-1", "fan", minutes=5)
        assert (m.target, m.action, m.status) == ("gpu-1", "maintenance", "maintenance")
        assert {g.gpu_id: g.status for g in rc.gpus().gpus}["gpu-1"] == "maintenance"
        assert rc.restart("gpu-1").action == "restart"
        assert {g.gpu_id: g.status for g in rc.gpus().gpus}["gpu-1"] != "maintenance"
        q = rc.set_quota("carol", requests_per_day=777, concurrent_requests=50)
        assert q.rate_limits["requests_per_day"]["limit"] == 777
        assert q.quotas["concurrent_requests"]["limit"] == 50
        with RouterClient(router, KEYS["carol"]) as carol:
            carol.route(
                "carol",
                "m1",
                1,
                request_id="c-adm",
                resource_requirements={"expected_duration": 60_000},
            )
        out = rc.admin_cancel("c-adm", "test")
        assert out.cancelled
        with pytest.raises(NotFound):
            rc.maintenance("gpu-9")


def test_429_is_honoured(router):
    """30 requests a minute: a burst of 30, then one every 2 s. The 31st answers 429 with
    retry_after up to 2 s; the client waits it out and the retry is accepted."""
    with RouterClient(router, ADMIN) as admin:
        admin.set_quota("dave", requests_per_minute=30)
    seen = []
    with RouterClient(router, ADMIN, retry=RetryPolicy.none()) as rc:
        for i in range(30):
            rc.route("dave", "m1", 1, request_id=f"rl-{i}")
        with pytest.raises(RateLimited) as rl:
            rc.route("dave", "m1", 1, request_id="rl-refused")
        assert rl.value.status == 429 and rl.value.code == "rate_limited"
        assert 0 < rl.value.retry_after <= 2.5
    hook = lambda attempt, delay, err: seen.append((attempt, delay, err))  # noqa: E731
    with RouterClient(router, ADMIN, on_retry=hook) as rc:
        t = time.monotonic()
        ack = rc.route("dave", "m1", 1, request_id="rl-30")
        took = time.monotonic() - t
    assert ack.request_id == "rl-30"
    assert seen and all(isinstance(e, RateLimited) for _, _, e in seen)
    assert took >= seen[0][1] - 0.05


class DropFirstPostAnswer(httpx.HTTPTransport):
    """Sends every request; the first POST's answer is read and then lost (ReadError),
    as when a connection breaks after the router has answered."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        resp = super().handle_request(request)
        if request.method == "POST" and not self.dropped:
            self.dropped += 1
            resp.read()
            resp.close()
            raise httpx.ReadError("answer lost", request=request)
        return resp


def test_idempotent_resubmission_after_a_lost_answer(router):
    transport = DropFirstPostAnswer()
    seen = []
    with RouterClient(router, ADMIN) as admin:
        before = admin.metrics().users.get("alice", {}).get("total_requests", 0)
    hook = lambda attempt, delay, err: seen.append(err)  # noqa: E731
    with RouterClient(router, KEYS["alice"], transport=transport, on_retry=hook) as rc:
        ack = rc.route("alice", "m1", 2, request_id="idem-1", resource_requirements=WORK)
        assert transport.dropped == 1 and len(seen) == 1 and isinstance(seen[0], TransportError)
        assert ack.request_id == "idem-1" and "original answer" in ack.message
        assert rc.wait("idem-1", timeout=30).status == "completed"
    with RouterClient(router, ADMIN) as admin:
        after = admin.metrics().users["alice"]["total_requests"]
    assert after == before + 1  # sent twice, made once


def test_transport_error_without_server_is_raised_after_retries():
    seen = []
    policy = RetryPolicy(transport_retries=2, backoff_s=0.01)
    hook = lambda attempt, delay, err: seen.append(attempt)  # noqa: E731
    rc = RouterClient("http://127.0.0.1:9", "k" * 20, retry=policy, on_retry=hook)
    with rc, pytest.raises(TransportError) as te:
        rc.gpus()
    assert te.value.status is None and seen == [1, 2]


def test_async_client(router):
    async def go():
        async with AsyncRouterClient(router, KEYS["bob"]) as rc:
            ack = await rc.route("bob", "m2", 4, request_id="a-1", resource_requirements=WORK)
            again = await rc.route("bob", "m2", 4, request_id="a-1", resource_requirements=WORK)
            assert again.request_id == ack.request_id and "original answer" in again.message
            done = await rc.wait("a-1", timeout=30)
            assert done.status == "completed"
            assert (await rc.health()).ready
            with pytest.raises(Forbidden):
                await rc.set_quota("bob", requests_per_day=1)

    asyncio.run(go())
