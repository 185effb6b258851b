"""Worker API authentication (issue 14): a worker with a token answers 401 to every job
call without it; the router's WorkerClient sends it; `gpu-router worker --token-file`
and $GPU_ROUTER_WORKER_TOKEN set it; a real router and worker on loopback agree on it."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpu_router.shim.gpu_sources.base import JobRefused
from gpu_router.shim.worker.client import WorkerClient
from gpu_router.shim.worker.device import DeviceInfo
from gpu_router.shim.worker.jobs import Worker
from gpu_router.shim.worker.server import create_app

from ...e2e.procs import ALICE, hdr, router_config, start_router, wait_terminal
from .worker_proc import worker_process

pytestmark = pytest.mark.timeout(60)
TOKEN = "worker-token-0123456789abcdef"  # noqa: S105 - a test token
CPU = DeviceInfo("cpu", 0, "test-cpu")


@contextlib.asynccontextmanager
async def in_process(token: str | None) -> Any:
    app = create_app(Worker(CPU, max_jobs=2), token)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://w") as client:
            yield client


def test_every_job_call_needs_the_token_and_health_does_not() -> None:
    async def go() -> None:
        async with in_process(TOKEN) as c:
            job = {"request_id": "r1", "expected_duration_ms": 1}
            for method, path, body in (
                ("POST", "/jobs", job),
                ("GET", "/jobs", None),
                ("POST", "/jobs/ack", {"job_ids": []}),
                ("GET", "/jobs/x", None),
                ("DELETE", "/jobs/x", None),
            ):
                for auth in ({}, {"authorization": "Bearer wrong-token-0123456789"}):
                    r = await c.request(method, path, json=body, headers=auth)
                    assert r.status_code == 401, (method, path, auth)
                    assert r.headers["www-authenticate"] == "Bearer"
            assert (await c.get("/health")).status_code == 200
            good = WorkerClient("http://w", c, token=TOKEN)
            job_id = await good.submit("r1", None, 1.0, 0.0)
            assert (await good.status(job_id))["job_id"] == job_id
            with pytest.raises(JobRefused) as err:
                await WorkerClient("http://w", c).status(job_id)
            assert err.value.status == 401

    asyncio.run(go())


def test_a_worker_without_a_token_accepts_calls_as_before() -> None:
    async def go() -> None:
        async with in_process(None) as c:
            r = await c.post("/jobs", json={"request_id": "r", "expected_duration_ms": 1})
            assert r.status_code == 202

    asyncio.run(go())


def test_worker_cli_token_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "token"
    f.write_text(TOKEN + "\n")
    with worker_process("--token-file", str(f)) as url:
        assert httpx.get(f"{url}/jobs").status_code == 401
        assert httpx.get(f"{url}/jobs", headers=hdr(TOKEN)).status_code == 200
    monkeypatch.setenv("GPU_ROUTER_WORKER_TOKEN", TOKEN)
    with worker_process() as url:
        assert httpx.get(f"{url}/jobs").status_code == 401
        assert httpx.get(f"{url}/jobs", headers=hdr(TOKEN)).status_code == 200


def test_a_real_router_with_the_token_runs_work_on_a_real_worker(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text(TOKEN)
    with worker_process("--token-file", str(f)) as url:
        worker_port = int(url.rsplit(":", 1)[1])
        cfg = router_config(tmp_path, [worker_port], worker_auth={"token_file": str(f)})
        proc, router = start_router(tmp_path, cfg)
        try:
            with httpx.Client(base_url=router, timeout=10) as c:
                body = {"request_id": "w-1", "user_id": "alice", "model_id": "m", "priority": 3}
                body["resource_requirements"] = {"expected_duration": 20}
                assert c.post("/api/v1/route", json=body, headers=hdr(ALICE)).status_code == 200
                done = wait_terminal(c, ["w-1"], hdr(ALICE), timeout=20)
                assert done["w-1"]["status"] == "completed"
        finally:
            proc.stop()
