"""Engine behaviour through the real Router: determinism, failover, faults, monitor."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpu_router.sim import load_scenario, parse_scenario, run_scenario
from gpu_router.sim import metrics as m
from gpu_router.sim.api import _default_router
from gpu_router.sim.fleet import GpuSpec
from gpu_router.sim.gpus import SimGpu
from gpu_router.sim.service_model import ServiceModel

SCEN = Path(__file__).parents[2] / "scenarios"


def mmc(**over):
    base = {"horizon_s": 50, "warmup_s": 5, "fleet.count": 3}
    return load_scenario(SCEN / "mmc.yaml", {**base, **over})


def test_same_seed_same_tables_to_the_last_digit():
    sc = load_scenario(SCEN / "steady.yaml", {"horizon_s": 120, "warmup_s": 10})
    a, b = run_scenario(sc, "hybrid-seed", 3), run_scenario(sc, "hybrid-seed", 3)
    pd.testing.assert_frame_equal(a.requests, b.requests)
    pd.testing.assert_frame_equal(a.gpus, b.gpus)
    pd.testing.assert_frame_equal(a.timeline, b.timeline)
    det = [c for c in m.SUMMARY_COLUMNS if c not in m.NONDETERMINISTIC_COLUMNS]
    pd.testing.assert_frame_equal(a.summary[det], b.summary[det])
    c = run_scenario(sc, "hybrid-seed", 4)
    assert not np.array_equal(a.requests.submit_s, c.requests.submit_s)


def test_frozen_small_run():
    """Exact values of a small seeded M/M/3 run (computed once, then frozen)."""
    res = run_scenario(mmc(), "least-loaded", 7)
    row = res.row()
    assert row[m.N_COMPLETED] == 112
    assert row[m.WAIT_MEAN_S] == 2.5977694230477946
    assert row[m.LATENCY_P99_S] == 10.568517447136928
    assert res.requests[m.FINISH_S].sum() == 3740.8806227956065


def test_tables_have_the_documented_columns(tmp_path):
    res = run_scenario(mmc(), "least-loaded", 1)
    assert tuple(res.requests.columns) == m.REQUEST_COLUMNS
    assert tuple(res.gpus.columns) == m.GPU_COLUMNS
    assert tuple(res.summary.columns) == m.SUMMARY_COLUMNS
    assert tuple(res.timeline.columns) == m.TIMELINE_COLUMNS
    assert res.summary[m.PRIORITY].tolist() == ["1", "2", "3", "4", "5", "all"]
    res.write(tmp_path)
    back = pd.read_parquet(tmp_path / "summary.parquet")
    assert back[m.PRIORITY].tolist() == ["1", "2", "3", "4", "5", "all"]
    assert {p.name for p in tmp_path.iterdir()} == {
        "requests.parquet",
        "gpus.parquet",
        "summary.parquet",
        "timeline.parquet",
    }
    done = res.requests[res.requests.outcome == "completed"]
    assert (done.wait_s >= 0).all() and (done.latency_s >= done.service_s - 1e-12).all()


def test_failover_loses_nothing_and_reroutes():
    sc = load_scenario(
        SCEN / "gpu_failure.yaml",
        {
            "horizon_s": 500,
            "faults": [
                {"kind": "crash", "gpus": [0, 1, 2, 3], "at_s": 200, "duration_s": 100},
                {"kind": "hang", "gpus": [5], "at_s": 250, "duration_s": 60, "detect_s": 5},
            ],
        },
    )
    res = run_scenario(sc, "earliest-completion", 1)
    row = res.row()
    assert row[m.N_LOST] == 0 and row[m.N_FAILED] == 0
    assert row[m.N_REROUTED] >= 3
    rerouted = res.requests[res.requests.rerouted]
    assert (rerouted.outcome == "completed").all()
    on_dead = rerouted.gpu_id.isin(["gpu-0000", "gpu-0001", "gpu-0002", "gpu-0003"])
    assert (rerouted.dispatch_s[on_dead] >= 300).all()  # never re-placed on a dead GPU
    up = res.timeline.set_index(m.T)[m.GPUS_UP]
    assert up.loc[210:290].max() == 12 and up.loc[255:300].min() == 11
    assert up.iloc[-1] == 16
    assert res.gpus.failures.iloc[:4].tolist() == [1, 1, 1, 1]


def test_timeouts_fail_requests():
    over = {"workload.load": 1.5, "workload.allow_overload": True, "workload.timeout_s": 3.0}
    sc = mmc(**{**over, "horizon_s": 100})
    res = run_scenario(sc, "least-loaded", 2)
    failed = res.requests[res.requests.outcome == "failed"]
    assert len(failed) > 10
    assert np.allclose(failed.finish_s - failed.submit_s, 3.0)
    assert res.row()[m.N_LOST] == 0


def test_dispatch_overhead_adds_wall_time_to_each_request():
    over = {
        "fleet.count": 1,
        "workload.load": 0.2,
        "workload.service.distribution": "deterministic",
        "service_model.dispatch_overhead_s": 0.05,
        "service_model.dispatch_overhead_share": 0.1,
    }
    res = run_scenario(mmc(**over), "least-loaded", 1)
    done = res.requests[res.requests.outcome == "completed"]
    assert np.allclose(done.service_s, 1.0 * 1.1 + 0.05)
    plain = run_scenario(
        mmc(
            **{
                **over,
                "service_model.dispatch_overhead_s": 0.0,
                "service_model.dispatch_overhead_share": 0.0,
            }
        ),
        "least-loaded",
        1,
    )
    assert np.allclose(plain.requests.service_s.dropna(), 1.0)


def test_poll_interval_adds_the_polling_delay_to_each_request():
    from gpu_router.sim.service_model import poll_delay_s

    over = {
        "fleet.count": 1,
        "workload.load": 0.2,
        "workload.service.distribution": "deterministic",
        "workload.service.mean_s": 0.52,
        "service_model.dispatch_overhead_s": 0.004,
        "service_model.poll_interval_s": 0.05,
    }
    res = run_scenario(mmc(**over), "least-loaded", 1)
    done = res.requests[res.requests.outcome == "completed"]
    # 4 ms to dispatch; the job ends 0.52 s after its start, polled at 0.50 and 0.55:
    # seen 30 ms late
    assert poll_delay_s(0.52, 0.05, 1.0) == pytest.approx(0.03)
    assert np.allclose(done.service_s, 0.52 + 0.004 + 0.03)


def test_throttle_slows_service():
    over = {
        "fleet.count": 1,
        "workload.load": 0.2,
        "workload.service.distribution": "deterministic",
        "faults": [{"kind": "throttle", "gpus": [0], "at_s": 0, "duration_s": 1000, "factor": 0.5}],
    }
    res = run_scenario(mmc(**over), "least-loaded", 1)
    done = res.requests[res.requests.outcome == "completed"]
    assert np.allclose(done.service_s, 2.0)


def test_xid_storm_fails_work_and_nothing_is_lost():
    over = {
        "fleet.count": 4,
        "workload.load": 0.5,
        "horizon_s": 200,
        "router.retry": {"max_retries": 10, "backoff_base_s": 0.1},
        "faults": [
            {"kind": "xid_storm", "gpus": [0], "at_s": 10, "duration_s": 100, "fail_prob": 1.0}
        ],
    }
    res = run_scenario(mmc(**over), "round-robin", 1)
    assert res.requests.retries.sum() >= 5
    assert res.row()[m.N_LOST] == 0 and res.row()[m.N_FAILED] == 0


def test_processor_sharing_rates():
    sm = ServiceModel()
    g = SimGpu(0, GpuSpec("g", "H100", 80_000.0, (9, 0), 1.0, 4), sm)
    g.add(1, 1.0, 100.0, 0.0)
    assert g.reschedule() == pytest.approx(1.0)
    g.add(2, 1.0, 100.0, 0.5)  # job 1 has 0.5 left; both now at gain(2)/2
    delay = g.reschedule()
    assert delay == pytest.approx(0.5 / (sm.gain(2) / 2))
    assert g.first_job() == 1 and g.mem_used == 200.0
    assert g.remove(1, 0.5 + delay) == pytest.approx(0.0, abs=1e-12)
    assert g.busy_at(2.0) == pytest.approx(2.0)


class Recorder:
    """Wraps the real router, recording monitor samples as they arrive."""

    def __init__(self, inner, log):
        self.inner, self.log = inner, log

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def observe(self, state, now):
        self.log.append((now, state.sampled_at, state.gpu_id, state.utilization_pct))
        return self.inner.observe(state, now)


def test_monitor_lags_and_outage_silences():
    seen = []
    sc = mmc(
        monitor={"enabled": True, "period_s": 0.5, "lag_s": 0.25, "skip_unchanged": False},
        faults=[{"kind": "monitor_outage", "at_s": 20, "duration_s": 10}],
    )
    run_scenario(
        sc,
        "least-loaded",
        1,
        router_factory=lambda g, c, r: Recorder(_default_router(g, c, r), seen),
    )
    arr = np.array([(now, at) for now, at, _g, _u in seen])
    assert np.allclose(arr[:, 0] - arr[:, 1], 0.25)
    assert not ((arr[:, 0] > 20.01) & (arr[:, 0] < 29.99)).any()
    assert {u for *_x, u in seen} >= {0.0, 100.0}


def test_herding_lagged_utilization_vs_inflight_counting():
    sc = load_scenario(SCEN / "monitor_lag.yaml", {"horizon_s": 200, "warmup_s": 20})
    counted = run_scenario(sc, "hybrid-seed", 1)
    sampled = run_scenario(sc, "hybrid-seed-sampled", 1)

    def stretch(res):
        done = res.requests[res.requests.outcome == "completed"]
        return done.service_s.mean()

    assert stretch(sampled) > 1.1 * stretch(counted)


def test_unknown_strategy_is_a_scenario_error():
    from gpu_router.sim import ScenarioError

    with pytest.raises(ScenarioError, match="strategy"):
        run_scenario(parse_scenario({"horizon_s": 1}), "no-such", 1)


def test_client_cancellations_and_error_column():
    over = {
        "workload.load": 1.3,
        "workload.allow_overload": True,
        "horizon_s": 100,
        "workload.cancel": {"share": 0.3, "patience_s": 2.0},
    }
    res = run_scenario(mmc(**over), "least-loaded", 1)
    req = res.requests
    cancelled = req[req.outcome == "cancelled"]
    assert len(cancelled) > 10 and res.row()[m.N_CANCELLED] > 0
    assert (cancelled.error == "cancelled").all()
    assert res.row()[m.N_LOST] == 0
    assert req.loc[req.outcome == "completed", "error"].isna().all()


def test_reject_code_in_error_column():
    over = {
        "workload.load": 3.0,
        "workload.allow_overload": True,
        "horizon_s": 60,
        "router.queue": {"max_size": 5},
    }
    res = run_scenario(mmc(**over), "least-loaded", 1)
    rejected = res.requests[res.requests.outcome == "rejected"]
    assert len(rejected) > 0 and (rejected.error == "queue_full").all()


def test_simultaneous_faults_and_outage_do_not_strand_a_gpu():
    """Regression: readings dropped during a monitor outage are re-sent afterwards."""
    over = {
        "fleet.count": 1,
        "fleet.mode": "shared",
        "fleet.slots": 2,
        "workload.load": 1.0,
        "workload.allow_overload": True,
        "monitor": {"enabled": True, "period_s": 0.5},
        "router.binding": "early",
        "router.retry": {"max_retries": 20, "backoff_base_s": 0.1},
        "faults": [
            {"kind": "crash", "gpus": [0], "at_s": 4.47, "duration_s": 12.47, "detect_s": 2.0},
            {"kind": "hang", "gpus": [0], "at_s": 4.47, "duration_s": 5.52, "detect_s": 2.0},
            {"kind": "monitor_outage", "at_s": 8.66, "duration_s": 10.1},
        ],
    }
    res = run_scenario(mmc(**{**over, "horizon_s": 40}), "random", 1)
    assert res.row()[m.N_LOST] == 0


def test_model_loads_cost_h2d_time_when_not_resident():
    def services(resident):
        over = {
            "fleet.count": 1,
            "workload.load": 0.1,
            "workload.service.distribution": "deterministic",
            "service_model.resident_models": resident,
            "workload.models": [
                {"id": "a", "weights_mb": 5110.0},
                {"id": "b", "weights_mb": 5110.0},
            ],
        }
        res = run_scenario(mmc(**{**over, "horizon_s": 200}), "least-loaded", 1)
        return res.requests[res.requests.outcome == "completed"].service_s.to_numpy()

    cold, warm = services(1), services(2)
    load = 5110e6 / 51.1e9  # 0.1 s at the measured H2D rate
    assert np.allclose(np.unique(np.round(cold, 9)), [1.0, 1.0 + load])
    assert np.isclose(warm, 1.0 + load).sum() == 2  # each model loaded once
