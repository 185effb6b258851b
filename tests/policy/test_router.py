"""The Router: timed cases for each transition of the state machine."""

from __future__ import annotations

import numpy as np
import pytest

from gpu_router.policy import (
    Abort,
    Dispatch,
    Enqueue,
    Finished,
    GpuState,
    InvalidValue,
    Placement,
    Reject,
    Request,
    RequestState,
    ResourceRequirements,
    Router,
    RouterConfig,
)
from gpu_router.policy.config import RetryConfig
from gpu_router.policy.outlier import OutlierConfig
from gpu_router.policy.quota import QuotaLimits

S = RequestState


def fleet(n=2, **kw):
    return [GpuState(gpu_id=f"g{i}", **kw) for i in range(n)]


def req(
    rid,
    user="u",
    prio=3,
    mem=1000.0,
    dur_ms=1000.0,
    timeout=None,
    t=0.0,
    rtype="inference",
    cc=None,
):
    return Request(
        rid,
        user,
        "m",
        prio,
        rtype,
        ResourceRequirements(memory_mb=mem, expected_duration_ms=dur_ms, min_compute_capability=cc),
        timeout_s=timeout,
        submitted_at=t,
    )


def router(gpus=None, **cfg) -> Router:
    cfg.setdefault("strategy", "least-loaded")
    return Router(gpus or fleet(), RouterConfig(**cfg), np.random.default_rng(0))


def test_place_at_once_then_queue_then_dispatch_on_completion():
    r = router()
    assert r.submit(req("a"), 0.0) == (Placement("g0", 0.0, 1.0), [Dispatch("a", "g0")])
    assert r.submit(req("b"), 0.0) == (Placement("g1", 0.0, 1.0), [Dispatch("b", "g1")])
    decision, actions = r.submit(req("c"), 0.0)
    assert decision == Enqueue(1, None, 0.5, 1.0) and actions == []  # 1 x 1 s over 2 slots
    assert r.record("c").state is S.QUEUED
    r.start("a", 0.1)
    assert r.complete("a", 1.1) == [Finished("a", "completed"), Dispatch("c", "g0")]
    snap = r.record("a")
    assert (snap.state, snap.started_at, snap.finished_at) == (S.COMPLETED, 0.1, 1.1)
    assert r.complete("a", 2.0) == []  # repeated completion is ignored


def test_priority_goes_first_when_a_gpu_frees():
    r = router(fleet(1))
    r.submit(req("run"), 0.0)
    r.submit(req("low", prio=1), 0.0)
    r.submit(req("high", prio=5), 0.1)
    assert r.complete("run", 1.0)[-1] == Dispatch("high", "g0")


def test_incompatible_request_is_rejected_with_reason():
    r = router(fleet(2, memory_total_mb=16_000))
    d, _ = r.submit(req("big", mem=20_000), 0.0)
    assert isinstance(d, Reject) and d.code == "incompatible" and "20000 MB" in d.reason
    d, _ = r.submit(req("cc", cc=(10, 0)), 0.0)
    assert isinstance(d, Reject) and d.code == "incompatible"
    gpus = [GpuState(gpu_id="inf", capabilities=frozenset({"inference"}))]
    d, _ = router(gpus).submit(req("t", rtype="training"), 0.0)
    assert isinstance(d, Reject) and d.code == "incompatible"


def test_memory_is_never_overcommitted():
    r = router(fleet(1, memory_total_mb=10_000, slots=4))
    assert isinstance(r.submit(req("a", mem=6000), 0.0)[0], Placement)
    assert isinstance(r.submit(req("b", mem=6000), 0.0)[0], Enqueue)
    assert isinstance(r.submit(req("c", mem=3000), 0.0)[0], Placement)  # backfills
    assert r._state.fleet.reserved_mb[0] == 9000  # the accounting itself: no public read


def test_timeout_fails_queued_and_running_requests_and_frees_the_slot():
    r = router(fleet(1))
    r.submit(req("run", timeout=5.0), 0.0)
    r.submit(req("wait", timeout=3.0), 0.0)
    assert r.next_wakeup() == 3.0
    assert r.tick(3.0) == [Finished("wait", "failed", "timeout")]
    assert r.tick(5.0) == [Abort("run", "g0", "timeout"), Finished("run", "failed", "timeout")]
    assert r.record("run").error == "timeout" and r.gpu("g0").running == 0


