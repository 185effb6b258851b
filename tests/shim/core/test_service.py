"""Durability across restarts, quota consistency, callbacks with retries."""

from __future__ import annotations

import asyncio

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
                # 1,000 a day refills one cell in 86 s: the four counted below stay counted
                # however slow the restart (the helpers' 100,000 refill one in 0.9 s)
                json={"priority_requests_limit": 9, "requests_per_day_limit": 1000},
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
        assert sorted(starts) == ["done-1/alice", "run-1/alice"]  # job request ids: store keys
        async with running(path, fleet=fleet) as (c, app, _):
            for rid in ("run-1", "wait-1", "wait-2"):
                d = await wait_state(c, rid, {"completed"}, H_ALICE)
                assert d["status"] == "completed"
            assert sorted(starts) == [
                "done-1/alice",
                "run-1/alice",
                "wait-1/alice",
                "wait-2/alice",
            ]  # none ran twice
            d = (await c.get("/api/v1/requests/done-1", headers=H_ALICE)).json()["data"]
            assert d["status"] == "completed"
            q = (await c.get("/api/v1/user/alice/quota", headers=H_ALICE)).json()["data"]
            assert q["quotas"]["concurrent_requests"]["used"] == 0
            assert q["quotas"]["priority_requests"]["limit"] == 9  # admin change survived
            assert q["rate_limits"]["requests_per_day"]["used"] == 4
        await fleet.aclose()

    asyncio.run(scenario())


def test_journal_failure_refuses_with_503_and_nothing_runs():
    async def scenario():
        async with running() as (c, app, fleet):
            svc = app.state.service
            # every write now fails in SQLite, as on a full disk
            svc.store.journal._db.execute("PRAGMA query_only=ON")
            r = await c.post("/api/v1/route", json=body(request_id="j-1"), headers=H_ALICE)
            assert r.status_code == 503 and r.json()["data"]["status"] == "rejected"
            assert "j-1/alice" not in svc.requests.live and not svc.dispatcher.tasks
            assert svc.router.state_of("j-1/alice") is None  # cancelled, then forgotten
            assert svc.stats.system.total == 0  # never acknowledged, not counted
            assert not fleet._gpus["gpu-0"].jobs  # its job never started

    asyncio.run(scenario())
