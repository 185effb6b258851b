"""Strategies: the seed's select_gpu reproduced exactly; baselines on small fleets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_router.policy import GpuState, InvalidValue, Request, make_strategy
from gpu_router.policy import seed_reference as seed
from gpu_router.policy.fleet import FleetView
from gpu_router.policy.health import calculate_health_score
from gpu_router.policy.strategies import STRATEGIES, Choice
from gpu_router.policy.strategies.hybrid_seed import DEPLOYMENT_GUIDE_WEIGHTS, SEED_WEIGHTS
from gpu_router.policy.types import ResourceRequirements


def gpu(gid: str, **kw) -> GpuState:
    return GpuState(gpu_id=gid, **kw)


def as_seed_dict(g: GpuState) -> dict:
    return {
        "memory_total": g.memory_total_mb,
        "memory_used": g.memory_used_mb,
        "utilization_percent": g.utilization_pct,
        "temperature": g.temperature_c,
        "power_usage": g.power_w,
        "power_limit": g.power_limit_w,
        "error_rate": g.error_rate,
        "performance_index": g.performance_index,
        "capabilities": g.capabilities,
        "compute_capability": f"{g.compute_capability[0]}.{g.compute_capability[1]}",
    }


def seed_filter_candidates(req: Request, fleet: FleetView) -> np.ndarray:
    """The seed's own filters: compute capability, total memory and free memory."""
    cc = req.resources.min_compute_capability or (0, 0)
    ok = (fleet.compute_capability >= cc[0] * 100 + cc[1]) & (
        fleet.memory_total - fleet.memory_used >= req.memory_mb
    )
    return np.flatnonzero(ok)


def vectorised_select(req: Request, gpus: list[GpuState], weights=None) -> str | None:
    fleet = FleetView(gpus)
    cands = seed_filter_candidates(req, fleet)
    if len(cands) == 0:
        return None
    strat = make_strategy("hybrid-seed-sampled", {"weights": weights} if weights else None)
    i = strat.choose(Choice(req, 1.0, fleet, cands, np.random.default_rng(0), 0.0))
    return fleet.gpu_ids[i]


def reference_select(req: Request, gpus: list[GpuState], weights=SEED_WEIGHTS) -> str | None:
    cc = req.resources.min_compute_capability
    reqs = {"min_compute_capability": f"{cc[0]}.{cc[1]}"} if cc else {}
    return seed.select_gpu(
        {
            "user_id": req.user_id,
            "model_id": req.model_id,
            "priority": req.priority,
            "type": req.type,
            "resource_requirements": {"memory": req.memory_mb},
        },
        {g.gpu_id: as_seed_dict(g) for g in gpus},
        {},
        lambda _m: reqs,
        weights,
    )


def request(memory=0.0, priority=3, rtype="inference", cc=None) -> Request:
    return Request(
        "r1",
        "u1",
        "m1",
        priority,
        rtype,
        ResourceRequirements(memory_mb=memory, min_compute_capability=cc),
    )


# (case, gpus, request, expected winner) computed by hand from the seed's formula
CASES = [
    (
        "emptier memory wins",
        [gpu("a", memory_used_mb=40_000), gpu("b", memory_used_mb=10_000)],
        request(),
        "b",
    ),
    (
        "idle compute wins",
        [gpu("a", utilization_pct=90), gpu("b", utilization_pct=10)],
        request(),
        "b",
    ),
    (
        "free-memory filter drops the emptier-looking one",
        [gpu("a", memory_total_mb=16_000, memory_used_mb=0), gpu("b", memory_used_mb=60_000)],
        request(memory=18_000),
        "b",
    ),
    (
        "compute capability filter",
        [
            gpu("a", compute_capability=(7, 0)),
            gpu("b", compute_capability=(8, 0), memory_used_mb=70_000),
        ],
        request(cc=(8, 0)),
        "b",
    ),
    ("nothing fits", [gpu("a", memory_total_mb=16_000)], request(memory=20_000), None),
    (
        "hot GPU loses on health",
        [gpu("a", temperature_c=95, power_w=690), gpu("b")],
        request(),
        "b",
    ),
    (
        "performance index breaks an otherwise equal pair",
        [gpu("a", performance_index=0.2), gpu("b", performance_index=0.9)],
        request(),
        "b",
    ),
    ("exact tie goes to the first listed", [gpu("a"), gpu("b")], request(), "a"),
    (
        "type capability scores",
        [gpu("a", capabilities=frozenset({"training"})), gpu("b")],
        request(rtype="inference"),
        "b",
    ),
]


