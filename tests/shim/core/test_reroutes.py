"""Re-routes reported to the caller: ``rerouted_from`` in the status and a signed
``event: rerouted`` callback when a request's work moves to another GPU."""

from __future__ import annotations

import asyncio

import pytest

from gpu_router.client import verify_callback

from ..app_helpers import H_ALICE, body, running, wait_state
from .test_callbacks import LISTED, SECRET, receiver

pytestmark = pytest.mark.timeout(30)


def test_a_crash_re_routes_the_work_and_the_caller_is_told():
    with receiver() as rx:

        async def scenario() -> None:
            async with running(n_gpus=2, **LISTED) as (c, _app, fleet):
                job = body(
                    request_id="rr-1",
                    callback_url=rx.url,
                    payload={"simulate": {"duration_ms": 400}},
                )
                r = await c.post("/api/v1/route", json=job, headers=H_ALICE)
                assert r.status_code == 200, r.text
                first = (await wait_state(c, "rr-1", {"processing"}, H_ALICE))["assigned_gpu"]
                other = "gpu-1" if first == "gpu-0" else "gpu-0"
                fleet.crash(first, "fell off the bus")
                done = await wait_state(c, "rr-1", {"completed"}, H_ALICE)
                assert done["assigned_gpu"] == other and done["rerouted_from"] == [first]
                assert done["retries"] == 1
                for _ in range(300):
                    if len(rx.seen) >= 2:
                        break
                    await asyncio.sleep(0.01)
                events = [
                    verify_callback(SECRET, s["body"], s["headers"]["x-gpu-router-signature"])
                    for s in rx.seen
                ]
                moved, final = (e["data"] for e in events)
                assert moved["event"] == "rerouted" and moved["status"] == "processing"
                assert moved["rerouted"]["from_gpu"] == first
                assert moved["rerouted"]["to_gpu"] == other
                assert "fell off the bus" in moved["rerouted"]["reason"]
                assert final["status"] == "completed" and final["rerouted_from"] == [first]
                assert "event" not in final

        asyncio.run(scenario())
