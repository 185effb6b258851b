"""A router restart gets its registered workers back without an operator: the store kept
the registration, so the new router knows the worker before its first heartbeat, asks it
for its jobs and follows the request that ran there across the restart (not lost, not run
twice, not re-queued); new work flows to it. A worker that died meanwhile is restored and
then leaves after the heartbeat timeout. Real processes on loopback (a router, a CPU
worker), the router killed with SIGKILL."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from .procs import ADMIN, ALICE, free_port, hdr, router_config, start_router, start_worker
from .test_elastic_fleet_e2e import gpu_status, job, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def until_status(c: httpx.Client, gpu_id: str, status: str, limit: float = 15.0) -> float:
    """Seconds until the router shows ``gpu_id`` in ``status``."""
    t0 = time.monotonic()
    while gpu_status(c).get(gpu_id) != status:
        assert time.monotonic() - t0 < limit, gpu_status(c)
        time.sleep(0.05)
    return time.monotonic() - t0


def worker_jobs(port: int, rid: str) -> list[dict]:
    r = httpx.get(f"http://127.0.0.1:{port}/jobs", params={"request_id": rid}, timeout=5.0)
    return list(r.json()["jobs"])


def started(job_log: Path, rid: str) -> list[str]:
    """The job ids the worker started for ``rid`` (its job log)."""
    lines = [json.loads(x) for x in job_log.read_text().splitlines() if x.strip()]
    return [e["job_id"] for e in lines if e["event"] == "start" and e["request_id"] == rid]


def test_a_restarted_router_gets_its_registered_worker_back_and_work_flows(tmp_path):
    cfg = router_config(
        tmp_path,
        None,
        gpu_monitoring={"virtual_gpus": 1},
        fleet={"heartbeat_interval": 0.2, "heartbeat_timeout": 1.0},
    )
    port = free_port()
    router, url = start_router(tmp_path, cfg, port=port)
    wport = free_port()
    job_log = tmp_path / "jobs.jsonl"
    extra = ["--router-url", url, "--router-key", ADMIN, "--gpu-id", "gpu-new"]
    extra += ["--job-log", str(job_log)]
    worker = start_worker(1, wport, tmp_path, extra=extra)
    try:
        with httpx.Client(base_url=url, timeout=10.0) as c:
            until_status(c, "gpu-new", "active")
            r = c.post(
                "/api/v1/admin/gpu/gpu-0/maintenance", json={"reason": "t"}, headers=hdr(ADMIN)
            )
            assert r.is_success, r.text  # all work goes to the registered worker's GPU
            assert c.post("/api/v1/route", json=job("across", 2500), headers=hdr(ALICE)).is_success
            assert wait_for(c, "across", {"processing"})["assigned_gpu"] == "gpu-new"
            deadline = time.monotonic() + 10
            while not worker_jobs(wport, "across/alice"):  # running on the worker itself
                assert time.monotonic() < deadline
                time.sleep(0.02)
        router.kill()  # no goodbye: the worker only sees its heartbeats fail

        router, url = start_router(tmp_path, cfg, port=port)
        with httpx.Client(base_url=url, timeout=10.0) as c:
            back_s = until_status(c, "gpu-new", "active")
            assert back_s < 5.0  # a few heartbeats (0.2 s apart), not an operator
            print(f"gpu-new back {back_s:.2f} s after the restarted router answered")
            done = wait_for(c, "across", {"completed", "failed"})
            assert done["status"] == "completed", done
            assert done["assigned_gpu"] == "gpu-new"
            assert done["retries"] == 0  # followed on its worker, never re-queued
            assert started(job_log, "across/alice") == ["across/alice.1"]  # run once only
            c.post("/api/v1/admin/gpu/gpu-0/maintenance", json={"reason": "t"}, headers=hdr(ADMIN))
            assert c.post("/api/v1/route", json=job("after", 200), headers=hdr(ALICE)).is_success
            done = wait_for(c, "after", {"completed"})
            assert done["assigned_gpu"] == "gpu-new"
        worker.kill()  # no goodbye either: its registration stays in the store
        router.kill()
        # not ready: gpu-0 is in maintenance, and gpu-new in error once recovery's call
        # to its dead worker failed (how soon decides whether /health ever says 200)
        info = {**cfg, "logging": {**cfg["logging"], "level": "INFO"}}  # (the restore line)
        router, url = start_router(tmp_path, info, port=port, ready=False)
        with httpx.Client(base_url=url, timeout=10.0) as c:
            deadline = time.monotonic() + 30
            while c.get("/api/v1/gpus", headers=hdr(ALICE)).status_code != 200:  # started
                assert time.monotonic() < deadline
                time.sleep(0.05)
            # restored from the store (nothing else tells this router of gpu-new: its
            # worker is dead; in error at once, its worker does not answer recovery's
            # call) ... then gone. On a slow machine the heartbeat timeout (1 s) may have
            # passed before the first answer: then it is inactive already.
            assert gpu_status(c)["gpu-new"] in {"active", "error", "inactive"}
            assert until_status(c, "gpu-new", "inactive", limit=10.0) < 5.0
        restored = [
            x for x in (tmp_path / "router.log").read_text().splitlines()[-2000:]
            if "registered workers restored" in x
        ]  # fmt: skip
        assert restored and "gpu-new" in restored[-1], restored
    finally:
        worker.stop()
        router.stop()
