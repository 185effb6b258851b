"""Admission by predicted wait (``queue.admission_wait_s``): refuse what would wait too long."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gpu_router.policy import (
    Enqueue,
    GpuState,
    InvalidValue,
    Placement,
    QueueConfig,
    Reject,
    Request,
    ResourceRequirements,
    Router,
    RouterConfig,
)
from gpu_router.policy.arrival_rates import WorkRates


def req(rid, priority=3, duration_s=10.0, at=0.0):
    res = ResourceRequirements(memory_mb=1000.0, expected_duration_ms=duration_s * 1000.0)
    return Request(rid, "u", "m", priority, "inference", res, submitted_at=at)


def router(limits, binding="late", slots=2, gpus=1, window_s=240.0):
    """At the first instant the rates are measured over a quarter of the window: 60 s."""
    fleet = [GpuState(gpu_id=f"g{i}", memory_total_mb=80_000.0, slots=slots) for i in range(gpus)]
    queue = QueueConfig(admission_wait_s=limits, admission_rate_window_s=window_s)
    cfg = RouterConfig(strategy="least-loaded", binding=binding, queue=queue, quotas_enabled=False)
    return Router(fleet, cfg, np.random.default_rng(0))


def limits(**by_priority):
    table = dict.fromkeys(range(1, 6), 20.0)
    table.update({int(k[1:]): v for k, v in by_priority.items()})
    return table


def test_refused_once_the_predicted_wait_exceeds_the_limit_with_the_excess_as_retry():
    r = router(limits())
    for rid in "ab":
        assert isinstance(r.submit(req(rid), 0.0)[0], Placement)
    waits = [r.submit(req(rid), 0.0)[0] for rid in "cdef"]  # 5, 10, 15, 20 s: admitted
    assert [d.wait_s for d in waits if isinstance(d, Enqueue)] == [5.0, 10.0, 15.0, 20.0]
    refused, actions = r.submit(req("g"), 0.0)  # 25 s > 20 s
    said = "predicted wait 25 s exceeds 20 s for priority 3"
    assert refused == Reject("wait_too_long", said, 5.0)
    assert actions == [] and r.queue_length == 4 and r.state_of("g") is None


def test_work_admitted_at_higher_priorities_slows_the_lower_ones():
    r = router(limits(p1=5.0))
    for rid in "abcdef":
        r.submit(req(rid), 0.0)
    assert isinstance(r.submit(req("h", priority=5), 0.0)[0], Enqueue)  # nothing of p5 ahead
    # p1: 5 ahead -> 6 * 10 s / 2 slots = 30 s; higher priorities admitted 70 work-s over the
    # 60 s window on 2 slots: rho = 7/12, so 30 / (5/12) = 72 s; retry after 72 - 5 s
    refused, _ = r.submit(req("i", priority=1), 0.0)
    said = "predicted wait 72 s exceeds 5 s for priority 1"
    assert refused == Reject("wait_too_long", said, 67.0)


def test_higher_priorities_taking_every_slot_make_the_wait_unbounded():
    r = router(limits(p5=1e9))
    for k in range(13):  # 130 work-s of priority 5 in the 60 s window on 2 slots: rho > 1
        r.submit(req(f"p5-{k}", priority=5), 0.0)
    refused, _ = r.submit(req("low", priority=4), 0.0)
    assert isinstance(refused, Reject) and refused.code == "wait_too_long"
    assert "unbounded" in refused.reason and refused.retry_after_s == 240.0


def test_a_free_slot_means_no_wait_even_when_one_place_would_exceed_the_limit():
    r = router(limits(p3=1.0), slots=2)
    assert isinstance(r.submit(req("a"), 0.0)[0], Placement)
    assert isinstance(r.submit(req("b"), 0.0)[0], Placement)
    refused, _ = r.submit(req("c"), 0.0)  # 10 s / 2 slots = 5 s > 1 s
    assert isinstance(refused, Reject) and refused.retry_after_s == 4.0
    r.complete("a", 3.0)
    assert isinstance(r.submit(req("d", at=3.0), 3.0)[0], Placement)


def test_early_binding_counts_every_queued_request():
    r = router(limits(p5=6.0), binding="early", slots=1, gpus=2)
    for rid in "ab":
        assert isinstance(r.submit(req(rid), 0.0)[0], Placement)
    assert isinstance(r.submit(req("c"), 0.0)[0], Enqueue)  # 1 * 10 / 2 = 5 s
    # priority 5 is behind the queued priority-3 request under early binding: 10 s > 6 s
    refused, _ = r.submit(req("d", priority=5), 0.0)
    assert isinstance(refused, Reject) and refused.retry_after_s == 4.0


def test_off_by_default():
    r = router(None, slots=1)
    for k in range(50):
        assert not isinstance(r.submit(req(f"r{k}", duration_s=100.0), 0.0)[0], Reject)
    assert r.queue_length == 49


def test_the_rates_decay_exponentially_and_read_true_from_the_start():
    rates = WorkRates(60.0)
    rates.add(5, 15.0, 0.0)  # the first instant: measured over a quarter of the window
    assert rates.rate(5, 0.0) == 1.0 and rates.above(4, 0.0) == 1.0 and rates.above(5, 0.0) == 0
    w = 60.0 * -math.expm1(-1.0)  # the weight 60 s can hold
    assert rates.above(4, 60.0) == pytest.approx(15.0 * math.exp(-1.0) / w, rel=1e-12)
    steady = WorkRates(10.0)
    for k in range(2001):  # 1 work-s every 0.1 s: 10 work-s per second at every time
        steady.add(3, 1.0, k / 10)
        if k in (30, 100, 2000):
            assert steady.rate(3, k / 10) == pytest.approx(10.0, rel=0.06)
    steady.add(4, 1.0, 100.0)  # out of order across priorities is fine
    at_200 = steady.rate(3, 200.0) + steady.rate(4, 200.0)
    assert steady.above(2, 200.0) == pytest.approx(at_200, rel=1e-12)
    assert steady.above(2, 300.0) == pytest.approx(at_200 * math.exp(-10.0), rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"admission_wait_s": {5: 1.0}}, "queue.admission_wait_s"),
        ({"admission_wait_s": {**limits(), 3: 0.0}}, "queue.admission_wait_s.3"),
        ({"admission_rate_window_s": 0.0}, "queue.admission_rate_window_s"),
        ({"admission_rate_window_s": math.inf}, "queue.admission_rate_window_s"),
    ],
)
def test_invalid_admission_config_names_the_key(kwargs, key):
    with pytest.raises(InvalidValue) as err:
        QueueConfig(**kwargs)
    assert err.value.field == key
