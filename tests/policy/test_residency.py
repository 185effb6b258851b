"""GPU model residency: the LRU cache, and the Router placing with it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_router.policy import Dispatch, GpuState, Request, Router, RouterConfig
from gpu_router.policy.models import ModelRegistry, ModelsConfig
from gpu_router.policy.residency import LocalityStats, ModelCache, Residency
from gpu_router.policy.types import ResourceRequirements

MODELS = {"default_memory_mb": 30_000.0, "default_load_s": 20.0, "cache_share": 0.75}


def router(
    n: int = 2,
    strategy: str = "earliest-completion",
    slots: int = 1,
    options: dict | None = None,
    **models,
) -> Router:
    gpus = [GpuState(f"g{i}", memory_total_mb=80_000.0, slots=slots) for i in range(n)]
    locality = ModelsConfig(**{**MODELS, **models})
    cfg = RouterConfig(
        strategy=strategy,
        strategy_options=options or {},
        quotas_enabled=False,
        models=locality,
    )
    return Router(gpus, cfg)


def req(rid: str, model: str, now: float = 0.0, duration_ms: float = 10_000.0) -> Request:
    res = ResourceRequirements(memory_mb=1000.0, expected_duration_ms=duration_ms)
    return Request(rid, "u", model, 3, resources=res, submitted_at=now)


def dispatches(actions: list) -> list[Dispatch]:
    return [a for a in actions if isinstance(a, Dispatch)]


def test_cache_evicts_least_recently_used_until_the_model_fits() -> None:
    c = ModelCache(10.0)
    assert c.load("a", 4.0, 0.0, 5.0) == []
    assert c.load("b", 4.0, 0.0, 5.0) == []
    c.touch("a")  # b is now the oldest
    assert c.load("c", 4.0, 1.0, 5.0) == ["b"]
    assert c.models() == ("a", "c") and c.used_mb == 8.0
    assert c.ready_at("c") == 6.0 and c.ready_at("b") is None
    c.loaded("c", 3.0)
    assert c.ready_at("c") == 3.0
    assert c.load("huge", 11.0, 0.0, 1.0) == [] and "huge" not in c  # never kept
    assert c.load("big", 10.0, 0.0, 1.0) == ["a", "c"] and c.used_mb == 10.0
    assert c.drop() == ["big"] and c.used_mb == 0.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abcdef"), st.floats(min_value=0.0, max_value=12.0)),
        max_size=40,
    )
)
def test_cache_never_exceeds_its_capacity(loads: list[tuple[str, float]]) -> None:
    c = ModelCache(10.0)
    for t, (model, mb) in enumerate(loads):
        if model in c:
            c.touch(model)
        else:
            c.load(model, mb, float(t), 1.0)
        assert c.used_mb <= 10.0 + 1e-9
        assert len(set(c.models())) == len(c.models())


def test_residency_counts_holders_and_busy_time() -> None:
    registry = ModelRegistry(ModelsConfig(default_memory_mb=30.0, default_load_s=20.0))
    res = Residency([100.0, 100.0], 0.5, registry)
    wait, evicted = res.start(0, "a", 0.0, 10.0)
    assert (wait, evicted) == (20.0, []) and res.holding("a") == (0,)
    assert res.free_in(0, 5.0) == 25.0 and res.expected_load_s(0, "a", 5.0) == 15.0
    res.finish(0, "a", 30.0, idle=True)
    assert res.free_in(0, 30.0) == 0.0 and res.running == {}
    assert res.start(0, "b", 40.0, 1.0)[1] == ["a"] and res.holding("a") == ()
    assert res.start(0, "c", 41.0, 1.0)[1] == ["b"] and res.holding("b") == ()
    assert res.replicas("c") == 1 and res.cold_starts == 3 and res.warm_starts == 0
    res.drop(0)
    assert res.replicas("b") == res.replicas("c") == 0 and res.memory_used_mb() == 0.0


def test_router_pays_the_load_once_then_places_warm() -> None:
    r = router()
    _d, actions = r.submit(req("r1", "sd"), 0.0)
    (first,) = dispatches(actions)
    assert (first.gpu_id, first.model_id, first.cold, first.load_s) == ("g0", "sd", True, 20.0)
    assert r.resident_models("g0") == ("sd",) and r.resident_models("g1") == ()
    r.model_loaded("g0", "sd", 18.0, 18.0)
    assert r.get_model_requirements("sd")["load_s"] == 18.0  # learned
    r.complete("r1", 28.0)
    _d, actions = r.submit(req("r2", "sd", 30.0), 30.0)
    (second,) = dispatches(actions)
    assert (second.gpu_id, second.cold, second.load_s) == ("g0", False, 0.0)
    assert r.locality() == LocalityStats(1, 1, 30_000.0)


def test_second_model_evicts_the_first_when_the_cache_is_full() -> None:
    r = router(n=1)
    r.submit(req("r1", "a"), 0.0)
    r.complete("r1", 30.0)
    r.submit(req("r2", "b", 31.0), 31.0)
    r.complete("r2", 61.0)
    _d, actions = r.submit(req("r3", "c", 62.0), 62.0)  # 60 GB cache: two 30 GB models
    (d,) = dispatches(actions)
    assert d.cold and d.evicted == ("a",) and r.resident_models("g0") == ("b", "c")


def test_in_flight_load_is_counted_on_a_shared_gpu() -> None:
    r = router(n=1, slots=2)
    r.submit(req("r1", "a"), 0.0)
    _d, actions = r.submit(req("r2", "a", 5.0), 5.0)
    (d,) = dispatches(actions)
    assert not d.cold and d.load_s == 15.0  # the load started at 0 ends at 20


def test_locality_off_changes_nothing() -> None:
    r = Router([GpuState("g0")], RouterConfig(quotas_enabled=False))
    _d, actions = r.submit(req("r1", "sd"), 0.0)
    assert dispatches(actions) == [Dispatch("r1", "g0")]
    assert r.locality() is None and r.resident_models("g0") == ()


def test_crash_and_restart_forget_what_was_resident() -> None:
    r = router()
    r.submit(req("r1", "a"), 0.0)
    r.gpu_down("g0", 1.0)
    assert r.resident_models("g0") == ()
    r.gpu_up("g0", 2.0)
    r.restart("g1", 3.0)  # the retried r1 went to g1 and is aborted again
    assert r.resident_models("g1") == ()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.booleans()),
        min_size=1,
        max_size=30,
    ),
    st.sampled_from(["earliest-completion", "warm-first", "locality-cost", "locality-replicate"]),
)
def test_placements_respect_the_cache(ops: list[tuple[str, bool]], strategy: str) -> None:
    """Caches never exceed their memory; a warm placement on a GPU whose load was
    reported done pays nothing; a cold one was not resident before."""
    r = router(n=3, strategy=strategy, default_load_s=5.0)
    loaded: set[tuple[str, str]] = set()
    now = 0.0
    running: list[str] = []
    for k, (model, finish_one) in enumerate(ops):
        now += 1.0
        before = {g: r.resident_models(g) for g in r.gpu_ids}
        _d, actions = r.submit(req(f"r{k}", model, now), now)
        if finish_one and running:
            actions += r.complete(running.pop(0), now)
        actions += r.tick(now)
        for d in dispatches(actions):
            running.append(d.request_id)
            assert d.model_id is not None
            if d.cold:
                assert d.model_id not in before[d.gpu_id] or d.request_id != f"r{k}"
                r.model_loaded(d.gpu_id, d.model_id, 5.0, now)
                loaded.add((d.gpu_id, d.model_id))
            elif (d.gpu_id, d.model_id) in loaded:
                assert d.load_s == 0.0
        for g in r.gpu_ids:
            held = r.resident_models(g)
            assert len(held) * 30_000.0 <= 60_000.0
            loaded = {(gg, m) for gg, m in loaded if gg != g or m in held}


def test_the_model_manager_limits_where_a_model_runs() -> None:
    from gpu_router.policy import Reject

    gpus = [
        GpuState("g0", name="A100", compute_capability=(8, 0)),
        GpuState("g1", name="H100"),
    ]
    models = {
        "sdxl": {"gpu_types": ["H100"]},
        "new": {"min_compute_capability": [9, 0]},
        "t4only": {"gpu_types": ["T4"]},
    }
    cfg = RouterConfig(quotas_enabled=False, models=ModelsConfig(models=models))
    r = Router(gpus, cfg)
    assert [d.gpu_id for d in dispatches(r.submit(req("r1", "sdxl"), 0.0)[1])] == ["g1"]
    r.complete("r1", 1.0)
    assert [d.gpu_id for d in dispatches(r.submit(req("r2", "new"), 2.0)[1])] == ["g1"]
    assert [d.gpu_id for d in dispatches(r.submit(req("r3", "other"), 2.0)[1])] == ["g0"]
    decision, _ = r.submit(req("r4", "t4only"), 3.0)
    assert isinstance(decision, Reject) and decision.code == "incompatible"
