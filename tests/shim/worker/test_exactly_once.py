"""The worker's side of exactly-once (issue 12): a router-chosen job id is started once,
a job is kept until acknowledged or its retention ends, and the router's client and the
virtual workers offer the same calls."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx

from gpu_router.shim.gpu_sources.base import attempt_of, job_id_for
from gpu_router.shim.gpu_sources.virtual import VirtualFleet
from gpu_router.shim.worker.client import WorkerClient
from gpu_router.shim.worker.jobs import Worker
from gpu_router.shim.worker.server import create_app

from .test_server import CPU, in_process


def _runs(n: list[int]):
    def runner(job, device, max_s):  # counts runs; a few ms of "work"
        n[0] += 1
        time.sleep(0.01)
        return {"ok": True, "n": n[0]}

    return runner


def test_job_ids_round_trip() -> None:
    assert job_id_for("a.b/c", 3) == "a.b/c.3"
    assert attempt_of("a.b/c", "a.b/c.3") == 3
    assert attempt_of("a", "b.3") is None and attempt_of("a", "a.x") is None


def test_repeated_start_of_a_job_id_runs_nothing_again(tmp_path: Path) -> None:
    runs = [0]
    log = tmp_path / "jobs.jsonl"

    async def go() -> None:
        w = Worker(CPU, runner=_runs(runs), job_log=str(log))
        async with in_process(w) as client:
            body = {"request_id": "r", "job_id": "r.1", "expected_duration_ms": 1}
            first = await client.post("/jobs", json=body)
            assert first.status_code == 202 and first.json()["job_id"] == "r.1"
            again = await client.post("/jobs", json=body)
            assert again.status_code == 200 and again.json()["existing"] is True
            for _ in range(200):
                if w.jobs["r.1"].state == "completed":
                    break
                await asyncio.sleep(0.01)
            done = await client.post("/jobs", json=body)  # finished: still "already have it"
            assert done.json() == {"job_id": "r.1", "state": "completed", "existing": True}
            w.jobs["r.1"].state = "failed"  # even a failed job id is not run again
            assert (await client.post("/jobs", json=body)).json()["state"] == "failed"
            w.jobs["r.1"].state = "completed"
            nxt = await client.post("/jobs", json={**body, "job_id": "r.2"})
            assert nxt.status_code == 200 and nxt.json()["job_id"] == "r.1"  # completed: held
            listed = (await client.get("/jobs", params={"request_id": "r"})).json()["jobs"]
            assert [j["job_id"] for j in listed] == ["r.1"] and listed[0]["result"]["ok"]
            assert (await client.get("/jobs")).json()["jobs"][0]["job_id"] == "r.1"
        assert runs == [1]

    asyncio.run(go())
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["event"], e["job_id"]) for e in events] == [("start", "r.1"), ("end", "r.1")]


def test_ack_forgets_finished_jobs_only_and_is_idempotent() -> None:
    async def go() -> None:
        w = Worker(CPU, runner=_runs([0]))
        async with in_process(w) as client:
            await client.post("/jobs", json={"request_id": "a", "job_id": "a.1"})
            r = await client.post("/jobs/ack", json={"job_ids": ["a.1", "nope"]})
            assert r.json() == {"acked": [], "running": ["a.1"], "unknown": ["nope"]}
            for _ in range(200):
                if w.jobs["a.1"].state != "running":
                    break
                await asyncio.sleep(0.01)
            r = await client.post("/jobs/ack", json={"job_ids": ["a.1"]})
            assert r.json()["acked"] == ["a.1"]
            assert (await client.get("/jobs/a.1")).status_code == 404
            assert (await client.get("/jobs")).json() == {"jobs": []}
            r = await client.post("/jobs/ack", json={"job_ids": ["a.1"]})
            assert r.json()["unknown"] == ["a.1"]
            assert (await client.post("/jobs/ack", json={"job_ids": "a.1"})).status_code == 422

    asyncio.run(go())


def test_retention_forgets_never_acknowledged_jobs_after_the_ttl() -> None:
    async def go() -> None:
        w = Worker(CPU, runner=_runs([0]), job_ttl_s=60.0)
        job, new = w.submit("x", {}, 1, 0, "x.1")
        assert new
        for _ in range(200):
            if job.state != "running":
                break
            await asyncio.sleep(0.01)
        assert job.finished_at is not None
        assert w.expire(now=job.finished_at + 59) == 0 and "x.1" in w.jobs
        w._next_expiry = 0.0
        assert w.expire(now=job.finished_at + 61) == 1 and "x.1" not in w.jobs
        await w.stop()

    asyncio.run(go())


def test_client_jobs_and_ack_against_the_app() -> None:
    async def go() -> None:
        w = Worker(CPU, runner=_runs([0]))
        app = create_app(w)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport) as http, app.router.lifespan_context(app):
            c = WorkerClient("http://w", http)
            assert await c.submit("q/1", {}, 1, 0, job_id="q/1.1") == "q/1.1"
            assert await c.submit("q/1", {}, 1, 0, job_id="q/1.1") == "q/1.1"
            for _ in range(200):
                if (await c.status("q/1.1"))["state"] == "completed":
                    break
                await asyncio.sleep(0.01)
            held = await c.jobs("q/1")
            assert [j["job_id"] for j in held] == ["q/1.1"]
            await c.ack(["q/1.1"])
            assert await c.jobs() == []

    asyncio.run(go())


def test_virtual_worker_same_semantics() -> None:
    async def go() -> None:
        fleet = VirtualFleet(1, period_s=0.02)
        v = fleet.virtual_worker("gpu-0")
        sim = {"simulate": {"duration_ms": 5}}
        assert await v.submit("r", sim, 5, 0, job_id="r.1") == "r.1"
        assert await v.submit("r", sim, 5, 0, job_id="r.1") == "r.1"
        st = await v.wait("r.1", 2.0)
        assert st["state"] == "completed"
        assert await v.submit("r", sim, 5, 0, job_id="r.1") == "r.1"  # finished: held
        assert [j["job_id"] for j in await v.jobs()] == ["r.1"]
        await v.ack(["r.1"])
        assert await v.jobs() == []
        await fleet.aclose()

    asyncio.run(go())
