"""The simulator adds and removes GPUs during a scenario (faults ``join`` and ``leave``):
``scenarios/elastic_fleet.yaml``, exact seeded values."""

from __future__ import annotations

from gpu_router.sim import load_scenario, parse_scenario, run_scenario
from gpu_router.sim import metrics as m


def test_gpus_join_and_leave_during_the_run():
    res = run_scenario(load_scenario("scenarios/elastic_fleet.yaml"), "earliest-completion", 1)
    s = res.summary.set_index(m.PRIORITY).loc["all"]
    assert (s[m.N_SUBMITTED], s[m.N_COMPLETED], s[m.N_LOST], s[m.N_REROUTED]) == (2375, 2375, 0, 2)
    assert round(s[m.WAIT_P99_S], 6) == 3.227841
    done = res.gpus.set_index(m.GPU_ID)[m.COMPLETED_COUNT].to_dict()
    assert done == {
        "gpu-0000": 236, "gpu-0001": 236, "gpu-0002": 278, "gpu-0003": 296, "gpu-0004": 300,
        "gpu-0005": 301, "gpu-0006": 261, "gpu-0007": 261, "gpu-0008": 156, "gpu-0009": 154,
    }  # fmt: skip
    req = res.requests
    late = req[req[m.GPU_ID].isin(["gpu-0008", "gpu-0009"])]
    assert late[m.START_S].min() >= 200.0  # nothing ran on them before they joined
    gone = req[req[m.GPU_ID].isin(["gpu-0000", "gpu-0001"])]
    assert not ((gone[m.START_S] >= 400.0) & (gone[m.START_S] < 500.0)).any()  # nor while away


def test_join_and_leave_validate_like_the_other_faults():
    sc = parse_scenario(
        {
            "workload": {"load": 0.5},
            "fleet": {"count": 2},
            "faults": [{"kind": "leave", "gpus": [1], "at_s": 10, "duration_s": 5}],
            "horizon_s": 60,
        }
    )
    res = run_scenario(sc, "least-loaded", 2)
    assert res.summary.set_index(m.PRIORITY).loc["all", m.N_LOST] == 0
