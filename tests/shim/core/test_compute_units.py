"""``resource_requirements.compute_units`` in the service: slots held, and refused where
no GPU has that many."""

from __future__ import annotations

import asyncio

import pytest

from gpu_router.shim.gpu_sources.virtual import VirtualFleet
from gpu_router.shim.gpu_sources.virtual_model import VirtualGpuSpec

from ..app_helpers import H_ALICE, body, running, wait_state

pytestmark = pytest.mark.timeout(30)


def job(rid: str, units: int, ms: int) -> dict:
    rr = {"memory": 1000, "compute_units": units, "expected_duration": ms}
    return body(request_id=rid, resource_requirements=rr, payload={"simulate": {"duration_ms": ms}})


def test_compute_units_hold_slots_and_more_than_any_gpu_has_is_503():
    async def scenario():
        fleet = VirtualFleet(specs=[VirtualGpuSpec(slots=4)], period_s=0.02)
        async with running(fleet=fleet) as (c, _app, _):
            r = await c.post("/api/v1/route", json=job("big", 3, 400), headers=H_ALICE)
            assert r.json()["data"]["status"] == "accepted"
            r = await c.post("/api/v1/route", json=job("two", 2, 50), headers=H_ALICE)
            assert r.json()["data"]["status"] == "queued"  # one slot of four is free
            r = await c.post("/api/v1/route", json=job("one", 1, 50), headers=H_ALICE)
            assert r.json()["data"]["status"] == "accepted"  # fits in the free slot
            r = await c.post("/api/v1/route", json=job("huge", 5, 50), headers=H_ALICE)
            assert r.status_code == 503 and r.json()["error"]["code"] == "incompatible"
            big = await wait_state(c, "big", {"completed"}, H_ALICE)
            two = await wait_state(c, "two", {"completed"}, H_ALICE)
            assert two["start_time"] >= big["completion_time"]

    asyncio.run(scenario())
