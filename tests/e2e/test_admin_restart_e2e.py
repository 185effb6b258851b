"""Admin ``restart`` restarts the GPU's worker through the worker API: a real router and a
real reference worker on loopback."""

from __future__ import annotations

import time

import httpx
import pytest

from .procs import ADMIN, ALICE, free_port, hdr, router_config, start_router, start_worker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def test_admin_restart_restarts_the_worker_and_the_work_runs_again(tmp_path):
    wport = free_port()
    worker = start_worker(0, wport, tmp_path)
    router = None
    try:
        router, url = start_router(tmp_path, router_config(tmp_path, [wport]))
        wurl = f"http://127.0.0.1:{wport}"
        with httpx.Client(base_url=url, timeout=10.0) as c:
            body = {
                "request_id": "long-1",
                "user_id": "alice",
                "model_id": "m",
                "priority": 3,
                "resource_requirements": {"memory": 100, "expected_duration": 1500},
            }
            assert c.post("/api/v1/route", json=body, headers=hdr(ALICE)).status_code == 200
            deadline = time.monotonic() + 10
            while httpx.get(f"{wurl}/health").json()["running"] == 0:
                assert time.monotonic() < deadline, "the job never started on the worker"
                time.sleep(0.02)
            r = c.post("/api/v1/admin/gpu/gpu-0/restart", json={"force": True}, headers=hdr(ADMIN))
            assert r.status_code == 200, r.text
            data = r.json()["data"]
            assert data["status"] == "active"
            assert data["message"] == (
                "restarted; 1 request(s) re-queued; worker restarted (1 job(s) stopped)"
            )
            health = httpx.get(f"{wurl}/health").json()
            assert health["restarts"] == 1 and health["status"] == "ok"
            deadline = time.monotonic() + 30
            while (d := c.get("/api/v1/requests/long-1", headers=hdr(ALICE)).json()["data"])[
                "status"
            ] != "completed":
                assert time.monotonic() < deadline, d
                time.sleep(0.1)
            assert d["retries"] == 1 and d["assigned_gpu"] == "gpu-0"
            # a worker that does not answer: the GPU stays out until a probe brings it back
            worker.stop()
            r = c.post("/api/v1/admin/gpu/gpu-0/restart", headers=hdr(ADMIN))
            assert r.status_code == 200 and r.json()["data"]["status"] == "error"
            assert "the worker did not restart" in r.json()["data"]["message"]
    finally:
        if router is not None:
            router.stop()
        worker.stop()