@pytest.mark.parametrize(("case", "gpus", "req", "winner"), CASES, ids=[c[0] for c in CASES])
def test_seed_select_gpu_table(case, gpus, req, winner):
    assert reference_select(req, gpus) == winner
    assert vectorised_select(req, gpus) == winner


def test_seed_quota_check_refuses_over_quota_user():
    quotas = {"u1": {"gpu_usage": 2, "gpu_limit": 2}}
    assert seed.select_gpu({"user_id": "u1"}, {"a": as_seed_dict(gpu("a"))}, quotas) is None


def test_calculate_health_score_exact():
    # temp 75 -> 0.5; power 350/700 -> 0.5; error 0.1 -> 0.9
    g = gpu("a", temperature_c=75, power_w=350, power_limit_w=700, error_rate=0.1)
    assert calculate_health_score(g) == pytest.approx(0.4 * 0.5 + 0.3 * 0.5 + 0.3 * 0.9)
    assert seed.calculate_health_score(as_seed_dict(g)) == calculate_health_score(g)
    assert calculate_health_score(gpu("b", temperature_c=120, power_w=0, error_rate=0)) == (
        pytest.approx(0.6)
    )
    assert calculate_health_score(gpu("c", temperature_c=40, power_limit_w=0)) == (
        pytest.approx(0.4 + 0.15 + 0.3)
    )


gpu_states = st.builds(
    lambda i, used, util, temp, power, err, perf, cc: gpu(
        f"g{i}",
        memory_used_mb=used,
        utilization_pct=util,
        temperature_c=temp,
        power_w=power,
        error_rate=err,
        performance_index=perf,
        compute_capability=cc,
    ),
    st.integers(0, 10**6),
    st.floats(0, 81_559),
    st.floats(0, 100),
    st.floats(20, 110),
    st.floats(0, 700),
    st.floats(0, 1),
    st.floats(0, 1),
    st.sampled_from([(7, 0), (8, 0), (9, 0)]),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(gpu_states, min_size=1, max_size=12, unique_by=lambda g: g.gpu_id),
    st.floats(0, 90_000),
    st.integers(1, 5),
    st.sampled_from([None, SEED_WEIGHTS, DEPLOYMENT_GUIDE_WEIGHTS]),
)
def test_vectorised_seed_equals_reference(gpus, memory, priority, weights):
    req = request(memory=memory, priority=priority)
    ref = reference_select(req, gpus, weights or SEED_WEIGHTS)
    vec = vectorised_select(req, gpus, weights)
    if ref != vec:  # only float rounding may split an exact tie
        fleet = FleetView(gpus)
        strat = make_strategy("hybrid-seed-sampled", {"weights": weights} if weights else None)
        cands = seed_filter_candidates(req, fleet)
        s = strat.scores(Choice(req, 1.0, fleet, cands, np.random.default_rng(0), 0.0))
        by_id = dict(zip([fleet.gpu_ids[c] for c in cands], s, strict=True))
        assert by_id[ref] == pytest.approx(by_id[vec], abs=1e-12)


def test_four_weight_form_is_accepted_and_unknown_weights_refused():
    s = make_strategy("hybrid", {"weights": DEPLOYMENT_GUIDE_WEIGHTS})
    assert s.weights["type"] == 0.0 and s.weights["usage"] == 0.4
    with pytest.raises(InvalidValue, match="weights"):
        make_strategy("hybrid-seed", {"weights": {"speed": 1.0}})
    with pytest.raises(InvalidValue, match="strategy"):
        make_strategy("fastest")


def choice_for(fleet: FleetView, rng=None, duration=1.0, cands=None) -> Choice:
    cands = np.arange(fleet.size) if cands is None else np.asarray(cands)
    return Choice(request(), duration, fleet, cands, rng or np.random.default_rng(1), 0.0)


