import numpy as np
import pytest

from gpu_router.sim.metrics import jain_index, maxmin_share, percentile


def test_jain_index():
    assert jain_index(np.ones(5)) == 1.0
    assert jain_index(np.array([1.0, 0, 0, 0])) == pytest.approx(0.25)


def test_maxmin_share_water_fills():
    assert maxmin_share(np.array([1.0, 10.0, 2.0]), 9.0).tolist() == [1.0, 6.0, 2.0]
    assert maxmin_share(np.array([5.0, 5.0]), 4.0).tolist() == [2.0, 2.0]


def test_percentile_of_nothing_is_nan():
    assert np.isnan(percentile(np.array([]), 99))


def test_empty_priority_row_is_what_the_full_computation_gives():
    """summarize() skips the pandas work for a priority with no requests; the row it
    writes instead must be the one _row and _jain_over_users compute for no rows."""
    import math

    from gpu_router.sim import metrics as mt
    from gpu_router.sim import parse_scenario, run_scenario

    sc = parse_scenario({"horizon_s": 20, "fleet": {"count": 2}, "workload": {"load": 0.5}})
    req = run_scenario(sc, "round-robin", 1).requests
    empty = req.iloc[0:0].copy()
    for col in ("_demand", "_served"):
        empty[col] = np.zeros(0)
    computed = {**mt._row(empty, {1: 60.0, 3: 10.0}), mt.JAIN_FAIRNESS: mt._jain_over_users(empty)}
    assert computed.keys() == mt._EMPTY_ROW.keys()
    for key, value in computed.items():
        want = mt._EMPTY_ROW[key]
        assert type(value) is type(want), key
        assert (math.isnan(value) and math.isnan(want)) or value == want, key
