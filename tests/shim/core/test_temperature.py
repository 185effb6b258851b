"""``gpu_monitoring.max_temperature`` in the service: a hot GPU takes no new work, and
says so in /health, the GPU list and /metrics."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from gpu_router.shim.gpu_sources.virtual import VirtualFleet
from gpu_router.shim.gpu_sources.virtual_model import VirtualGpuSpec

from ..app_helpers import H_ALICE, body, running, until, wait_state

pytestmark = pytest.mark.timeout(30)


async def shows(c, line: str) -> bool:
    """Whether /metrics has ``line``."""
    return line in (await c.get("/metrics")).text


def test_a_gpu_above_max_temperature_takes_no_new_work_until_it_cools():
    async def scenario():
        hot = VirtualGpuSpec(idle_temp_c=92.0, load_temp_c=92.0)
        fleet = VirtualFleet(specs=[hot, VirtualGpuSpec()], period_s=0.02, temp_tau_s=0.05)
        async with running(fleet=fleet) as (c, _app, _):
            health = (await c.get("/health")).json()["data"]
            assert health["gpus_overheated"] == ["gpu-0"]
            gpus = {
                g["gpu_id"]: g
                for g in (await c.get("/api/v1/gpus", headers=H_ALICE)).json()["data"]["gpus"]
            }
            assert gpus["gpu-0"]["status"] == "error"
            assert gpus["gpu-0"]["health_status"] == "critical"
            assert gpus["gpu-1"]["status"] == "active"
            # the gauges follow the samples (within a few sampler rounds)
            await until(lambda: shows(c, 'gpu_router_gpu_overheated{gpu_id="gpu-0"} 1.0'))
            prom = (await c.get("/metrics")).text
            assert 'gpu_router_gpu_overheated{gpu_id="gpu-1"} 0.0' in prom
            for k in range(3):
                r = await c.post("/api/v1/route", json=body(request_id=f"r{k}"), headers=H_ALICE)
                assert r.status_code == 200
                done = await wait_state(c, f"r{k}", {"completed"}, H_ALICE)
                assert done["assigned_gpu"] == "gpu-1"
            fleet._gpus["gpu-0"].spec = dataclasses.replace(hot, idle_temp_c=40.0, load_temp_c=40.0)
            for _ in range(200):
                if not (await c.get("/health")).json()["data"]["gpus_overheated"]:
                    break
                await asyncio.sleep(0.02)
            assert (await c.get("/health")).json()["data"]["gpus_overheated"] == []
            await until(lambda: shows(c, 'gpu_router_gpu_overheated{gpu_id="gpu-0"} 0.0'))

    asyncio.run(scenario())