def test_counting_inflight_changes_the_seed_choice():
    fleet = FleetView([gpu("a", utilization_pct=0), gpu("b", utilization_pct=5)])
    fleet.running[0] = 1  # the router placed one on "a" since the sample
    assert make_strategy("hybrid-seed-sampled").choose(choice_for(fleet)) == 0
    assert make_strategy("hybrid-seed").choose(choice_for(fleet)) == 1


def test_round_robin_cycles_over_candidates():
    fleet = FleetView([gpu(f"g{i}") for i in range(4)])
    rr = make_strategy("round-robin")
    picks = [rr.choose(choice_for(fleet, cands=[0, 2, 3])) for _ in range(5)]
    assert picks == [0, 2, 3, 0, 2]


def test_jsq_least_loaded_and_least_work_left():
    fleet = FleetView([gpu("a"), gpu("b"), gpu("c")])
    fleet.running[:] = [1, 0, 1]
    fleet.queued[:] = [2, 1, 0]
    fleet.work_left_s[:] = [5.0, 9.0, 1.0]
    assert make_strategy("join-shortest-queue").choose(choice_for(fleet)) == 1
    assert make_strategy("least-work-left").choose(choice_for(fleet)) == 2
    assert make_strategy("least-loaded").choose(choice_for(fleet)) == 1


def test_power_of_d_samples_d_and_joins_the_shortest():
    fleet = FleetView([gpu(f"g{i}") for i in range(10)])
    fleet.queued[:] = np.arange(10)
    p2 = make_strategy("power-of-d", {"d": 2})
    rng = np.random.default_rng(7)
    picks = [p2.choose(choice_for(fleet, rng=rng)) for _ in range(2000)]
    # the smaller of two distinct uniform draws from 0..9: P(min = k) = 2(9-k)/90
    freq = np.bincount(picks, minlength=10) / len(picks)
    expected = np.array([2 * (9 - k) / 90 for k in range(10)])
    assert np.abs(freq - expected).max() < 0.03
    with pytest.raises(InvalidValue):
        make_strategy("power-of-d", {"d": 0})


def test_earliest_completion_prefers_fast_and_healthy():
    fleet = FleetView(
        [
            gpu("slow", speed=0.25),
            gpu("fast", speed=1.0),
            gpu("hot", speed=2.0, temperature_c=100, power_w=700, error_rate=1.0),
        ]
    )
    ec = make_strategy("earliest-completion")
    assert ec.choose(choice_for(fleet, duration=4.0)) == 1  # "hot" is below min_health
    fleet.work_left_s[1] = 10.0  # busy fast GPU: the slow one now finishes first
    assert ec.choose(choice_for(fleet, duration=1.0, cands=[0, 1])) == 0


def test_every_registered_strategy_returns_a_candidate():
    fleet = FleetView([gpu(f"g{i}", utilization_pct=i * 7.0) for i in range(8)])
    for name in STRATEGIES:
        s = make_strategy(name)
        for _ in range(5):
            assert s.choose(choice_for(fleet, cands=[1, 4, 6])) in (1, 4, 6)


def test_earliest_completion_listed_choice_equals_the_numpy_choice():
    """``choose_listed`` (small fleets, pure Python) picks what ``choose`` picks: the same
    arithmetic, the health filter and the first-index tie-break."""
    from gpu_router.policy.strategies.earliest_completion import EarliestCompletion

    rng = np.random.default_rng(7)
    for trial in range(200):
        n = int(rng.integers(1, 12))
        gpus = [
            GpuState(
                gpu_id=f"g{i}",
                speed=float(rng.choice([0.5, 1.0, 2.0])),
                slots=int(rng.integers(1, 3)),
                temperature_c=float(rng.choice([40.0, 95.0])),
            )
            for i in range(n)
        ]
        f = FleetView(gpus)
        for i in range(n):
            f.add_work(i, float(rng.choice([0.0, 1.0, 2.5])))
        s = EarliestCompletion(min_health=float(rng.choice([0.0, 0.3, 0.99])))
        cands = sorted(rng.choice(n, size=int(rng.integers(1, n + 1)), replace=False).tolist())
        duration = float(rng.choice([0.5, 2.0]))
        req = Request("r", "u", "m", 3)
        want = s.choose(Choice(req, duration, f, np.array(cands), rng, 0.0))
        assert s.choose_listed(f, cands, duration) == want, trial
