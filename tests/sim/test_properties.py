"""Hypothesis: whatever the scenario, the engine's records stay consistent."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpu_router.sim import parse_scenario, run_scenario

faults = st.lists(
    st.fixed_dictionaries(
        {
            "kind": st.sampled_from(["crash", "hang", "throttle", "xid_storm", "monitor_outage"]),
            "gpus": st.just([0]),
            "at_s": st.floats(0, 30),
            "duration_s": st.floats(0.5, 20),
            "detect_s": st.sampled_from([None, 0.0, 2.0]),
        }
    ),
    max_size=3,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    count=st.integers(1, 4),
    load=st.floats(0.2, 1.4),
    slots=st.integers(1, 3),
    binding=st.sampled_from(["late", "early"]),
    strategy=st.sampled_from(["round-robin", "least-loaded", "earliest-completion", "random"]),
    timeout=st.sampled_from([None, 5.0]),
    fault_list=faults,
    seed=st.integers(0, 2**16),
)
def test_records_are_consistent(count, load, slots, binding, strategy, timeout, fault_list, seed):
    sc = parse_scenario(
        {
            "horizon_s": 40,
            "fleet": {
                "count": count,
                "mode": "shared" if slots > 1 else "exclusive",
                "slots": slots,
            },
            "workload": {
                "load": load,
                "allow_overload": True,
                "timeout_s": timeout,
                "priorities": {1: 1, 3: 1, 5: 1},
            },
            "monitor": {"period_s": 0.5},
            "faults": fault_list,
            "router": {"binding": binding, "retry": {"max_retries": 20, "backoff_base_s": 0.1}},
        }
    )
    res = run_scenario(sc, strategy, seed)
    req = res.requests
    # every admitted request ends (hangs without detection end with the hang)
    assert (req.outcome != "lost").all()
    done = req[req.outcome == "completed"]
    assert (done.submit_s <= done.dispatch_s + 1e-9).all()
    assert (done.dispatch_s <= done.start_s + 1e-9).all()
    assert (done.start_s < done.finish_s + 1e-9).all()
    assert done.gpu_id.notna().all()
    if timeout is not None:
        assert (req.finish_s - req.submit_s <= timeout + 1e-6).all()
    assert ((res.gpus.utilization >= -1e-9) & (res.gpus.utilization <= 1 + 1e-9)).all()
    tl = res.timeline
    assert (tl.queue_length >= 0).all() and (tl.running <= count * slots).all()
    assert np.isfinite(res.summary.utilization).all()
