"""GPUs join and leave at run time (``Router.add_gpu`` / ``remove_gpu``)."""

from __future__ import annotations

import numpy as np
import pytest

from gpu_router.policy import (
    REMOVED,
    Abort,
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


def req(rid, memory=1000.0):
    res = ResourceRequirements(memory_mb=memory, expected_duration_ms=1000.0)
    return Request(rid, "u", "m", 3, "inference", res, submitted_at=0.0)


def gpu(gid, memory=80_000.0, slots=1):
    return GpuState(gpu_id=gid, memory_total_mb=memory, slots=slots)


@pytest.mark.parametrize("binding", ["late", "early"])
def test_a_gpu_added_at_run_time_takes_the_queued_work(binding):
    cfg = RouterConfig(strategy="least-loaded", binding=binding, quotas_enabled=False)
    r = Router([gpu("g0")], cfg, np.random.default_rng(0))
    r.submit(req("a"), 0.0)
    assert isinstance(r.submit(req("b"), 0.0)[0], Enqueue)
    actions = r.add_gpu(gpu("g1"), 1.0)
    if binding == "late":
        assert actions == [Dispatch("b", "g1")]
    assert r.gpu_ids == ("g0", "g1") and r.fleet_summary().slots_in_service == 2
    if binding == "early":  # b waits in g0's queue; the next one goes to the idle g1
        assert r.submit(req("c"), 2.0)[0] == Placement("g1", 0.0, 1.0)
    assert r.gpu("g1").status == "active"


def test_a_new_gpu_can_serve_what_no_gpu_could_before():
    cfg = RouterConfig(strategy="least-loaded", quotas_enabled=False)
    r = Router([gpu("small", memory=16_000.0)], cfg, np.random.default_rng(0))
    assert r.submit(req("big", memory=40_000.0), 0.0)[0].code == "incompatible"
    r.add_gpu(gpu("large"), 1.0)
    assert r.submit(req("big", memory=40_000.0), 1.0)[0] == Placement("large", 0.0, 1.0)


def test_a_gpu_that_leaves_has_its_work_re_routed_and_can_come_back():
    cfg = RouterConfig(strategy="least-loaded", quotas_enabled=False)
    r = Router([gpu("g0"), gpu("g1")], cfg, np.random.default_rng(0))
    assert r.submit(req("a"), 0.0)[0] == Placement("g0", 0.0, 1.0)
    actions = r.remove_gpu("g0", 1.0, "worker deregistered")
    assert actions == [Abort("a", "g0", "worker deregistered"), Dispatch("a", "g1")]
    assert r.is_out("g0") == {REMOVED} and r.gpu("g0").status == "inactive"
    assert r.record("a").retries == 1
    assert isinstance(r.submit(req("b"), 1.0)[0], Enqueue)  # g0 takes nothing now
    assert r.add_gpu(gpu("g0"), 2.0) == [Dispatch("b", "g0")]
    assert r.gpu_ids == ("g0", "g1") and r.is_out("g0") == set()


def test_adding_a_gpu_id_twice_is_refused():
    r = Router([gpu("g0")], RouterConfig(quotas_enabled=False))
    r.add_gpu(gpu("g1"), 0.0)
    with pytest.raises(InvalidValue):
        r._state.fleet.append(gpu("g1"))
