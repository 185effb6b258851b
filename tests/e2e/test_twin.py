"""The twin check, small: the simulator predicts the live service on the same requests.

One short run (2 virtual H100s with real CPU-mode workers, 12 s of Poisson arrivals at
70% load, about 55 requests) through ``gpu-router serve`` on loopback and through the
simulator calibrated with ``scenarios/twin/poisson.yaml``'s measured overheads.

Tolerance: both sides replay the *same* requests with the *same* durations, so the
sampling noise that would need thousands of requests for a 10% interval cancels; what
is left is the service's timing jitter. Measured on the shared 2-core machine: three
runs with the current calibration (polling modelled, 7 ms on top) gave a mean-latency
error of -0.8% to +1.6% and a p50 error of +2.3% to +8.6%; four runs with the earlier
line calibration (a 0.031 s, b 0.038) gave a mean-latency error of
the calibrated simulator of -2.1% to +7.2% and a p50 error of +1.8% to +11.5%; five
earlier runs with a 0.027 s, b 0.033 gave -7.7% to +0.5% and -6.9% to +3.5%
(docs/simulator.md, "The twin check"). 15% on the mean and 20% on the p50 leave room
for a busier machine. A simulator that leaves out the service's own time per request
(raw) was at -21% to -30% of the mean in those twelve runs, and one with a constant
overhead of 0.135 s (5x the earlier five runs' 27 ms) at +60% to +74%: the test asserts both are
outside 15%.

A second run only when the first misses: on 2026-12-03, with the shared 2-core machine at
a load average of 13-15, two of five runs missed (one measured: |mean error| 0.157, p50
-6.1%, p95 -35%: the service stalled waiting for a core) and three were at -2.7% to
-0.5%. A drift of either side misses in every run, so it still fails (load average
11-12, each attempt: the service polling every 0.2 s, mean -29.6% and -33.4%; the
simulator without the polling model, mean -25.0% and -18.6%).
"""

from __future__ import annotations

import pytest

from gpu_router.sim import run_scenario
from gpu_router.twin import TwinSpec, load_twin, run_load, scenario_at
from gpu_router.twin import compare as cmp

pytestmark = pytest.mark.timeout(150)

MEAN_TOL = 0.15
P50_TOL = 0.20
#: a constant overhead far off what the service adds (5x the 27 ms once fitted)
WRONG_OVERHEAD_S = 0.135
#: service runs at most: a second only when the first misses (a stalled host; docstring)
ATTEMPTS = 2


def small_spec() -> TwinSpec:
    base = load_twin("scenarios/twin/poisson.yaml")
    scenario = {
        **base.scenario,
        "horizon_s": 12,
        "warmup_s": 1,
        "fleet": {"model": "H100", "count": 2},
        "workload": {
            **base.scenario["workload"],
            "service": {"distribution": "lognormal", "mean_s": 0.3, "cv": 0.5},
        },
    }
    return base.model_copy(update={"scenario": scenario, "min_requests": 20, "label": "small"})


def test_calibrated_simulator_predicts_the_live_service(tmp_path) -> None:
    spec = small_spec()
    misses = []
    for attempt in range(ATTEMPTS):
        res = run_load(spec, 0.7, tmp_path / f"run{attempt}")
        svc = res["summaries"]["service"]
        assert svc["lost"] == 0 and svc["priorities"]["all"]["completed"] >= 35
        assert svc["priorities"]["all"]["rejected"] == 0
        # a simulator that leaves out the service's own time per request is outside
        assert res["raw_vs_service"]["cells"]["all"]["latency_mean_s"] < -MEAN_TOL
        o = res["overheads"]
        assert o["detect"]["n"] >= svc["priorities"]["all"]["completed"]  # every job logged
        assert 0 < o["detect"]["p50_ms"] < 200  # polling finds the end after it happened
        cells = res["calibrated_vs_service"]["cells"]["all"]
        if abs(cells["latency_mean_s"]) <= MEAN_TOL and abs(cells["latency_p50_s"]) <= P50_TOL:
            break
        misses.append(
            {
                "mean": cells["latency_mean_s"],
                "p50": cells["latency_p50_s"],
                "admission_p99_ms": o["admission"]["p99_ms"],
            }
        )
    else:
        pytest.fail(f"calibrated simulator outside {MEAN_TOL:.0%} / {P50_TOL:.0%}: {misses}")

    # the same service run judged against a simulator with a wrong overhead: it must fail
    wrong = spec.model_copy(
        update={
            "calibration": spec.calibration.model_copy(
                update={"dispatch_overhead_s": WRONG_OVERHEAD_S}
            )
        }
    )
    sc = scenario_at(wrong, 0.7, calibrated=True)
    bad = run_scenario(sc, spec.strategy, spec.seed)
    window = (sc.warmup_s, sc.horizon_s)
    bad_sum = cmp.summarize(cmp.sim_frame(bad.requests), 2, window)
    err = cmp.rel(
        bad_sum["priorities"]["all"]["latency_mean_s"], svc["priorities"]["all"]["latency_mean_s"]
    )
    assert err > MEAN_TOL, err
