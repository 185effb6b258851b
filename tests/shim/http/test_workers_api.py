"""The fleet API in process: register, heartbeat, leave; answers match the OpenAPI."""

from __future__ import annotations

import asyncio

import pytest

from ..app_helpers import H_ADMIN, H_ALICE, check_schema, running

pytestmark = pytest.mark.timeout(30)

SPEC = {
    "gpu_id": "gpu-x",
    "url": "http://127.0.0.1:9",
    "name": "joined",
    "memory_total_mb": 24_000,
    "compute_capability": "8.9",
    "slots": 2,
}


def test_register_heartbeat_leave():
    async def scenario():
        async with running(n_gpus=1) as (c, app, _fleet):
            r = await c.post("/api/v1/workers/register", json=SPEC, headers=H_ALICE)
            assert r.status_code == 403  # an admin key joins workers
            bad = dict(SPEC, url="ftp://x")
            r = await c.post("/api/v1/workers/register", json=bad, headers=H_ADMIN)
            assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "url"
            r = await c.post("/api/v1/workers/register", json=SPEC, headers=H_ADMIN)
            assert r.status_code == 200 and r.json()["data"] == {
                "gpu_id": "gpu-x",
                "status": "active",
                "heartbeat_interval": 2.0,
                "heartbeat_timeout": 10.0,
            }
            check_schema("POST", "/api/v1/workers/register", r)
            view = app.state.service.router.gpu("gpu-x")
            assert (view.slots, view.state.memory_total_mb, view.state.name) == (2, 24000, "joined")
            beat = {"memory_used_mb": 1000, "utilization_pct": 50, "temperature_c": 60}
            r = await c.post("/api/v1/workers/gpu-x/heartbeat", json=beat, headers=H_ADMIN)
            assert r.status_code == 200 and r.json()["data"]["status"] == "active"
            check_schema("POST", "/api/v1/workers/{gpu_id}/heartbeat", r)
            assert app.state.service.router.gpu("gpu-x").state.utilization_pct == 50
            taken = dict(SPEC, gpu_id="gpu-0")  # a GPU of the source, not a registered one
            r = await c.post("/api/v1/workers/register", json=taken, headers=H_ADMIN)
            assert r.status_code == 409
            r = await c.delete("/api/v1/workers/gpu-x", headers=H_ADMIN)
            assert r.status_code == 200 and r.json()["data"]["status"] == "inactive"
            check_schema("DELETE", "/api/v1/workers/{gpu_id}", r)
            assert (await c.delete("/api/v1/workers/gpu-x", headers=H_ADMIN)).status_code == 404
            r = await c.post("/api/v1/workers/gpu-x/heartbeat", headers=H_ADMIN)
            assert r.status_code == 404  # gone: it must register again
            r = await c.post("/api/v1/workers/register", json=SPEC, headers=H_ADMIN)
            assert r.json()["data"]["status"] == "active"  # and comes back

    asyncio.run(scenario())


def test_a_heartbeat_reports_the_models_the_worker_holds():
    async def scenario():
        locality = {"enabled": True, "report_grace_s": 0.0, "report_interval": 3600}
        locality["default_memory_mb"] = 5000  # two fit in the 12,000 MB cache, not three
        async with running(n_gpus=1, model_locality=locality) as (c, app, _fleet):
            router = app.state.service.router
            r = await c.post("/api/v1/workers/register", json=SPEC, headers=H_ADMIN)
            assert r.status_code == 200
            url = "/api/v1/workers/gpu-x/heartbeat"
            r = await c.post(url, json={"models": ["sd", "xl"]}, headers=H_ADMIN)
            assert r.status_code == 200, r.text
            check_schema("POST", "/api/v1/workers/{gpu_id}/heartbeat", r)
            assert router.resident_models("gpu-x") == ("sd", "xl")  # adopted
            r = await c.post(url, json={"models": ["a", "sd", "xl"]}, headers=H_ADMIN)
            assert router.resident_models("gpu-x") == ("sd", "xl")  # a does not fit
            r = await c.post(url, json={"utilization_pct": 5}, headers=H_ADMIN)
            assert router.resident_models("gpu-x") == ("sd", "xl")  # no models: no report
            await c.post(url, json={"models": ["xl"]}, headers=H_ADMIN)
            assert router.resident_models("gpu-x") == ("xl",)  # sd is gone from the worker
            r = await c.post(url, json={"models": "sd"}, headers=H_ADMIN)
            assert r.status_code == 422

    asyncio.run(scenario())


def test_a_worker_that_reports_models_by_heartbeat_is_not_polled_for_them_too():
    """One report path per worker: the report loop asks only GPUs whose heartbeats do not
    carry their models (a registered worker before its first such heartbeat, the rest)."""

    async def scenario():
        locality = {"enabled": True, "report_grace_s": 0.0, "report_interval": 3600}
        async with running(n_gpus=1, model_locality=locality) as (c, app, _fleet):
            reports = app.state.service.parts.model_reports
            asked: list[str] = []
            read = reports.read

            async def recording(gpu_id: str):
                asked.append(gpu_id)
                return await read(gpu_id)

            reports.read = recording
            assert (await c.post("/api/v1/workers/register", json=SPEC, headers=H_ADMIN)).is_success
            await reports.read_all()
            assert sorted(asked) == ["gpu-0", "gpu-x"]  # no models by heartbeat yet
            url = "/api/v1/workers/gpu-x/heartbeat"
            assert (await c.post(url, json={"models": ["sd"]}, headers=H_ADMIN)).is_success
            asked.clear()
            await reports.read_all()
            assert asked == ["gpu-0"]
            assert app.state.service.router.resident_models("gpu-x") == ("sd",)  # kept
            await c.post("/api/v1/workers/register", json=SPEC, headers=H_ADMIN)
            asked.clear()
            await reports.read_all()
            assert sorted(asked) == ["gpu-0", "gpu-x"]  # registered again: asked until
            assert (await c.post(url, json={"models": ["sd"]}, headers=H_ADMIN)).is_success
            await c.delete("/api/v1/workers/gpu-x", headers=H_ADMIN)  # it reports; left
            await c.post("/api/v1/workers/register", json=SPEC, headers=H_ADMIN)
            asked.clear()
            await reports.read_all()
            assert sorted(asked) == ["gpu-0", "gpu-x"]  # joined again: asked until it reports

    asyncio.run(scenario())
