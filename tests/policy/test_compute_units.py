"""``compute_units``: a request holds that many of a GPU's slots while it runs."""

from __future__ import annotations

import numpy as np
import pytest

from gpu_router.policy import (
    Dispatch,
    Enqueue,
    Finished,
    GpuState,
    InvalidValue,
    Placement,
    Reject,
    Request,
    ResourceRequirements,
    Router,
    RouterConfig,
)


def req(rid, units=1, duration_s=4.0):
    res = ResourceRequirements(
        memory_mb=1000.0, compute_units=units, expected_duration_ms=duration_s * 1000
    )
    return Request(rid, "u", "m", 3, "inference", res, submitted_at=0.0)


def router(binding="late", slots=(4,)):
    fleet = [
        GpuState(gpu_id=f"g{i}", memory_total_mb=80_000.0, slots=s) for i, s in enumerate(slots)
    ]
    cfg = RouterConfig(strategy="least-loaded", binding=binding, quotas_enabled=False)
    return Router(fleet, cfg, np.random.default_rng(0))


@pytest.mark.parametrize("binding", ["late", "early"])
def test_a_request_holds_its_units_and_waits_for_that_many_free_slots(binding):
    r = router(binding)
    assert isinstance(r.submit(req("big", units=3), 0.0)[0], Placement)
    waiting, _ = r.submit(req("two", units=2), 0.0)  # 1 slot free: waits
    assert isinstance(waiting, Enqueue)
    assert r.gpu("g0").running == 1  # requests, not slots
    placed, _ = r.submit(req("one"), 0.0)  # the free slot is enough for one unit
    assert isinstance(placed, Placement)  # backfilled past the two-unit request
    actions = r.complete("big", 4.0)
    assert Dispatch("two", "g0") in actions and Finished("big", "completed", None) in actions
    assert r.fleet_summary().running == 2 and r.gpu("g0").request_ids == ("one", "two")


def test_the_wait_estimate_counts_the_units():
    r = router(slots=(2,))
    r.submit(req("a", units=2), 0.0)
    queued, _ = r.submit(req("b", units=2), 0.0)
    # one place of 4 s holding 2 of the 2 slots in service: 4 s
    assert queued == Enqueue(1, None, 4.0, 4.0)
    one, _ = r.submit(req("c"), 0.0)
    assert isinstance(one, Enqueue) and one.wait_s == 2 * 4.0 / 2


def test_more_units_than_any_gpu_has_slots_is_incompatible():
    r = router(slots=(4, 2))
    refused, _ = r.submit(req("huge", units=5), 0.0)
    assert isinstance(refused, Reject) and refused.code == "incompatible"
    assert refused.reason.endswith("5 compute unit(s) (most slots 4)")
    placed, _ = r.submit(req("fits", units=3), 0.0)
    assert placed == Placement("g0", 0.0, 4.0)  # only g0 has 3 slots


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_compute_units_must_be_a_positive_integer(bad):
    with pytest.raises(InvalidValue) as err:
        ResourceRequirements(compute_units=bad)
    assert err.value.field == "resource_requirements.compute_units"
