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
