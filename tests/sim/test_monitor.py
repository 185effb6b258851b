from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_router.sim import load_scenario, run_scenario
from gpu_router.sim.api import _default_router
from gpu_router.sim.fleet import GpuSpec
from gpu_router.sim.gpus import SampleClock, SimGpu
from gpu_router.sim.monitor import delay_to, grid_before
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


@settings(max_examples=60, deadline=None)
@given(
    g=st.one_of(st.just(0.0), st.floats(0.0, 1e7)),
    p=st.one_of(st.sampled_from([0.1, 0.275, 0.5, 1.0, 10.0]), st.floats(1e-3, 100.0)),
    steps=st.floats(0.0, 5_000.0),
)
def test_grid_before_is_repeated_addition(g, p, steps):
    now = g + steps * p
    t = g
    while t + p < now:
        t = t + p
    assert grid_before(g, p, now) == t


@pytest.mark.parametrize("now", [0.0, 1e-300, 3.7, 1e6 + 0.123])
def test_delay_to_lands_exactly(now):
    for at in (now, now + 0.1, now * 3 + 0.3, now + 1e-9):
        assert now + delay_to(now, at) == at


class Observed(Recorder):
    def observe(self, state, now):
        self.log[len(self.log)] = (now, state.sampled_at, state.gpu_id, state.utilization_pct)
        return self.inner.observe(state, now)


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"monitor": {"period_s": 0.5, "lag_s": 0.2}},
        {
            "faults": [
                {"kind": "monitor_outage", "rate_per_gpu_hour": 3, "duration_s": 30},
                {"kind": "crash", "rate_per_gpu_hour": 1, "duration_s": 20, "detect_s": 1.0},
                {"kind": "xid_storm", "gpus": [1], "at_s": 300, "duration_s": 100},
            ],
            "router": {"retry": {"max_retries": 10}},
        },
        {"fleet": {"count": 3, "mode": "shared", "slots": 3}, "workload": {"rate_rps": 0.2}},
    ],
    ids=["plain", "lag<period", "faults", "shared"],
)
def test_sleeping_through_idle_time_changes_nothing(extra):
    """The monitor that sleeps while nothing changes sends the same readings at the same
    times as one that ticks through, so every table is the same to the last digit."""
    base = {
        "horizon_s": 1500,
        "fleet": {"count": 4},
        "workload": {"rate_rps": 0.05, "service": {"distribution": "lognormal", "cv": 2.0}},
    }

    compare_sleeping(lambda sleep: parse_scenario(with_sleep({**base, **extra}, sleep)))


def with_sleep(data, sleep):
    return {**data, "monitor": {**data.get("monitor", {}), "sleep_when_idle": sleep}}


def test_sleeping_is_exact_at_ties_of_samples_and_arrivals():
    """Integer arrival times (1 s resolution) on a 1 s sampling grid: every sample ties
    with arrivals; samples run after the other events of their instant in both modes."""
    path = Path(__file__).parents[2] / "scenarios" / "genai_replay.yaml"
    compare_sleeping(
        lambda sleep: load_scenario(path, {"horizon_s": 200_000, "monitor.sleep_when_idle": sleep})
    )


def compare_sleeping(make):
    def run(sleep):
        seen = {}
        res = run_scenario(
            make(sleep),
            "hybrid-seed",
            1,
            router_factory=lambda g, c, r: Observed(_default_router(g, c, r), seen),
        )
        return res, seen

    (ticking, seen_t), (sleeping, seen_s) = run(False), run(True)
    assert seen_t == seen_s and len(seen_s) > 100
    pd.testing.assert_frame_equal(ticking.requests, sleeping.requests)
    pd.testing.assert_frame_equal(ticking.gpus, sleeping.gpus)
    pd.testing.assert_frame_equal(ticking.timeline, sleeping.timeline)
    assert sleeping.info["monitor_samples"] < ticking.info["monitor_samples"] / 5
