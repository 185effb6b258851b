"""Re-routes reported to the caller: ``rerouted_from`` in the status and an
``event: rerouted`` callback when a request's work moves to another GPU."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from ..app_helpers import H_ALICE, body, running, wait_state

pytestmark = pytest.mark.timeout(30)


def test_a_crash_re_routes_the_work_and_the_caller_is_told():
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content)["data"])
        return httpx.Response(200)

    async def scenario():
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with running(n_gpus=2, http=http) as (c, _app, fleet):
            job = body(
                request_id="rr-1",
                callback_url="http://hooks.example/done",
                payload={"simulate": {"duration_ms": 400}},
            )
            assert (await c.post("/api/v1/route", json=job, headers=H_ALICE)).status_code == 200
            first = (await wait_state(c, "rr-1", {"processing"}, H_ALICE))["assigned_gpu"]
            other = "gpu-1" if first == "gpu-0" else "gpu-0"
            fleet.crash(first, "fell off the bus")
            done = await wait_state(c, "rr-1", {"completed"}, H_ALICE)
            assert done["assigned_gpu"] == other and done["rerouted_from"] == [first]
            assert done["retries"] == 1
            for _ in range(200):
                if len(seen) >= 2:
                    break
                await asyncio.sleep(0.01)
            moved, final = seen
            assert moved["event"] == "rerouted" and moved["status"] == "processing"
            assert moved["rerouted"]["from_gpu"] == first
            assert moved["rerouted"]["to_gpu"] == other
            assert "fell off the bus" in moved["rerouted"]["reason"]
            assert final["status"] == "completed" and final["rerouted_from"] == [first]
            assert "event" not in final

    asyncio.run(scenario())
