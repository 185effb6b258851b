"""Locality-aware strategies: warm-first, the cost-based delay, replication of hot models."""

from __future__ import annotations

import pytest

from gpu_router.policy import Dispatch, InvalidValue, Router, make_strategy
from gpu_router.policy.strategies import LOCALITY_STRATEGIES

from .test_residency import dispatches, req, router


def placed(actions: list) -> list[tuple[str, str, bool]]:
    return [(d.request_id, d.gpu_id, d.cold) for d in dispatches(actions)]


def warm_g1(r: Router) -> None:
    """Leave model ``a`` resident and loaded on g1 (g0 busy meanwhile), both GPUs idle."""
    r.submit(req("w0", "z"), 0.0)  # g0
    r.submit(req("w1", "a"), 0.0)  # g1
    r.model_loaded("g1", "a", 20.0, 20.0)
    r.complete("w0", 30.0)
    r.complete("w1", 30.0)


def test_warm_first_goes_where_the_model_is() -> None:
    r = router(strategy="warm-first")
    warm_g1(r)
    _d, actions = r.submit(req("r1", "a", 31.0), 31.0)
    assert placed(actions) == [("r1", "g1", False)]
    blind = router(strategy="earliest-completion")
    warm_g1(blind)
    _d, actions = blind.submit(req("r1", "a", 31.0), 31.0)
    assert placed(actions) == [("r1", "g0", True)]


def test_warm_first_falls_back_to_a_cold_gpu() -> None:
    r = router(strategy="warm-first")
    warm_g1(r)
    r.submit(req("r1", "a", 31.0), 31.0)  # g1 busy now
    _d, actions = r.submit(req("r2", "a", 32.0), 32.0)
    assert placed(actions) == [("r2", "g0", True)]


def test_cost_based_waits_for_the_warm_gpu_when_that_is_sooner() -> None:
    r = router(strategy="locality-cost")
    warm_g1(r)
    r.submit(req("r1", "a", 31.0), 31.0)  # g1, expected free at 41
    # cold on g0: 20 s load + 10 s run = 30 s; warm on g1: 9 + 10 = 19 s: wait
    _d, actions = r.submit(req("r2", "a", 32.0), 32.0)
    assert actions == [] and r.queue_length == 1 and r.next_wakeup() == 92.0
    actions = r.complete("r1", 41.0)
    assert placed(actions) == [("r2", "g1", False)]


def test_cost_based_loads_when_the_warm_gpu_is_far() -> None:
    r = router(strategy="locality-cost")
    warm_g1(r)
    r.submit(req("r1", "a", 31.0, duration_ms=100_000.0), 31.0)  # g1 busy 100 s
    _d, actions = r.submit(req("r2", "a", 32.0), 32.0)
    assert placed(actions) == [("r2", "g0", True)]


def test_cost_based_delay_is_bounded() -> None:
    r = router(strategy="locality-cost")
    warm_g1(r)
    r.submit(req("r1", "a", 31.0), 31.0)
    r.submit(req("r2", "a", 32.0), 32.0)  # deferred, bound 32 + 60 = 92
    assert r.tick(91.0) == []  # r1 overran its estimate: still waiting for g1
    assert placed(r.tick(92.0)) == [("r2", "g0", True)]
    assert r.next_wakeup() is None


def test_a_burst_for_one_cold_model_does_not_start_a_load_per_request() -> None:
    loads = {}
    for name in ("earliest-completion", "warm-first", "locality-replicate"):
        r = router(n=6, strategy=name)
        actions = []
        for k in range(6):
            actions += r.submit(req(f"b{k}", "new", 0.0), 0.0)[1]
        loads[name] = sum(d.cold for d in dispatches(actions))
    # replicate: 1 load, 2 wait per replica, then a second load, 2 more wait
    assert loads == {"earliest-completion": 6, "warm-first": 6, "locality-replicate": 2}


def test_replicate_adds_replicas_as_the_backlog_grows() -> None:
    off = {"backlog_per_slot": None}  # no work conservation: only the replication rule
    r = router(n=4, strategy="locality-replicate", options=off, default_load_s=5.0)
    first = []
    for k in range(9):
        first += r.submit(req(f"b{k}", "hot", 0.0), 0.0)[1]
    assert placed(first) == [("b0", "g0", True), ("b3", "g1", True), ("b6", "g2", True)]
    assert r.queue_length == 6
    assert placed(r.complete("b0", 15.0)) == [("b1", "g0", False)]


def test_under_a_backlog_no_gpu_idles_for_a_deferral() -> None:
    """Four or more queued requests on four slots: the pass that deferred every
    request places the first one deferred anyway (on the idle GPU)."""
    r = router(n=4, strategy="locality-replicate", default_load_s=5.0)
    first = []
    for k in range(9):
        first += r.submit(req(f"b{k}", "hot", 0.0), 0.0)[1]
    assert placed(first) == [
        ("b0", "g0", True),
        ("b3", "g1", True),
        ("b1", "g2", True),
        ("b2", "g3", True),
    ]
    assert r.queue_length == 5


@pytest.mark.parametrize("name", LOCALITY_STRATEGIES)
def test_locality_off_they_place_as_earliest_completion(name: str) -> None:
    from gpu_router.policy import GpuState, RouterConfig

    r = Router([GpuState("g0"), GpuState("g1")], RouterConfig(strategy=name))
    out = []
    for k in range(3):
        out += r.submit(req(f"r{k}", "a"), 0.0)[1]
    assert out == [Dispatch("r0", "g0"), Dispatch("r1", "g1")] and r.queue_length == 1


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("locality-cost", {"max_delay_s": -1}),
        ("locality-replicate", {"per_replica": -1}),
        ("locality-replicate", {"max_delay_s": "x"}),
        ("locality-cost", {"backlog_per_slot": -1.0}),
    ],
)
def test_bad_options_are_refused(name: str, options: dict) -> None:
    with pytest.raises(InvalidValue):
        make_strategy(name, options)
