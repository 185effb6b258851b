"""Reconciling the router's residency with a worker's report of its models."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_router.policy import GpuState, Request, Router, RouterConfig
from gpu_router.policy.model_reports import HeldModel, Reconciled, reconcile
from gpu_router.policy.models import ModelsConfig
from gpu_router.policy.residency import ModelCache
from gpu_router.policy.types import ResourceRequirements


def mb(_: str) -> float:
    return 10.0


def test_a_model_the_worker_lost_is_dropped_and_one_it_holds_is_adopted() -> None:
    held = [HeldModel("a", 10.0, ready_at=1.0), HeldModel("b", 10.0, ready_at=2.0)]
    out = reconcile(held, 40.0, ["c", "b"], taken_at=10.0, grace_s=2.0, memory_mb=mb)
    assert out == Reconciled(dropped=("a",), adopted=("c",), kept=())
    assert out.changed


def test_a_load_in_flight_or_within_grace_is_kept() -> None:
    held = [
        HeldModel("loading", 10.0, ready_at=5.0, pending=True),  # in flight, overdue
        HeldModel("just", 10.0, ready_at=8.5),  # ended 1.5 s before the report
        HeldModel("old", 10.0, ready_at=8.0),  # ended 2 s before: out of grace
    ]
    out = reconcile(held, 100.0, [], taken_at=10.0, grace_s=2.0, memory_mb=mb)
    assert out == Reconciled(dropped=("old",), adopted=(), kept=("loading", "just"))


def test_a_report_that_predates_the_load_does_not_erase_it() -> None:
    cache = ModelCache(100.0)
    cache.load("m", 10.0, now=20.0, load_s=5.0)
    cache.loaded("m", now=25.0)  # done at 25; a report taken at 19 knows nothing of it
    out = reconcile(cache.held(), 100.0, [], taken_at=19.0, grace_s=0.0, memory_mb=mb)
    assert out == Reconciled(kept=("m",))


def test_adoption_takes_the_most_recent_first_and_never_evicts() -> None:
    held = [HeldModel("new", 30.0, ready_at=0.0, pending=True)]
    # the worker still holds x and y (the router evicted them for "new"): 30 + 10 fits
    # one of them only, the most recently used (y)
    out = reconcile(held, 40.0, ["x", "y"], taken_at=1.0, grace_s=0.0, memory_mb=mb)
    assert out == Reconciled(adopted=("y",), kept=("new",))


def test_nothing_changes_when_they_agree() -> None:
    held = [HeldModel("a", 10.0, 0.0), HeldModel("b", 10.0, 0.0)]
    out = reconcile(held, 40.0, ["b", "a"], taken_at=99.0, grace_s=1.0, memory_mb=mb)
    assert out == Reconciled() and not out.changed


ids = st.sampled_from("abcdefgh")
helds = st.lists(
    st.tuples(ids, st.floats(1, 30), st.floats(0, 50), st.booleans()),
    unique_by=lambda t: t[0],
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(
    held=helds,
    reported=st.lists(ids, max_size=8),
    taken_at=st.floats(0, 80),
    grace=st.floats(0, 10),
    cap=st.floats(0, 200),
)
def test_reconcile_properties(held, reported, taken_at, grace, cap) -> None:
    hm = [HeldModel(m, size, ready, pend) for m, size, ready, pend in held]
    sizes = {m: float(len(m) * 7 + ord(m) % 5) for m in "abcdefgh"}
    out = reconcile(hm, cap, reported, taken_at, grace, sizes.__getitem__)
    names = {h.model_id for h in hm}
    by_id = {h.model_id: h for h in hm}
    # dropped: held, not reported, settled and out of grace; the others are kept
    assert set(out.dropped) <= names - set(reported)
    for m in names - set(reported):
        h = by_id[m]
        in_flight = h.pending or taken_at < h.ready_at + grace
        assert (m in out.kept) == in_flight and (m in out.dropped) == (not in_flight)
    # adopted: reported, not held, in the report's order, fitting in the free memory
    assert set(out.adopted) <= set(reported) - names
    assert len(set(out.adopted)) == len(out.adopted)
    order = [m for m in dict.fromkeys(reported) if m in out.adopted]
    last = {m: i for i, m in enumerate(reported)}
    assert sorted(out.adopted, key=last.__getitem__) == list(out.adopted)
    assert len(order) == len(out.adopted)
    left = sum(h.memory_mb for h in hm if h.model_id not in out.dropped)
    added = sum(sizes[m] for m in out.adopted)
    if out.adopted:
        assert left + added <= cap + 1e-9
    # applied, and reconciled again with the same report: nothing more changes
    after = [h for h in hm if h.model_id not in out.dropped]
    after += [HeldModel(m, sizes[m], taken_at) for m in out.adopted]
    again = reconcile(after, cap, reported, taken_at, grace, sizes.__getitem__)
    assert not again.changed


def test_the_cache_applies_a_plan() -> None:
    cache = ModelCache(50.0)
    cache.load("a", 10.0, now=0.0, load_s=5.0)
    cache.load("b", 20.0, now=1.0, load_s=5.0)
    cache.loaded("a", 6.0)
    assert cache.held() == [HeldModel("a", 10.0, 6.0), HeldModel("b", 20.0, 6.0, True)]
    cache.remove("a")
    cache.adopt({"x": 5.0, "y": 7.0}, now=9.0)  # the least recently used, in this order
    assert cache.models() == ("x", "y", "b") and cache.used_mb == 32.0
    assert cache.ready_at("y") == 9.0
    cache.settle("b")
    assert cache.held()[-1] == HeldModel("b", 20.0, 6.0, False)
    for m in cache.models():
        cache.remove(m)
    assert cache.used_mb == 0.0 and cache.models() == ()


def _router(strategy: str = "warm-first") -> Router:
    gpus = [GpuState(f"g{i}", memory_total_mb=80_000.0) for i in range(2)]
    models = ModelsConfig(default_memory_mb=30_000.0, default_load_s=20.0, report_grace_s=2.0)
    cfg = RouterConfig(strategy=strategy, quotas_enabled=False, models=models)
    return Router(gpus, cfg)


def _req(rid: str, model: str, now: float) -> Request:
    res = ResourceRequirements(memory_mb=1000.0, expected_duration_ms=1000.0)
    return Request(rid, "u", model, 3, resources=res, submitted_at=now)


def test_router_a_worker_that_restarted_empty_makes_the_next_request_cold() -> None:
    r = _router()
    _, acts = r.submit(_req("r1", "sd", 0.0), 0.0)
    gpu = acts[0].gpu_id
    r.model_loaded(gpu, "sd", 20.0, 20.0)
    r.complete("r1", 21.0)
    assert r.resident_models(gpu) == ("sd",)
    # a report taken during the load (before its end + grace) keeps it
    assert r.report_models(gpu, [], taken_at=21.5, now=22.0) == []
    assert r.resident_models(gpu) == ("sd",)
    # the worker restarted and holds nothing: the router forgets the model ...
    r.report_models(gpu, [], taken_at=30.0, now=30.0)
    assert r.resident_models(gpu) == ()
    # ... and the next request for it is a cold start
    r.submit(_req("r2", "sd", 31.0), 31.0)
    stats = r.locality()
    assert stats is not None and (stats.cold_starts, stats.warm_starts) == (2, 0)


def test_router_adopts_what_a_worker_reports_and_routes_warm_to_it() -> None:
    r = _router()
    r.report_models("g1", ["sd"], taken_at=5.0, now=5.0)
    assert r.resident_models("g1") == ("sd",) and r.resident_models("g0") == ()
    _, acts = r.submit(_req("r1", "sd", 6.0), 6.0)
    assert acts[0].gpu_id == "g1"
    stats = r.locality()
    assert stats is not None and (stats.cold_starts, stats.warm_starts) == (0, 1)
    assert stats.memory_used_mb == 30_000.0


def test_router_keeps_a_load_in_flight_past_its_estimate() -> None:
    r = _router()
    _, acts = r.submit(_req("r1", "sd", 0.0), 0.0)
    gpu = acts[0].gpu_id
    # expected ready at 20 s; at 40 s the worker still loads (its report lacks it)
    r.report_models(gpu, [], taken_at=40.0, now=40.0)
    assert r.resident_models(gpu) == ("sd",)
    r.cancel("r1", 41.0)  # the job that waited for it left: no longer in flight
    r.report_models(gpu, [], taken_at=42.0, now=42.0)
    assert r.resident_models(gpu) == ()


ops = st.lists(
    st.tuples(
        st.sampled_from(["start", "report", "loaded", "finish"]),
        st.integers(0, 2),  # GPU
        st.lists(st.sampled_from("abcde"), max_size=4, unique=True),
        st.floats(0, 5),  # time step
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(steps=ops)
def test_residency_stays_consistent_under_placements_and_reports(steps) -> None:
    """Whatever mix of placements, load ends and reports: the holders index is the
    caches' content, each cache's used memory is the sum of its models and fits."""
    from gpu_router.policy.models import ModelRegistry
    from gpu_router.policy.residency import Residency

    sizes = {"a": 30.0, "b": 20.0, "c": 50.0, "d": 10.0, "e": 120.0}
    cfg = ModelsConfig(
        default_memory_mb=25.0, models={m: {"memory_mb": mb} for m, mb in sizes.items()}
    )
    res = Residency([200.0] * 3, 0.5, ModelRegistry(cfg))
    now = 0.0
    for op, gpu, models, dt in steps:
        now += dt
        if op == "start" and models:
            res.start(gpu, models[0], now, 1.0)
        elif op == "report":
            res.reconcile(gpu, models, now, 1.0)
        elif op == "loaded" and models:
            res.loaded(gpu, models[0], now)
        elif op == "finish" and models:
            res.finish(gpu, models[0], now, idle=True)
        for i, cache in enumerate(res.caches):
            assert cache.used_mb == sum(sizes[m] for m in cache.models())
            assert cache.used_mb <= cache.capacity_mb
            for m in cache.models():
                assert i in res.holders[m]
        for m, gpus in res.holders.items():
            assert gpus and all(m in res.caches[i] for i in gpus)
