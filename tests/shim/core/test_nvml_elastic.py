"""GPUs that join and leave NVML's enumeration while the service runs (NVML re-scan):
a plugged GPU takes work without a restart, an unplugged one's work is re-routed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gpu_router.shim.gpu_sources.fake_pynvml import FakePynvml
from gpu_router.shim.gpu_sources.nvml import NvmlSource
from gpu_router.shim.gpu_sources.virtual import VirtualFleet, VirtualWorker

from ..app_helpers import H_ALICE, body, running, wait_state

pytestmark = pytest.mark.timeout(30)


class NvmlOverVirtualWorkers(NvmlSource):
    """The NVML source on a fake pynvml; its GPUs' jobs run on virtual workers."""

    def __init__(self, fake: FakePynvml, workers: VirtualFleet) -> None:
        # a re-scan before every sample: a GPU unplugged is gone before it is read (no
        # GpuIsLost signal), so what moves its work here is the departure itself
        super().__init__(fake, period_s=0.03, rescan_s=0.001, in_thread=False)
        self.workers = workers

    def virtual_worker(self, gpu_id: str) -> VirtualWorker:
        return self.workers.virtual_worker(gpu_id)

    async def aclose(self) -> None:
        await super().aclose()
        await self.workers.aclose()


async def gpus(c: Any) -> dict[str, str]:
    r = await c.get("/api/v1/gpus", headers=H_ALICE)
    return {g["gpu_id"]: g["status"] for g in r.json()["data"]["gpus"]}


async def until(c: Any, want: dict[str, str]) -> None:
    for _ in range(500):
        if await gpus(c) == want:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{await gpus(c)} != {want}")


def job(rid: str, ms: int) -> dict[str, Any]:
    return body(request_id=rid, payload={"simulate": {"duration_ms": ms}})


def test_a_plugged_gpu_takes_work_and_an_unplugged_ones_work_is_re_routed():
    fake = FakePynvml(device_count=1)
    source = NvmlOverVirtualWorkers(fake, VirtualFleet(3, period_s=0.02))

    async def scenario() -> None:
        async with running(fleet=source) as (c, app, _):  # type: ignore[arg-type]
            svc = app.state.service
            assert await gpus(c) == {"gpu-0": "active"}
            r = await c.post("/api/v1/route", json=job("long", 2500), headers=H_ALICE)
            assert r.status_code == 200, r.text
            assert (await wait_state(c, "long", {"processing"}, H_ALICE))["assigned_gpu"] == "gpu-0"

            fake.plug()  # a GPU appears: no restart, no registration
            await until(c, {"gpu-0": "active", "gpu-1": "active"})
            view = svc.router.gpu("gpu-1")
            assert view.state.memory_total_mb == 81559.0 and view.state.compute_capability == (9, 0)
            r = await c.post("/api/v1/route", json=job("new", 100), headers=H_ALICE)
            assert r.status_code == 200, r.text
            done = await wait_state(c, "new", {"completed"}, H_ALICE)
            assert done["assigned_gpu"] == "gpu-1"  # gpu-0 is busy with "long"

            fake.unplug(0)  # gpu-0 leaves the enumeration while "long" runs there
            await until(c, {"gpu-0": "inactive", "gpu-1": "active"})
            done = await wait_state(c, "long", {"completed"}, H_ALICE, timeout=10)
            assert done["assigned_gpu"] == "gpu-1" and done["rerouted_from"] == ["gpu-0"]
            assert "gpu-0" not in svc.gpus.down  # gone, not taken out by a signal
            assert "removed" in svc.router.is_out("gpu-0")

            back = fake.unplug(0)  # gpu-1 leaves too: no GPU at all for a while
            await until(c, {"gpu-0": "inactive", "gpu-1": "inactive"})
            fake.plug(back)  # and comes back (now at index 0): under its own id
            await until(c, {"gpu-0": "inactive", "gpu-1": "active"})
            r = await c.post("/api/v1/route", json=job("after", 50), headers=H_ALICE)
            done = await wait_state(c, "after", {"completed"}, H_ALICE)
            assert done["assigned_gpu"] == "gpu-1"

    asyncio.run(scenario())