def test_cancel_is_idempotent():
    r = router(fleet(1))
    r.submit(req("a"), 0.0)
    r.submit(req("b"), 0.0)
    assert r.cancel("b", 1.0) == [Finished("b", "cancelled", "cancelled")]
    assert r.cancel("b", 2.0) == []
    assert r.cancel("a", 2.0) == [
        Abort("a", "g0", "cancelled"),
        Finished("a", "cancelled", "cancelled"),
    ]
    assert r.cancel("a", 3.0) == [] and r.cancel("nope", 3.0) == []
    assert r.state_of("a") is r.state_of("b") is S.CANCELLED


def test_worker_failure_retries_with_backoff_then_fails():
    r = router(fleet(1), retry=RetryConfig(max_retries=2, backoff_base_s=1.0, backoff_cap_s=10))
    r.submit(req("a"), 0.0)
    assert r.fail("a", 1.0, "worker died") == []
    assert r.record("a").state is S.QUEUED and r.next_wakeup() == 2.0
    assert r.tick(2.0) == [Dispatch("a", "g0")]
    r.fail("a", 3.0, "worker died")
    assert r.next_wakeup() == 5.0  # second backoff is 2 s
    r.tick(5.0)
    assert r.fail("a", 6.0, "worker died") == [Finished("a", "failed", "worker died")]
    assert r.record("a").retries == 3


def test_gpu_crash_requeues_at_head_and_stops_placing():
    r = router(fleet(2))
    r.submit(req("a"), 0.0)
    r.submit(req("b"), 0.0)
    r.submit(req("c", prio=3), 0.5)
    actions = r.gpu_down("g0", 1.0, "xid 79")
    assert actions == [Abort("a", "g0", "xid 79")]
    assert r.record("a").state is S.QUEUED and r.record("a").retries == 1
    # "a" re-queued ahead of the waiting "c"; g1 frees and takes "a"
    assert r.complete("b", 2.0)[-1] == Dispatch("a", "g1")
    assert r.complete("a", 3.0)[-1] == Dispatch("c", "g1")
    r.gpu_up("g0", 4.0)
    assert r.submit(req("d"), 4.0)[0].gpu_id == "g0"


def test_maintenance_drains_and_restart_brings_back():
    r = router(fleet(2))
    r.submit(req("a"), 0.0)
    assert r.maintenance("g0", 1.0) == []
    assert r.record("a").state is S.PROCESSING  # running work finishes
    assert r.submit(req("b"), 1.0)[0].gpu_id == "g1"
    assert isinstance(r.submit(req("c"), 1.0)[0], Enqueue)
    assert r.complete("a", 2.0) == [Finished("a", "completed")]  # not placed on g0
    assert r.restart("g0", 3.0) == [Dispatch("c", "g0")]
    with pytest.raises(InvalidValue):
        r.maintenance("nope", 3.0)


def test_outlier_ejection_takes_a_failing_gpu_out_for_a_while():
    cfg = OutlierConfig(
        consecutive_failures=2,
        base_ejection_s=10.0,
        max_ejection_s=100.0,
        max_ejected_share=0.5,
        slow_start_s=5.0,
    )
    r = router(fleet(2), outlier=cfg, retry=RetryConfig(max_retries=5, backoff_base_s=0.0))
    r.submit(req("a"), 0.0)
    r.fail("a", 1.0, "boom")  # 1st failure on g0, re-queued at once, back on g0
    assert r.record("a").state is S.PROCESSING
    gpu = r.record("a").gpu_id
    r.fail("a", 2.0, "boom")  # 2nd consecutive failure: ejected
    assert "ejected" in r.is_out(gpu)
    assert r.record("a").gpu_id != gpu
    r.tick(12.0)
    assert r.is_out(gpu) == set()


def test_quota_limits_concurrency_and_says_why():
    r = router(fleet(4), quotas=QuotaLimits(concurrent_requests=2, priority_requests=1))
    assert isinstance(r.submit(req("a"), 0.0)[0], Placement)
    assert isinstance(r.submit(req("b", prio=4), 0.0)[0], Placement)
    d, _ = r.submit(req("c"), 0.0)
    assert isinstance(d, Reject) and d.code == "quota_exceeded" and d.retry_after_s is None
    assert isinstance(r.submit(req("x", user="other", prio=5), 0.0)[0], Placement)
    r.complete("b", 1.0)
    d, _ = r.submit(req("d", prio=5), 1.0)
    assert isinstance(d, Placement)


