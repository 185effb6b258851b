"""The GPU Monitoring Service client against a real Starlette fake service on loopback."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gpu_router.policy.types import GpuStatus
from gpu_router.shim.gpu_sources.base import GpuSource, SourceUnavailable, WorkerUnavailable
from gpu_router.shim.gpu_sources.monitoring import MonitoringSource, parse_cc, parse_gpu

pytestmark = pytest.mark.timeout(30)

SEED_ITEM = {  # design 6.3.3
    "gpu_id": "gpu-a",
    "name": "NVIDIA H100 80GB HBM3",
    "compute_capability": "9.0",
    "status": "active",
    "memory": {"total": 81559, "used": 480, "free": 81079},
    "utilization": {"gpu": 37.5, "memory": 12.0},
    "temperature": 52.0,
    "power": {"usage": 310.5, "limit": 700.0},
    "performance_index": 0.8,
    "error_rate": 0.01,
    "active_requests": 1,
    "queued_requests": 0,
    "uptime": 3600,
    "health_status": "healthy",
    "worker_url": "http://10.0.0.1:9000/",
}
FLAT_ITEM = {  # design 4.1 select_gpu's state
    "id": "gpu-b",
    "compute_capability": "8.0",
    "memory_total": 42949672960,  # bytes
    "memory_used": 1073741824,
    "utilization_percent": 80,
    "temperature": 61,
    "power_usage": 250,
    "power_limit": 400,
    "capabilities": ["inference"],
}


class FakeMonitoring:
    """A tiny Monitoring Service whose answers the test changes."""

    def __init__(self) -> None:
        self.gpus: list[Any] = [SEED_ITEM, FLAT_ITEM]
        self.health: dict[str, Any] = {}
        self.envelope = False
        self.fail = False
        self.hits: dict[str, int] = {}

    def app(self) -> Starlette:
        async def gpus(request: Request) -> JSONResponse:
            self.hits["/gpus"] = self.hits.get("/gpus", 0) + 1
            if self.fail:
                return JSONResponse({"error": "down"}, status_code=503)
            body: Any = {"gpus": self.gpus}
            if self.envelope:
                body = {"status": "success", "data": body, "error": None, "meta": {}}
            return JSONResponse(body)

        async def health(request: Request) -> JSONResponse:
            gid = request.path_params["gpu_id"]
            self.hits[gid] = self.hits.get(gid, 0) + 1
            if gid not in self.health:
                return JSONResponse({"error": "not found"}, status_code=404)
            return JSONResponse(self.health[gid])

        return Starlette(routes=[Route("/gpus", gpus), Route("/gpus/{gpu_id}/health", health)])


@pytest.fixture
def service() -> Iterator[tuple[FakeMonitoring, str]]:
    fake = FakeMonitoring()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(fake.app(), log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield fake, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    sock.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_both_item_shapes_map_to_gpu_state(service) -> None:
    _fake, url = service

    async def go() -> list:
        src = MonitoringSource(url, clock=lambda: 7.0, period_s=1.0)
        assert isinstance(src, GpuSource)
        try:
            return await src.sample(), src.worker_url("gpu-a"), src.worker_url("gpu-b")
        finally:
            await src.aclose()

    (a, b), url_a, url_b = run(go())
    assert a.gpu_id == "gpu-a" and a.name == "NVIDIA H100 80GB HBM3"
    assert a.compute_capability == (9, 0)
    assert (a.memory_total_mb, a.memory_used_mb) == (81559.0, 480.0)
    assert (a.utilization_pct, a.temperature_c) == (37.5, 52.0)
    assert (a.power_w, a.power_limit_w) == (310.5, 700.0)
    assert (a.performance_index, a.error_rate) == (0.8, 0.01)
    assert a.status is GpuStatus.ACTIVE and a.sampled_at == 7.0
    assert b.compute_capability == (8, 0)
    assert (b.memory_total_mb, b.memory_used_mb) == (40960.0, 1024.0)  # bytes -> MB
    assert (b.utilization_pct, b.power_w, b.power_limit_w) == (80.0, 250.0, 400.0)
    assert b.capabilities == frozenset({"inference"})
    assert url_a == "http://10.0.0.1:9000" and url_b is None


def test_envelope_health_critical_and_gone_gpu(service) -> None:
    fake, url = service
    fake.envelope = True
    fake.health = {
        "gpu-a": {"status": "success", "data": {"health_status": "critical"}, "meta": {}},
        "gpu-b": {"health_status": "warning"},
    }

    async def go() -> tuple:
        src = MonitoringSource(url, health_period_s=3600, worker_urls={"gpu-b": "http://w:1"})
        try:
            first = {g.gpu_id: g for g in await src.sample()}
            sig1 = src.drain_signals()
            fake.gpus = [SEED_ITEM]
            second = {g.gpu_id: g for g in await src.sample()}
            fake.health = {}
            src.clear("gpu-a")  # an admin restart: health is fetched again at once
            third = {g.gpu_id: g for g in await src.sample()}
            assert third["gpu-a"].status is GpuStatus.ACTIVE
            return first, sig1, second, src.worker_url("gpu-b")
        finally:
            await src.aclose()

    first, sig1, second, url_b = run(go())
    assert first["gpu-a"].status is GpuStatus.ERROR and first["gpu-a"].error_rate == 1.0
    assert first["gpu-b"].status is GpuStatus.ACTIVE
    assert {(s.gpu_id, s.kind, s.hard) for s in sig1} == {
        ("gpu-a", "health_critical", True),
        ("gpu-b", "health_warning", False),
    }
    assert second["gpu-a"].status is GpuStatus.ERROR  # health kept between fetches
    assert second["gpu-b"].status is GpuStatus.INACTIVE  # left the list
    assert fake.hits["gpu-a"] == 2  # once per health period, and again after clear
    assert url_b == "http://w:1"


def test_bad_items_are_skipped_not_fatal(service) -> None:
    fake, url = service
    fake.gpus = [
        SEED_ITEM,
        {"gpu_id": "x", "temperature": "hot"},
        42,
        {"name": "no id"},
        {"gpu_id": "y", "memory": {"total": -5}},
    ]

    async def go() -> tuple:
        src = MonitoringSource(url)
        try:
            return await src.sample(), src.skipped
        finally:
            await src.aclose()

    states, skipped = run(go())
    assert [g.gpu_id for g in states] == ["gpu-a"]
    assert skipped == 4


def test_outage_returns_stale_snapshots_and_signals_once(service) -> None:
    fake, url = service

    async def go() -> tuple:
        t = iter([1.0, 2.0, 3.0, 4.0])
        src = MonitoringSource(url, clock=lambda: next(t))
        try:
            await src.sample()
            fake.fail = True
            stale1 = await src.sample()
            stale2 = await src.sample()
            sigs = src.drain_signals()
            fake.fail = False
            fresh = await src.sample()
            return stale1, stale2, sigs, fresh
        finally:
            await src.aclose()

    stale1, stale2, sigs, fresh = run(go())
    assert [g.sampled_at for g in stale1] == [1.0, 1.0] == [g.sampled_at for g in stale2]
    assert {(s.gpu_id, s.kind, s.hard) for s in sigs} == {
        ("gpu-a", "monitor_unreachable", False),
        ("gpu-b", "monitor_unreachable", False),
    }
    assert [g.sampled_at for g in fresh] == [4.0, 4.0]


def test_never_reachable_is_source_unavailable() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there

    async def go() -> None:
        src = MonitoringSource(f"http://127.0.0.1:{port}", timeout_s=1.0)
        try:
            await src.sample()
        finally:
            await src.aclose()

    with pytest.raises(SourceUnavailable, match="Monitoring Service"):
        run(go())
    with pytest.raises(SourceUnavailable, match="http"):
        MonitoringSource("ftp://x")
    with pytest.raises(WorkerUnavailable):
        MonitoringSource("http://x").virtual_worker("gpu-a")


def test_parsers() -> None:
    assert parse_cc("8.6") == (8, 6) and parse_cc([7, 5]) == (7, 5)
    assert parse_cc({"major": 9, "minor": 0}) == (9, 0) and parse_cc(9) == (9, 0)
    with pytest.raises(ValueError, match="not a version"):
        parse_cc("sm_90")
    state, extras = parse_gpu(
        {
            "gpu_id": 3,
            "status": "bogus",
            "health_status": "critical",
            "utilization": 140,
            "memory": {"total": 100, "free": 40},
        },
        0.0,
    )
    assert state.gpu_id == "3" and state.status is GpuStatus.INACTIVE
    assert state.utilization_pct == 100.0 and state.memory_used_mb == 60.0
    assert extras["health"] == "critical"
    _, extras = parse_gpu({"gpu_id": "z"}, 0.0)
    assert extras == {"worker_url": None, "health": None}
