"""The twin's metrics and the overhead decomposition, on hand-made records (exact values)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gpu_router.sim.service_model import poll_delay_s
from gpu_router.twin import compare as cmp
from gpu_router.twin import overheads
from gpu_router.twin.run import refit
from gpu_router.twin.spec import Calibration


def frame() -> pd.DataFrame:
    # two GPUs; window [0, 10): r3 queued behind r0 on its GPU; r4 rejected; r5 outside
    return pd.DataFrame(
        {
            "priority": [3, 3, 5, 3, 1, 3],
            "arrival_s": [0.0, 1.0, 2.0, 2.5, 3.0, 11.0],
            "submit_s": [0.0, 1.0, 2.0, 2.5, 3.0, 11.0],
            "start_s": [0.0, 1.0, 2.0, 4.0, np.nan, 11.0],
            "finish_s": [4.0, 2.0, 3.0, 6.0, 3.0, 12.0],
            "outcome": ["completed"] * 4 + ["rejected", "completed"],
        }
    )


def test_summarize_counts_waits_latencies_utilization_queue() -> None:
    s = cmp.summarize(frame(), 2, (0.0, 10.0))
    p3 = s["priorities"]["3"]
    assert p3["n"] == 3 and p3["completed"] == 3 and p3["rejected"] == 0
    assert p3["latency_p50_s"] == 3.5 and p3["wait_p50_s"] == 0.0  # latencies 4, 1, 3.5
    assert s["priorities"]["all"]["rejected"] == 1 and s["priorities"]["1"]["completed"] == 0
    assert s["priorities"]["5"]["wait_p99_s"] == 0.0
    assert s["priorities"]["all"]["latency_mean_s"] == pytest.approx((4 + 1 + 1 + 3.5) / 4)
    # busy: 4 + 1 + 1 + 2 = 8 GPU-s of 2 x 10
    assert s["utilization"] == pytest.approx(0.4)
    # r3 waits from 2.5 to 4.0: grid points 2.5, 3.0, 3.5 see a queue of 1
    assert s["queue"]["series"][:10] == [0, 0, 0, 0, 0, 1, 1, 1, 0, 0]
    assert s["queue"]["max"] == 1 and s["lost"] == 0


def test_compare_judges_only_priorities_with_enough_requests() -> None:
    a = cmp.summarize(frame(), 2, (0.0, 10.0))
    later = frame()
    later["finish_s"] += 0.5  # every latency 0.5 s longer in the "service"
    b = cmp.summarize(later, 2, (0.0, 10.0))
    out = cmp.compare(a, b, min_requests=3, tolerance=0.10)
    assert [j["priority"] for j in out["judged"]] == ["3", "3"]
    assert out["cells"]["3"]["latency_p50_s"] == pytest.approx(3.5 / 4.0 - 1)
    assert not out["agree"]  # -12.5% at p50
    assert cmp.compare(a, a, min_requests=3, tolerance=0.10)["agree"]
    assert not cmp.compare(a, a, min_requests=99, tolerance=0.10)["agree"]  # nothing judged
    assert math.isnan(cmp.rel(1.0, 0.0))


def test_decompose_and_fit_recover_the_overheads() -> None:
    n = 40
    work = np.linspace(0.2, 2.0, n)
    arrival = np.arange(n) * 3.0  # no queueing: each GPU idle when the next arrives
    job_start = arrival + 0.004
    job_end = job_start + work + 0.001
    finish = job_end + 0.02 + 0.05 * work  # detection: 20 ms + 5% of the run
    records = pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "priority": 3,
            "arrival_s": arrival,
            "sent_s": arrival + 0.001,
            "answered_s": arrival + 0.006,
            "submit_s": arrival + 0.002,
            "start_s": job_start + 0.001,
            "finish_s": finish,
            "outcome": "completed",
            "work_s": work,
        }
    )
    t0 = 1000.0
    jobs = [
        {"event": e, "request_id": f"r{i}", "t": t + t0, "gpu": 0}
        for i in range(n)
        for e, t in (("start", job_start[i]), ("end", job_end[i]))
    ]
    parts = overheads.decompose(records, overheads.job_times(jobs, t0))
    assert parts["dispatch"].to_numpy() == pytest.approx(0.002)
    assert parts["detect"].to_numpy() == pytest.approx(0.02 + 0.05 * work)
    assert not parts["queued"].any()
    fit = overheads.fit(parts)
    assert fit["dispatch_overhead_s"] == pytest.approx(0.002 + 0.001 + 0.02)
    assert fit["dispatch_overhead_share"] == pytest.approx(0.05)
    s = overheads.summary(parts)
    assert s["send_lag"]["p50_ms"] == 1.0 and s["answer"]["p99_ms"] == 5.0
    polled = overheads.fit_polled(parts, 0.05, 1.0)
    rest = parts["occupancy"] - [poll_delay_s(w, 0.05, 1.0) for w in work]
    assert polled["dispatch_overhead_s"] == pytest.approx(rest.mean())
    assert polled["poll_interval_s"] == 0.05 and polled["dispatch_overhead_share"] == 0.0
    # the twin's refit follows the calibration's model: polled if it models polling
    assert refit(parts, Calibration(poll_interval_s=0.05, max_poll_interval_s=1.0)) == polled
    assert refit(parts, Calibration(dispatch_overhead_s=0.03)) == fit


def test_table_has_a_row_per_priority_and_the_fleet() -> None:
    a = cmp.summarize(frame(), 2, (0.0, 10.0))
    text = cmp.table(0.5, a, a, a, a)
    lines = text.splitlines()
    assert len(lines) == 2 + 3 + 1  # header, rule, priorities 3, 5 and all, fleet (1: none done)
    assert "| 0.50 | 3 | 3 | 3500 / " in lines[2] and "(+0.0%)" in lines[2]
    assert "utilization 0.400" in lines[-1]


def test_tally_counts_judged_and_all_priority_cells() -> None:
    a = cmp.summarize(frame(), 2, (0.0, 10.0))
    same = cmp.compare(a, a, min_requests=1, tolerance=0.1)
    t = cmp.tally([same, same], 0.1)
    assert t["judged_ok"] == t["judged"] > 0 and t["cells_ok"] == t["cells"] >= t["judged"]
    off = {**same, "judged": [{**same["judged"][0], "ok": False}]}
    off["cells"] = {**same["cells"], "3": {**same["cells"]["3"], "latency_p99_s": 0.2}}
    t2 = cmp.tally([same, off], 0.1)
    assert t2["judged_ok"] == t["judged"] // 2 and t2["judged"] == t["judged"] // 2 + 1
    assert t2["cells_ok"] == t["cells"] - 1
