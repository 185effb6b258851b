import numpy as np
import pytest

from gpu_router.sim.scenario import WorkloadSpec
from gpu_router.sim.workload import (
    arrival_rate,
    generate,
    mean_work,
    service_sample,
    user_weights,
)


def rng(seed=0):
    return np.random.default_rng(seed)


def test_rate_from_load():
    spec = WorkloadSpec(load=0.8, service={"mean_s": 2.0})
    assert arrival_rate(spec, capacity=10.0) == pytest.approx(4.0)
    spec = WorkloadSpec(rate_rps=3.0)
    assert arrival_rate(spec, 10.0) == 3.0
    spec = WorkloadSpec(
        types={"inference": {"weight": 3}, "training": {"weight": 1, "work_scale": 5}}
    )
    assert mean_work(spec) == pytest.approx(2.0)


@pytest.mark.parametrize("process", ["poisson", "mmpp", "diurnal"])
def test_mean_rate_is_the_target(process):
    spec = WorkloadSpec(
        load=0.5, arrival={"process": process, "period_s": 1000.0, "burst_mean_s": 5}
    )
    wl = generate(rng(), spec, capacity=20.0, horizon_s=4000.0)
    assert len(wl) / 4000.0 == pytest.approx(10.0, rel=0.06)
    assert np.all(np.diff(wl.arrival_s) >= 0)


def test_mmpp_is_burstier_than_poisson():
    def cv2_counts(process):
        spec = WorkloadSpec(load=0.5, arrival={"process": process})
        wl = generate(rng(1), spec, 20.0, 2000.0)
        counts = np.bincount(wl.arrival_s.astype(int))
        return counts.var() / counts.mean()

    assert cv2_counts("poisson") == pytest.approx(1.0, abs=0.15)
    assert cv2_counts("mmpp") > 3.0


@pytest.mark.parametrize("dist", ["exponential", "deterministic", "lognormal", "gamma"])
def test_service_moments(dist):
    x = service_sample(
        rng(2),
        WorkloadSpec(service={"distribution": dist, "mean_s": 2.0, "cv": 0.5}).service,
        200_000,
    )
    assert x.mean() == pytest.approx(2.0, rel=0.01)
    cv = {"exponential": 1.0, "deterministic": 0.0}.get(dist, 0.5)
    assert x.std() / x.mean() == pytest.approx(cv, abs=0.02)


def test_mix_users_priorities_models():
    spec = WorkloadSpec(
        load=0.5,
        priorities={1: 1, 5: 3},
        models=[
            {"id": "a", "weight": 1, "memory_mb": 100},
            {"id": "b", "weight": 1, "work_scale": 2},
        ],
        users={"count": 5, "heavy_share": 0.5},
    )
    wl = generate(rng(3), spec, 10.0, 2000.0)
    assert set(np.unique(wl.priority)) == {1, 5}
    assert (wl.priority == 5).mean() == pytest.approx(0.75, abs=0.03)
    assert (wl.user == 0).mean() == pytest.approx(0.5, abs=0.03)
    assert wl.memory_mb[wl.model_idx == 0].min() == 100
    assert wl.work[wl.model_idx == 1].mean() == pytest.approx(
        2 * wl.work[wl.model_idx == 0].mean(), rel=0.1
    )
    assert user_weights(3, 0.0, 0.0).tolist() == pytest.approx([1 / 3] * 3)


def test_same_seed_same_workload():
    spec = WorkloadSpec(load=0.5, arrival={"process": "mmpp"})
    a, b = generate(rng(9), spec, 5.0, 100.0), generate(rng(9), spec, 5.0, 100.0)
    assert np.array_equal(a.arrival_s, b.arrival_s) and np.array_equal(a.work, b.work)
