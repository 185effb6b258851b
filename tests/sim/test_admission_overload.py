"""Admission by predicted wait in the simulator: 2x overload with a bounded queue.

``scenarios/priority_overload_2x.yaml`` offers twice the fleet's capacity. With
``sla.admit_by_wait`` the queue stays bounded and priority 5 meets its SLA; without it
the same seeded run queues without bound and priority 5 waits minutes.
"""

from __future__ import annotations

from gpu_router.sim import load_scenario, run_scenario
from gpu_router.sim import metrics as m


def test_two_x_overload_is_refused_by_predicted_wait_with_a_bounded_queue() -> None:
    scenario = load_scenario("scenarios/priority_overload_2x.yaml")
    res = run_scenario(scenario, "earliest-completion", 1)
    s = res.summary.set_index(m.PRIORITY)
    assert s[m.N_SUBMITTED].to_dict() == {
        "1": 3224, "2": 2198, "3": 2157, "4": 1685, "5": 1581, "all": 10845
    }  # fmt: skip
    assert s[m.N_REJECTED].to_dict() == {
        "1": 3176, "2": 2038, "3": 158, "4": 0, "5": 0, "all": 5372
    }  # fmt: skip
    assert s.loc["all", m.N_LOST] == 0
    assert round(s.loc["5", m.WAIT_P99_S], 6) == 0.612305
    assert s.loc["5", m.SLA_ATTAINMENT] == 1.0 and s.loc["4", m.SLA_ATTAINMENT] == 1.0
    assert s.loc["all", m.UTILIZATION] == 1.0
    assert res.timeline[m.QUEUE_LENGTH].max() == 116


def test_without_admission_by_wait_the_same_run_queues_without_bound() -> None:
    scenario = load_scenario("scenarios/priority_overload_2x.yaml")
    sla = scenario.sla.model_copy(update={"admit_by_wait": False})
    off = scenario.model_copy(update={"sla": sla})
    res = run_scenario(off, "earliest-completion", 1)
    s = res.summary.set_index(m.PRIORITY)
    assert res.timeline[m.QUEUE_LENGTH].max() == 6011
    assert s.loc["5", m.WAIT_P99_S] > 60.0 and s.loc["5", m.N_REJECTED] == 0
