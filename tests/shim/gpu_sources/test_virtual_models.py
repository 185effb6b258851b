"""The virtual fleet loads models: measured load times, LRU by memory, reported held."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from gpu_router.shim.config import config_from_mapping
from gpu_router.shim.gpu_sources.factory import source_from_config
from gpu_router.shim.gpu_sources.virtual import VirtualFleet, VirtualGpuSpec
from gpu_router.shim.gpu_sources.virtual_models import VirtualModels
from gpu_router.sim.model_loads import LoadTimes

pytestmark = pytest.mark.timeout(30)

TIMES = LoadTimes(np.array([10.0, 20.0, 30.0, 40.0]))  # default_rng(7) draws 3, 2, 2, 3, 2


def test_loads_are_drawn_kept_lru_by_memory_and_reported_once_ended() -> None:
    m = VirtualModels(100.0, TIMES, np.random.default_rng(7))
    assert m.ensure({"id": "a", "memory_mb": 60}, now=0.0, time_scale=1.0) == (40.0, 40.0)
    assert m.held(0.0) == [] and m.held(40.0) == [{"id": "a", "memory_mb": 60.0}]
    # a job for a model still loading waits for the rest of the load, loads nothing
    assert m.ensure({"id": "a", "memory_mb": 60}, now=10.0, time_scale=1.0) == (30.0, 0.0)
    # b does not fit beside a: a (least recently used) is evicted
    assert m.ensure({"id": "b", "memory_mb": 50}, now=50.0, time_scale=1.0) == (30.0, 30.0)
    assert m.held(200.0) == [{"id": "b", "memory_mb": 50.0}]
    # time_scale 2: the 30 s load ends 60 real seconds later
    assert m.ensure({"id": "c", "memory_mb": 30}, now=100.0, time_scale=2.0) == (30.0, 30.0)
    assert [h["id"] for h in m.held(159.0)] == ["b"]
    assert [h["id"] for h in m.held(160.0)] == ["b", "c"]
    # larger than the cache: loaded for the job, not kept
    assert m.ensure({"id": "big", "memory_mb": 200}, now=200.0, time_scale=1.0) == (40.0, 40.0)
    # the router's evict list goes first
    e = {"id": "e", "memory_mb": 10, "evict": ["b"]}
    assert m.ensure(e, now=300.0, time_scale=1.0) == (30.0, 30.0)
    assert m.held(1000.0) == [{"id": "c", "memory_mb": 30.0}, {"id": "e", "memory_mb": 10.0}]
    assert (m.loads, m.load_s_total, m.used_mb()) == (5, 170.0, 40.0)
    m.clear()
    assert m.held(1000.0) == [] and m.used_mb() == 0.0


def test_without_measured_times_a_load_takes_load_s() -> None:
    m = VirtualModels(100.0, None, np.random.default_rng(0), load_s=2.5)
    assert m.ensure({"id": "a", "memory_mb": 1}, now=0.0, time_scale=1.0) == (2.5, 2.5)


async def _run(fleet: VirtualFleet, rid: str, model: dict) -> tuple[dict, float]:
    w = fleet.virtual_worker("gpu-0")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    jid = await w.submit(rid, {}, 1000.0, 512.0, model=model)
    while (st := await w.status(jid))["state"] == "running":
        await asyncio.sleep(0.002)
    return dict(st), loop.time() - t0


def test_the_fleet_charges_the_load_and_reports_the_model() -> None:
    async def go() -> None:
        # time_scale 0.01: 1 modelled second is 10 ms
        fleet = VirtualFleet(
            1, time_scale=0.01, model_load_times=TIMES, model_rng=np.random.default_rng(7)
        )
        sd = {"id": "sd", "memory_mb": 6500.0, "evict": []}
        st, took = await _run(fleet, "r1", sd)
        assert st["state"] == "completed" and st["model_load_s"] == 40.0
        assert took == pytest.approx(0.41, abs=0.08)  # 40 s load + 1 s run, x 0.01
        assert fleet.held_models("gpu-0") == ["sd"]
        (sample,) = await fleet.sample()
        assert sample.memory_used_mb == VirtualGpuSpec().base_memory_mb + 6500.0
        st, took = await _run(fleet, "r2", sd)  # warm: no load
        assert "model_load_s" not in st and took < 0.06
        fleet.restart("gpu-0")  # a restarted worker comes back empty
        assert fleet.held_models("gpu-0") == []
        st, _ = await _run(fleet, "r3", sd)
        assert st["model_load_s"] == 30.0  # the next draw

    asyncio.run(go())


def test_the_config_makes_a_virtual_fleet_that_loads_measured_times() -> None:
    raw = {
        "seed": 0,
        "model_locality": {
            "enabled": True,
            "cache_share": 0.25,
            "virtual_load_times": {"path": "traces/alibaba_genai_2026_basemodel_load_ms.csv"},
        },
    }
    cfg = config_from_mapping(raw)
    fleet = source_from_config(cfg.gpu_monitoring, 2, cfg.model_locality, cfg.seed)
    assert isinstance(fleet, VirtualFleet)

    async def go() -> list[float]:
        loads = []
        for i, model in enumerate(("a", "b")):  # default_rng(0) draws: 39.867 s, 31.69 s
            jid = fleet.submit("gpu-0", f"r{i}", {}, 10.0, 1.0, model={"id": model})
            loads.append(fleet.job_status("gpu-0", jid)["model_load_s"])
        return loads

    assert asyncio.run(go()) == [39.867, 31.69]
    models = fleet._gpu("gpu-0").models
    assert models is not None and models.capacity_mb == 0.25 * VirtualGpuSpec().memory_total_mb
