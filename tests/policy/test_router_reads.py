"""The Router's public read API (views, summary, quotas) and the estimate it attaches
to decisions, with exact values."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gpu_router.policy import (
    Enqueue,
    GpuState,
    GpuStatus,
    InvalidValue,
    Placement,
    Request,
    RequestState,
    ResourceRequirements,
    Router,
    RouterConfig,
)
from gpu_router.policy.decisions import estimate_times
from gpu_router.policy.quota import QuotaLimits
from gpu_router.policy.views import FleetSummary, GpuView

S = RequestState


def req(rid, user="u", prio=3, mem=1000.0, dur_ms=2000.0):
    return Request(
        rid,
        user,
        "m",
        prio,
        "inference",
        ResourceRequirements(mem, expected_duration_ms=dur_ms),
        submitted_at=0.0,
    )


def router(gpus, **cfg) -> Router:
    cfg.setdefault("strategy", "least-loaded")
    return Router(gpus, RouterConfig(**cfg), np.random.default_rng(0))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((2.0, 2.0, 0, 5), (0.0, 1.0)),  # placed: no wait; run = 2 s / speed 2
        ((3.0, 1.0, 2, 4), (1.5, 3.0)),  # 2nd in queue: 2 x 3 s over 4 slots
        ((3.0, 0.5, 1, 0), (3.0, 6.0)),  # no slot in service counts as one
        ((1.0, 0.0, 0, 1), (0.0, 1.0 / 1e-9)),  # speed 0 is floored at 1e-9
    ],
)
def test_estimate_times_exact(args, expected):
    assert estimate_times(*args) == expected


def test_decisions_carry_the_estimate():
    gpus = [GpuState(gpu_id="fast", speed=2.0, slots=2), GpuState(gpu_id="slow", speed=0.5)]
    r = router(gpus, strategy="earliest-completion")
    assert r.submit(req("a"), 0.0)[0] == Placement("fast", 0.0, 1.0)
    assert r.submit(req("b"), 0.0)[0] == Placement("fast", 0.0, 1.0)
    assert r.submit(req("c"), 0.0)[0] == Placement("slow", 0.0, 4.0)
    # queued 1st and 2nd; 3 slots in service; no GPU known: speed 1.0
    assert r.submit(req("d"), 0.0)[0] == Enqueue(1, None, 2.0 / 3, 2.0)
    assert r.submit(req("e"), 0.0)[0] == Enqueue(2, None, 4.0 / 3, 2.0)
    r.maintenance("slow", 1.0)  # out of service: its slot no longer counts
    assert r.submit(req("f"), 1.0)[0] == Enqueue(3, None, 3.0, 2.0)


def test_early_binding_estimate_uses_the_gpu_it_is_bound_to():
    gpus = [GpuState(gpu_id="g0", speed=2.0), GpuState(gpu_id="g1", speed=2.0)]
    r = router(gpus, binding="early", strategy="join-shortest-queue")
    r.submit(req("a"), 0.0)
    r.submit(req("b"), 0.0)
    assert r.submit(req("c"), 0.0)[0] == Enqueue(1, "g0", 1.0, 1.0)


def test_gpu_views_and_fleet_summary():
    gpus = [
        GpuState(gpu_id="g0", slots=2, speed=1.5),
        GpuState(gpu_id="g1"),
        GpuState(gpu_id="g2", status=GpuStatus.INACTIVE),
    ]
    r = router(gpus)
    assert r.gpu_ids == ("g0", "g1", "g2")
    assert r.has_gpu("g1") and not r.has_gpu("g9")
    for rid in ("c", "a", "b"):  # c and b on g0 (two slots), a on g1
        r.submit(req(rid), 0.0)
    assert r.gpu("g0") == GpuView(
        gpu_id="g0",
        state=gpus[0],
        speed=1.5,
        slots=2,
        running=2,
        queued=0,
        request_ids=("b", "c"),  # sorted
        out_reasons=frozenset(),
        sampled_ok=True,
        status="active",
    )
    assert r.gpu("g2").status == "inactive" and not r.gpu("g2").sampled_ok
    assert r.fleet_summary() == FleetSummary(
        size=3, in_service=3, slots_in_service=3, running=3, queued=0
    )
    r.submit(req("d"), 0.0)
    r.gpu_down("g1", 1.0, "xid 79")  # "a" goes back to the queue, ahead of "d"
    r.maintenance("g0", 1.0)
    g0, g1, g2 = r.gpus()
    assert (g0.status, g0.out_reasons, g0.running) == ("maintenance", {"maintenance"}, 2)
    assert (g1.status, g1.out_reasons, g1.request_ids) == ("error", {"crashed"}, ())
    assert g2.status == "inactive"
    assert r.fleet_summary() == FleetSummary(
        size=3, in_service=1, slots_in_service=0, running=2, queued=2
    )
    assert all(dataclasses.is_dataclass(v) and v.__slots__ for v in (g0, r.fleet_summary()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        g0.running = 0  # type: ignore[misc]


def test_unknown_gpu_is_an_invalid_value():
    r = router([GpuState(gpu_id="g0")])
    with pytest.raises(InvalidValue) as err:
        r.gpu("nope")
    assert err.value.field == "gpu_id" and err.value.value == "nope"


def test_state_of_and_strategy_name():
    r = router([GpuState(gpu_id="g0")], strategy="round-robin")
    assert r.strategy_name == "round-robin"
    r.submit(req("a"), 0.0)
    r.submit(req("b"), 0.0)
    assert (r.state_of("a"), r.state_of("b"), r.state_of("nope")) == (S.PROCESSING, S.QUEUED, None)
    r.complete("a", 1.0)
    assert r.state_of("a") is S.COMPLETED
    r.forget("a")
    assert r.state_of("a") is None


def test_quota_reads_and_changes():
    r = router([GpuState(gpu_id="g0")], quotas=QuotaLimits(requests_per_minute=10))
    limits = r.set_quota_limits("u", requests_per_minute=3, gpu_minutes=1.0)
    assert limits == r.quota_limits("u") and limits.requests_per_minute == 3
    assert r.quota_limits("other").requests_per_minute == 10
    with pytest.raises(InvalidValue):
        r.set_quota_limits("u", no_such_limit=1)
    use = r.quota_usage("u", 0.0)
    assert (use.requests_per_minute.used, use.gpu_minutes.used) == (0, 0.0)


def test_replay_usage_counts_past_requests_without_holding_slots():
    r = router([GpuState(gpu_id="g0")], quotas=QuotaLimits(requests_per_minute=2))
    r.replay_usage("u", 5, 0.0, gpu_seconds=90.0)
    r.replay_usage("u", 3, 0.0)
    use = r.quota_usage("u", 0.0)
    assert use.requests_per_minute.used == 2 and use.requests_per_day.used == 2
    assert use.concurrent_requests.used == 0 and use.priority_requests.used == 0
    assert use.gpu_minutes.used == 1.5
    r.replay_usage("u", 3, 0.0)  # over the rate limit: counts nothing more, raises nothing
    assert r.quota_usage("u", 0.0).requests_per_minute.used == 2
    assert r.submit(req("a"), 0.0)[0].code == "rate_limited"
    with pytest.raises(InvalidValue):
        r.replay_usage("u", 3, 0.0, gpu_seconds=-1.0)


def test_trusted_request_equals_the_validated_one() -> None:
    """``Request.trusted`` (the simulator's rows, checked once) builds the same frozen
    value as the validating constructor, and it stays frozen."""
    from gpu_router.policy import Request, ResourceRequirements

    res = ResourceRequirements(memory_mb=512.0, expected_duration_ms=250.0)
    args = ("r1", "alice", "llama-7b", 4, "inference", res, 30.0, 12.5)
    made, trusted = Request(*args), Request.trusted(*args)
    assert trusted == made and hash(trusted) == hash(made) and type(trusted) is Request
    assert trusted.expected_duration_s == 0.25
    with pytest.raises(dataclasses.FrozenInstanceError):
        trusted.priority = 5  # type: ignore[misc]


def test_learned_duration_overrides_a_declared_one_when_configured() -> None:
    """Admission's inline declared sizes step aside when ``learned_overrides_declared``
    is set: after two completions of 3 s the record carries the learned 3 s, not the
    declared 1 s (and without the setting, the declared 1 s)."""
    from gpu_router.policy import Request, ResourceRequirements
    from gpu_router.policy.estimator import EstimatorConfig

    res = ResourceRequirements(memory_mb=512.0, expected_duration_ms=1000.0)
    for overrides, expected in ((True, 3.0), (False, 1.0)):
        est = EstimatorConfig(min_observations=2, learned_overrides_declared=overrides)
        r = router([GpuState(gpu_id="g0")], quotas_enabled=False, estimator=est)
        for k in range(2):
            r.submit(Request(f"w{k}", "u", "m", 3, "inference", res), 10.0 * k + 1.0)
            r.complete(f"w{k}", 10.0 * k + 4.0)
        r.submit(Request("x", "u", "m", 3, "inference", res), 30.0)
        assert r.record("x").duration_s == expected
