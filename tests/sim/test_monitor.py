import pytest

from gpu_router.sim import run_scenario
from gpu_router.sim.api import _default_router
from gpu_router.sim.fleet import GpuSpec
from gpu_router.sim.gpus import SampleClock, SimGpu
from gpu_router.sim.scenario import parse_scenario
from gpu_router.sim.service_model import ServiceModel


def test_period_utilization_from_marks():
    clock = SampleClock()
    g = SimGpu(0, GpuSpec("g", "H100", 80_000.0, (9, 0), 1.0, 1), ServiceModel(), clock)
    g.add(1, 10.0, 0.0, 0.25)  # busy from 0.25 in the period [0, 1)
    assert g.period_utilization(1.0, 1.0) == pytest.approx(0.75)
    clock.period_start, clock.touched = 1.0, set()
    assert g.period_utilization(2.0, 1.0) == 1.0  # untouched, busy all period
    clock.period_start = 2.0
    g.remove(1, 2.5)
    assert g.period_utilization(3.0, 1.0) == pytest.approx(0.5)
    clock.period_start = 3.0
    assert g.period_utilization(4.0, 1.0) == 0.0


class Recorder:
    def __init__(self, inner, log):
        self.inner, self.log = inner, log

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def observe(self, state, now):
        self.log[(round(state.sampled_at, 6), state.gpu_id)] = state.utilization_pct
        return self.inner.observe(state, now)


def test_skipping_unchanged_sends_the_same_readings():
    def readings(skip):
        seen = {}
        sc = parse_scenario(
            {
                "horizon_s": 40,
                "fleet": {"count": 4},
                "workload": {"load": 0.6},
                "router": {"quotas_enabled": False},
                "monitor": {"period_s": 0.5, "lag_s": 0.2, "skip_unchanged": skip},
            }
        )
        run_scenario(
            sc,
            "round-robin",
            1,
            router_factory=lambda g, c, r: Recorder(_default_router(g, c, r), seen),
        )
        return seen

    full, sparse = readings(False), readings(True)
    assert len(sparse) < len(full)
    assert all(full[k] == pytest.approx(v) for k, v in sparse.items())
    assert sum(0 < v < 100 for v in full.values()) > 0  # partial periods are measured
