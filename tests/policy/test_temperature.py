"""``max_temperature_c``: a GPU sampled above it takes no new work until it cools."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gpu_router.policy import (
    OVERHEATED,
    Dispatch,
    Enqueue,
    GpuState,
    InvalidValue,
    Placement,
    Request,
    ResourceRequirements,
    Router,
    RouterConfig,
)


def req(rid):
    res = ResourceRequirements(memory_mb=1000.0, expected_duration_ms=1000.0)
    return Request(rid, "u", "m", 3, "inference", res, submitted_at=0.0)


def gpu(gid, temp):
    return GpuState(gpu_id=gid, memory_total_mb=80_000.0, temperature_c=temp, slots=1)


def router(*temps, max_c=85.0):
    cfg = RouterConfig(strategy="least-loaded", quotas_enabled=False, max_temperature_c=max_c)
    return Router([gpu(f"g{i}", t) for i, t in enumerate(temps)], cfg, np.random.default_rng(0))


def test_a_hot_gpu_at_the_start_takes_no_work():
    r = router(90.0, 40.0)
    assert r.is_out("g0") == {OVERHEATED} and r.gpu("g0").status == "error"
    assert r.submit(req("a"), 0.0)[0] == Placement("g1", 0.0, 1.0)
    assert isinstance(r.submit(req("b"), 0.0)[0], Enqueue)  # g0 would be free, but hot


def test_overheating_drains_and_cooling_brings_it_back():
    r = router(40.0)
    assert isinstance(r.submit(req("a"), 0.0)[0], Placement)
    assert r.observe(gpu("g0", 85.5), 1.0) == []  # running work is not aborted
    assert r.is_out("g0") == {OVERHEATED} and r.state_of("a").value == "processing"
    r.complete("a", 2.0)
    assert isinstance(r.submit(req("b"), 2.0)[0], Enqueue)  # free slot, still hot
    assert r.observe(gpu("g0", 85.0), 3.0) == [Dispatch("b", "g0")]  # at the limit: back
    assert r.is_out("g0") == set()


def test_no_limit_by_default_and_a_restart_rechecks_on_the_next_sample():
    r = Router([gpu("g0", 120.0)], RouterConfig(quotas_enabled=False))
    assert r.is_out("g0") == set()
    hot = router(100.0)
    hot.restart("g0", 1.0)
    assert hot.is_out("g0") == set()
    hot.observe(dataclasses.replace(gpu("g0", 100.0), sampled_at=2.0), 2.0)
    assert hot.is_out("g0") == {OVERHEATED}


@pytest.mark.parametrize("bad", [0.0, -5.0, True, "85"])
def test_invalid_max_temperature_names_the_key(bad):
    with pytest.raises(InvalidValue) as err:
        RouterConfig(max_temperature_c=bad)
    assert err.value.field == "max_temperature_c"
