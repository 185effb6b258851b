"""Durability across restarts, quota consistency, callbacks with retries."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from gpu_router.shim.gpu_sources.virtual import VirtualFleet

from ..app_helpers import H_ADMIN, H_ALICE, body, running, wait_state

pytestmark = pytest.mark.timeout(30)


def test_restart_resumes_unfinished_and_never_reruns_finished(tmp_path):
    path = str(tmp_path / "journal.sqlite3")

    async def scenario():
        fleet = VirtualFleet(1, period_s=0.02)  # outlives the first app, as a worker would
        starts: list[str] = []  # every job the fleet started, by request id
        submit = fleet.submit

        def counted(gpu_id, rid, *args, **kw):
            before = set(fleet._gpus[gpu_id].jobs)
            job_id = submit(gpu_id, rid, *args, **kw)
            if job_id not in before:
                starts.append(rid)
            return job_id

        fleet.submit = counted  # type: ignore[method-assign]
        async with running(path, fleet=fleet) as (c, app, _):
            r = await c.post("/api/v1/route", json=body(request_id="done-1"), headers=H_ALICE)
            await wait_state(c, "done-1", {"completed"}, H_ALICE)
            for rid, ms in (("run-1", 600), ("wait-1", 50), ("wait-2", 50)):
                r = await c.post(
                    "/api/v1/route",
                    json=body(request_id=rid, payload={"simulate": {"duration_ms": ms}}),
                    headers=H_ALICE,
                )
                assert r.status_code == 200
            await wait_state(c, "run-1", {"processing"}, H_ALICE)
            await asyncio.sleep(0.05)
            await c.put(
                "/api/v1/admin/user/alice/quota",
                json={"priority_requests_limit": 9},
                headers=H_ADMIN,
            )
            svc = app.state.service
            # simulate a crash: loops and tasks die, nothing is written on the way out
            for t in svc._loops:
                t.cancel()
            for t in list(svc.dispatcher.tasks.values()):
                t.cancel()
            svc.dispatcher.local.clear()  # in-process jobs: their ends go unheard
            svc.store.journal.commit_batch = lambda batch: []  # a dead process writes nothing more
        assert sorted(starts) == ["done-1", "run-1"]
        async with running(path, fleet=fleet) as (c, app, _):
            for rid in ("run-1", "wait-1", "wait-2"):
                d = await wait_state(c, rid, {"completed"}, H_ALICE)
                assert d["status"] == "completed"
            assert sorted(starts) == ["done-1", "run-1", "wait-1", "wait-2"]  # none ran twice
            d = (await c.get("/api/v1/requests/done-1", headers=H_ALICE)).json()["data"]
            assert d["status"] == "completed"
            q = (await c.get("/api/v1/user/alice/quota", headers=H_ALICE)).json()["data"]
            assert q["quotas"]["concurrent_requests"]["used"] == 0
            assert q["quotas"]["priority_requests"]["limit"] == 9  # admin change survived
            assert q["rate_limits"]["requests_per_day"]["used"] == 4
        await fleet.aclose()

    asyncio.run(scenario())


def test_callbacks_delivered_with_retries():
    seen: list[dict] = []
    attempts = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "hooks.example":
            attempts["n"] += 1
            if attempts["n"] < 3:
                return httpx.Response(503)
            seen.append(
                {
                    "body": json.loads(request.content),
                    "traceparent": request.headers.get("traceparent"),
                }
            )
            return httpx.Response(200)
        return httpx.Response(404)

    async def scenario():
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with running(http=http) as (c, app, _fleet):
            tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            r = await c.post(
                "/api/v1/route",
                json=body(request_id="cb-1", callback_url="http://hooks.example/done"),
                headers={**H_ALICE, "traceparent": tp},
            )
            assert r.status_code == 200
            await wait_state(c, "cb-1", {"completed"}, H_ALICE)
            for _ in range(200):
                if seen:
                    break
                await asyncio.sleep(0.01)
            assert attempts["n"] == 3
            data = seen[0]["body"]["data"]
            assert data["request_id"] == "cb-1" and data["status"] == "completed"
            assert seen[0]["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
            await asyncio.sleep(0.02)
            assert app.state.service.store.get("cb-1").callback_state == "delivered"
        await http.aclose()

    asyncio.run(scenario())


def test_journal_failure_refuses_with_503_and_nothing_runs():
    async def scenario():
        async with running() as (c, app, fleet):
            svc = app.state.service
            # every write now fails in SQLite, as on a full disk
            svc.store.journal._db.execute("PRAGMA query_only=ON")
            r = await c.post("/api/v1/route", json=body(request_id="j-1"), headers=H_ALICE)
            assert r.status_code == 503 and r.json()["data"]["status"] == "rejected"
            assert "j-1" not in svc.requests.live and not svc.dispatcher.tasks
            assert svc.router.state_of("j-1") is None  # cancelled, then forgotten
            assert svc.stats.system.total == 0  # never acknowledged, not counted
            assert not fleet._gpus["gpu-0"].jobs  # its job never started

    asyncio.run(scenario())