def test_queue_bound_rejects_with_retry_after():
    from gpu_router.policy import QueueConfig

    r = router(fleet(1), queue=QueueConfig(max_size=5), quotas_enabled=False)
    r.submit(req("run"), 0.0)
    for i in range(3):
        r.submit(req(f"q{i}", prio=3), 0.0)
    d, _ = r.submit(req("low", prio=1), 0.0)  # 3 waiting >= 5 * 0.6
    assert isinstance(d, Reject) and d.code == "queue_full" and d.retry_after_s >= 1.0
    assert isinstance(r.submit(req("q3", prio=5), 0.0)[0], Enqueue)


def test_duplicate_submission_is_rejected():
    r = router()
    r.submit(req("a"), 0.0)
    d, _ = r.submit(req("a"), 0.0)
    assert isinstance(d, Reject) and d.code == "duplicate"


def test_early_binding_queues_on_a_gpu():
    r = router(fleet(2), binding="early", strategy="join-shortest-queue")
    assert r.submit(req("a"), 0.0)[0] == Placement("g0", 0.0, 1.0)
    assert r.submit(req("b"), 0.0)[0] == Placement("g1", 0.0, 1.0)
    assert r.submit(req("c"), 0.0)[0] == Enqueue(1, "g0", 0.5, 1.0)
    assert r.submit(req("d"), 0.0)[0] == Enqueue(1, "g1", 0.5, 1.0)
    assert r.complete("b", 1.0)[-1] == Dispatch("d", "g1")
    # a crash moves its queue back to the central queue and on to the live GPU
    r.gpu_down("g0", 2.0)
    assert r.record("c").gpu_id == "g1" and r.gpu("g0").queued == 0


def test_resumed_request_skips_quota_checks_but_takes_its_slot():
    r = router(fleet(1), quotas=QuotaLimits(concurrent_requests=1))
    r.submit(req("a"), 0.0)
    assert isinstance(r.submit(req("b", t=1.0), 1.0)[0], Reject)
    assert isinstance(r.submit(req("c", t=1.0), 1.0, resumed=True)[0], Enqueue)
    assert r.quota_usage("u", 1.0).concurrent_requests.used == 2
    r.complete("a", 2.0)
    r.complete("c", 3.0)
    assert r.quota_usage("u", 3.0).concurrent_requests.used == 0


def test_forget_drops_only_finished_records():
    r = router(fleet(1))
    r.submit(req("a"), 0.0)
    assert not r.forget("a") and not r.forget("nope")
    r.complete("a", 1.0)
    assert r.forget("a") and r.state_of("a") is None
    assert r._state.counts[S.COMPLETED] == 0  # the accounting itself: no public read


def test_forgotten_requests_leave_no_stale_timers():
    r = router(fleet(1))
    r.submit(req("a", timeout=10.0), 0.0)
    r.complete("a", 1.0)
    assert r.forget("a")
    assert r.next_wakeup() is None  # the deadline of "a" is stale, not a KeyError
    r.submit(req("b", timeout=10.0, t=2.0), 2.0)
    r.complete("b", 3.0)
    r.forget("b")
    assert r.tick(20.0) == []  # past both deadlines: nothing to do, nothing raised


def test_a_sample_that_changes_what_a_gpu_can_serve_updates_compatibility():
    r = router(fleet(1, memory_total_mb=16_000))
    assert isinstance(r.submit(req("big", mem=20_000), 0.0)[0], Reject)
    r.observe(GpuState(gpu_id="g0", memory_total_mb=40_000, sampled_at=1.0), 1.0)
    assert r.submit(req("big2", mem=20_000), 1.0)[0].gpu_id == "g0"


def test_a_request_dispatched_at_time_zero_is_charged_from_its_dispatch():
    """With no start reported, run time counts from the dispatch, t = 0.0 included
    (it was once read as "no dispatch time" and charged 0 s)."""
    r = router(fleet(1))
    r.submit(req("a", dur_ms=60_000.0), 0.0)
    r.complete("a", 30.0)
    assert r.quota_usage("u", 30.0).gpu_minutes.used == pytest.approx(0.5)
