"""Elastic fleet end to end: a worker process started after the router registers, takes
work without a restart, and when it dies its work is re-routed. Real processes on
loopback."""

from __future__ import annotations

import time

import httpx
import pytest

from .procs import ADMIN, ALICE, free_port, hdr, router_config, start_router, start_worker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def job(rid: str, ms: int) -> dict:
    return {
        "request_id": rid,
        "user_id": "alice",
        "model_id": "m",
        "priority": 3,
        "resource_requirements": {"memory": 100, "expected_duration": ms},
        "payload": {"simulate": {"duration_ms": ms}},
    }


def wait_for(c: httpx.Client, rid: str, states: set[str], limit: float = 30.0) -> dict:
    deadline = time.monotonic() + limit
    while (d := c.get(f"/api/v1/requests/{rid}", headers=hdr(ALICE)).json()["data"])[
        "status"
    ] not in states:
        assert time.monotonic() < deadline, d
        time.sleep(0.05)
    return d


def gpu_status(c: httpx.Client) -> dict[str, str]:
    gpus = c.get("/api/v1/gpus", headers=hdr(ALICE)).json()["data"]["gpus"]
    return {g["gpu_id"]: g["status"] for g in gpus}


def test_a_worker_added_to_a_running_router_takes_work_and_its_work_moves_when_it_dies(
    tmp_path,
):
    cfg = router_config(
        tmp_path,
        None,
        gpu_monitoring={"virtual_gpus": 1},
        fleet={"heartbeat_interval": 0.2, "heartbeat_timeout": 1.0},
    )
    router, url = start_router(tmp_path, cfg)
    worker = None
    try:
        with httpx.Client(base_url=url, timeout=10.0) as c:
            assert gpu_status(c) == {"gpu-0": "active"}
            # busy until cancelled below (a 4 s job could end, on a slow machine, before
            # the worker has started and registered: then gpu-0 would be free again)
            assert c.post("/api/v1/route", json=job("busy", 600_000), headers=hdr(ALICE)).is_success
            assert wait_for(c, "busy", {"processing"})["assigned_gpu"] == "gpu-0"
            wport = free_port()
            extra = ["--router-url", url, "--router-key", ADMIN, "--gpu-id", "gpu-new"]
            worker = start_worker(1, wport, tmp_path, extra=extra)
            deadline = time.monotonic() + 15
            while gpu_status(c).get("gpu-new") != "active":
                assert time.monotonic() < deadline, gpu_status(c)
                time.sleep(0.05)
            # gpu-0 is busy: the next request runs on the GPU that joined
            assert c.post("/api/v1/route", json=job("new-1", 300), headers=hdr(ALICE)).is_success
            assert wait_for(c, "new-1", {"completed"})["assigned_gpu"] == "gpu-new"
            # a long one on gpu-new, then the worker dies: no heartbeat, its work moves
            assert c.post("/api/v1/route", json=job("moved", 1500), headers=hdr(ALICE)).is_success
            assert wait_for(c, "moved", {"processing"})["assigned_gpu"] == "gpu-new"
            gone = c.delete("/api/v1/requests/busy", headers=hdr(ALICE))  # gpu-0 free again
            assert gone.status_code == 200, gone.text
            worker.kill()
            done = wait_for(c, "moved", {"completed"})
            assert done["assigned_gpu"] == "gpu-0" and done["rerouted_from"] == ["gpu-new"]
            deadline = time.monotonic() + 10  # the heartbeat timeout (1 s) takes it out
            while gpu_status(c)["gpu-new"] != "inactive":
                assert time.monotonic() < deadline, gpu_status(c)
                time.sleep(0.05)
    finally:
        if worker is not None:
            worker.stop()
        router.stop()
