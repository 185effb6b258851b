"""Timeouts per request type and per priority, and re-runs of timed-out requests."""

from __future__ import annotations

import numpy as np
import pytest

from gpu_router.policy import (
    Abort,
    Dispatch,
    Finished,
    GpuState,
    InvalidValue,
    Request,
    ResourceRequirements,
    RetryConfig,
    Router,
    RouterConfig,
)
from gpu_router.policy.timeouts import TimeoutConfig


def req(rid, priority=3, rtype="inference", timeout_s=None, at=0.0):
    res = ResourceRequirements(memory_mb=1000.0, expected_duration_ms=1000.0)
    return Request(rid, "u", "m", priority, rtype, res, timeout_s=timeout_s, submitted_at=at)


def router(timeouts, default_s=None, slots=1, backoff_s=0.0):
    gpus = [GpuState(gpu_id="g0", memory_total_mb=80_000.0, slots=slots)]
    cfg = RouterConfig(
        quotas_enabled=False,
        timeouts=timeouts,
        default_timeout_s=default_s,
        retry=RetryConfig(backoff_base_s=backoff_s),
    )
    return Router(gpus, cfg, np.random.default_rng(0))


def test_the_timeout_comes_from_the_request_then_type_and_priority_then_the_default():
    t = TimeoutConfig(by_type={"training": 600.0}, by_priority={5: 30.0, 1: 900.0})
    assert t.timeout_for(5.0, "training", 5, 99.0) == 5.0  # its own
    assert t.timeout_for(None, "training", 5, 99.0) == 30.0  # the shorter of both
    assert t.timeout_for(None, "training", 1, 99.0) == 600.0
    assert t.timeout_for(None, "training", 3, 99.0) == 600.0  # type only
    assert t.timeout_for(None, "inference", 5, 99.0) == 30.0  # priority only
    assert t.timeout_for(None, "inference", 3, 99.0) == 99.0  # the default
    assert t.timeout_for(None, "inference", 3, None) is None


def test_a_queued_request_times_out_at_its_types_timeout():
    r = router(TimeoutConfig(by_type={"batch": 10.0}))
    r.submit(req("run"), 0.0)
    r.submit(req("b", rtype="batch"), 0.0)
    assert r.next_wakeup() == 10.0
    assert r.tick(10.0) == [Finished("b", "failed", "timeout")]


def test_a_running_timeout_is_re_run_with_a_fresh_timeout_then_fails():
    r = router(TimeoutConfig(by_priority={4: 5.0}, retries=1))
    r.submit(req("a", priority=4), 0.0)
    actions = r.tick(5.0)  # stopped, re-queued at the head, started again
    assert actions == [Abort("a", "g0", "timeout"), Dispatch("a", "g0")]
    snap = r.record("a")
    assert snap.retries == 1 and snap.error == "timeout" and snap.state.value == "processing"
    assert r.next_wakeup() == 10.0  # counted from the re-queue
    assert r.tick(10.0) == [Abort("a", "g0", "timeout"), Finished("a", "failed", "timeout")]


def test_the_re_run_waits_out_the_retry_backoff_and_the_retry_bound():
    r = router(TimeoutConfig(by_priority={3: 5.0}, retries=5), backoff_s=2.0)
    r.submit(req("a"), 0.0)
    assert r.tick(5.0) == [Abort("a", "g0", "timeout")]  # backing off 2 s
    assert r.next_wakeup() == 7.0
    assert r.tick(7.0) == [Dispatch("a", "g0")]
    assert r.next_wakeup() == 12.0  # a fresh 5 s from the end of the backoff
    r.tick(12.0), r.tick(16.0), r.tick(24.0)  # the second and third time out
    assert r.record("a").retries == 3 and r.record("a").state.value == "queued"
    # retry.max_retries (3) bounds timeout re-runs as it bounds failures
    assert r.tick(32.0) == [Dispatch("a", "g0")]
    assert r.tick(37.0) == [Abort("a", "g0", "timeout"), Finished("a", "failed", "timeout")]


def test_the_re_run_waits_behind_nothing_of_its_priority():
    r = router(TimeoutConfig(by_priority={3: 5.0}, retries=2))
    r.submit(req("a"), 0.0)
    r.submit(req("b", timeout_s=100.0), 0.0)  # its own, longer timeout
    actions = r.tick(5.0)
    assert actions == [Abort("a", "g0", "timeout"), Dispatch("a", "g0")]  # a goes first


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"by_type": {"batch": 0.0}}, "timeouts.by_type.batch"),
        ({"by_priority": {6: 1.0}}, "timeouts.by_priority.6"),
        ({"by_priority": {2: float("inf")}}, "timeouts.by_priority.2"),
        ({"retries": -1}, "timeouts.retries"),
        ({"retries": 1.5}, "timeouts.retries"),
    ],
)
def test_invalid_timeouts_name_the_key(kwargs, key):
    with pytest.raises(InvalidValue) as err:
        TimeoutConfig(**kwargs)
    assert err.value.field == key


def test_from_mapping_builds_the_timeouts():
    cfg = RouterConfig.from_mapping({"timeouts": {"by_type": {"batch": 3.0}, "retries": 2}})
    assert cfg.timeouts == TimeoutConfig(by_type={"batch": 3.0}, retries=2)
