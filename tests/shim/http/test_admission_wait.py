"""The service refuses by predicted wait (``sla.admit_by_wait``): 429 with Retry-After."""

from __future__ import annotations

import asyncio

import pytest

from ..app_helpers import H_ALICE, body, check_schema, running

pytestmark = pytest.mark.timeout(30)


def test_overload_answers_429_wait_too_long_with_the_excess_as_retry_after():
    async def scenario():
        # one virtual GPU, one slot; priority 3's SLA target (the limit) is 10 s
        async with running(n_gpus=1) as (c, app, _fleet):

            def job(seconds: int, priority: int = 3) -> dict:
                rr = {"memory": 1000, "expected_duration": seconds * 1000}
                payload = {"simulate": {"duration_ms": seconds * 1000}}
                return body(priority=priority, resource_requirements=rr, payload=payload)

            answers = [await c.post("/api/v1/route", json=job(4), headers=H_ALICE) for _ in "abc"]
            assert [r.status_code for r in answers] == [200, 200, 200]  # waits 0, 4 and 8 s
            r = await c.post("/api/v1/route", json=job(4), headers=H_ALICE)  # 12 s > 10 s
            assert r.status_code == 429 and r.headers["retry-after"] == "2"
            err = r.json()["error"]
            assert err["code"] == "wait_too_long" and err["retry_after"] == 2.0
            assert err["message"] == "predicted wait 12 s exceeds 10 s for priority 3"
            assert r.json()["data"]["status"] == "rejected"
            check_schema("POST", "/api/v1/route", r)
            # priority 5 goes ahead of the queued priority-3 work: 1 s, inside its 2 s
            r = await c.post("/api/v1/route", json=job(1, priority=5), headers=H_ALICE)
            assert r.status_code == 200
            assert app.state.service.router.queue_length == 3

    asyncio.run(scenario())


def test_admission_by_wait_can_be_turned_off():
    async def scenario():
        async with running(n_gpus=1, sla={"admit_by_wait": False}) as (c, _app, _fleet):
            rr = {"memory": 1000, "expected_duration": 60_000}
            job = body(resource_requirements=rr, payload={"simulate": {"duration_ms": 60_000}})
            codes = [
                (await c.post("/api/v1/route", json=job, headers=H_ALICE)).status_code
                for _ in range(5)
            ]
            assert codes == [200] * 5

    asyncio.run(scenario())
