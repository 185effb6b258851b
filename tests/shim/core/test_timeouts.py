"""Timeouts per type and per priority from the config, with re-runs of timed-out work."""

from __future__ import annotations

import asyncio

import pytest

from ..app_helpers import H_ALICE, body, running, until, wait_state

pytestmark = pytest.mark.timeout(30)


def test_type_and_priority_timeouts_and_a_re_run_after_a_timeout():
    async def scenario():
        queue = {
            "timeout_by_type_ms": {"batch": 250},
            "timeout_by_priority_ms": {4: 300},
            "timeout_retries": 1,
        }
        retry = {"retry_delay": 0.1, "gpu_cooldown_period": 0.2, "base_ejection_s": 0.1}
        async with running(n_gpus=1, queue=queue, error_handler=retry) as (c, _app, fleet):
            slow = {"simulate": {"duration_ms": 5000}}
            r = await c.post(
                "/api/v1/route",
                json=body(request_id="p4", priority=4, payload=slow),
                headers=H_ALICE,
            )
            assert r.status_code == 200
            r = await c.post(
                "/api/v1/route",
                json=body(request_id="b1", type="batch", payload=slow),
                headers=H_ALICE,
            )
            assert r.json()["data"]["status"] == "queued"
            b1 = await wait_state(c, "b1", {"failed"}, H_ALICE)
            assert b1["error"] == "timeout" and b1["retries"] == 0  # waited too long
            p4 = await wait_state(c, "p4", {"failed"}, H_ALICE)
            assert p4["error"] == "timeout" and p4["retries"] == 1  # ran twice, 0.3 s each
            await until(lambda: not fleet._gpus["gpu-0"].running)  # the worker was told to stop

    asyncio.run(scenario())
