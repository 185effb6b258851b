"""Maintenance with a duration ends by itself (``Router.maintenance(duration_s=...)``)."""

from __future__ import annotations

import numpy as np
import pytest

from gpu_router.policy import (
    MAINTENANCE,
    Dispatch,
    Enqueue,
    GpuState,
    InvalidValue,
    Request,
    ResourceRequirements,
    Router,
    RouterConfig,
)


def req(rid):
    res = ResourceRequirements(memory_mb=1000.0, expected_duration_ms=1000.0)
    return Request(rid, "u", "m", 3, "inference", res, submitted_at=0.0)


def router():
    gpus = [GpuState(gpu_id="g0", memory_total_mb=80_000.0, slots=1)]
    return Router(gpus, RouterConfig(quotas_enabled=False), np.random.default_rng(0))


def test_a_timed_window_ends_at_its_time_and_the_queue_moves():
    r = router()
    r.maintenance("g0", 10.0, duration_s=60.0)
    assert r.is_out("g0") == {MAINTENANCE} and r.next_wakeup() == 70.0
    assert isinstance(r.submit(req("a"), 11.0)[0], Enqueue)
    assert r.tick(69.9) == [] and r.is_out("g0") == {MAINTENANCE}
    assert r.tick(70.0) == [Dispatch("a", "g0")]
    assert r.is_out("g0") == set() and r.next_wakeup() is None


def test_an_open_ended_window_or_a_restart_cancels_the_timer():
    r = router()
    r.maintenance("g0", 0.0, duration_s=30.0)
    r.maintenance("g0", 5.0)  # now open-ended
    assert r.next_wakeup() is None
    r.tick(100.0)
    assert r.is_out("g0") == {MAINTENANCE}
    r.maintenance("g0", 100.0, duration_s=30.0)
    r.restart("g0", 101.0)
    assert r.is_out("g0") == set() and r.next_wakeup() is None


def test_the_earliest_of_timers_is_the_wakeup():
    r = router()
    r.maintenance("g0", 0.0, duration_s=50.0)
    res = ResourceRequirements(memory_mb=1000.0, expected_duration_ms=1000.0)
    r.submit(Request("t", "u", "m", 3, "inference", res, timeout_s=20.0, submitted_at=0.0), 0.0)
    assert r.next_wakeup() == 20.0


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan")])
def test_the_duration_must_be_positive_and_finite(bad):
    with pytest.raises(InvalidValue) as err:
        router().maintenance("g0", 0.0, duration_s=bad)
    assert err.value.field == "duration_s"
